"""Flows: naming endpoints, address families, bad input, same-endpoint traffic, output forms, the matrix."""

from __future__ import annotations

import json

import pytest

from libcalico.oracle import Flow, FlowError, Oracle, Reason

from .cluster import BASE, namespace_profile, np, pod, verdict

A = pod("a", ["10.0.0.1", "fd00::1"], wep_name="node1-k8s-a-eth0")
B = pod("b", "10.0.0.2")
V6 = pod("v6", "fd00::6")
PROD_A = pod("a", "10.0.1.1", namespace="prod")
PODS = [*BASE, namespace_profile("prod"), A, B, V6, PROD_A]


def oracle(*extra: object) -> Oracle:
    return Oracle.from_resources([*PODS, *extra])  # type: ignore[list-item]


def test_endpoints_are_found_by_pod_name_endpoint_name_or_object() -> None:
    o = oracle()
    assert o.endpoint("a") is o.endpoint("node1-k8s-a-eth0") is o.endpoint("default/a") is o.endpoint(A)  # type: ignore[arg-type]
    assert o.endpoint("prod/a").metadata.namespace == "prod"
    assert o.endpoint("a", namespace="prod").metadata.namespace == "prod"
    assert o.endpoint_names() == ["default/a", "default/b", "default/v6", "prod/a"]


def test_unknown_endpoint_is_a_flow_error() -> None:
    with pytest.raises(FlowError, match="no WorkloadEndpoint named 'nope'"):
        oracle().evaluate(Flow("a", "nope"))
    with pytest.raises(FlowError, match="not among the oracle's resources"):
        oracle().evaluate(Flow("a", pod("x", "10.0.0.9")))  # type: ignore[arg-type]


def test_pod_with_several_endpoints_must_be_named_by_endpoint() -> None:
    eth1 = pod("b", "10.1.0.2", endpoint="eth1")
    o = oracle(eth1)
    with pytest.raises(FlowError, match="several WorkloadEndpoints"):
        o.evaluate(Flow("a", "b"))
    assert o.evaluate(Flow("a", eth1.metadata.name, port=80)).flow.destination == f"default/{eth1.metadata.name}"


def test_address_family_is_chosen_from_both_ends() -> None:
    o = oracle()
    assert o.evaluate(Flow("a", "b")).flow.destination_address == "10.0.0.2"
    assert o.evaluate(Flow("a", "v6")).flow.source_address == "fd00::1"
    with pytest.raises(FlowError, match="share no IP version"):
        o.evaluate(Flow("b", "v6"))
    with pytest.raises(FlowError, match="has no IPv6 address"):
        o.evaluate(Flow("a", "b", ip_version=6))
    with pytest.raises(FlowError, match="is IPv4 but the flow asks for IPv6"):
        o.evaluate(Flow("192.0.2.1", "a", ip_version=6))


def test_bad_flow_fields_are_rejected() -> None:
    with pytest.raises(FlowError, match="unknown protocol"):
        Flow("a", "b", "carrier-pigeon")
    with pytest.raises(FlowError, match="port must be an integer 1-65535"):
        Flow("a", "b", port=70000)
    with pytest.raises(FlowError, match="ICMP code needs an ICMP type"):
        Flow("a", "b", "icmp", icmp_code=1)
    with pytest.raises(FlowError, match="ports only apply"):
        oracle().evaluate(Flow("a", "b", "icmp", port=80))
    with pytest.raises(FlowError, match="only apply to icmp"):
        oracle().evaluate(Flow("a", "b", "tcp", icmp_type=8))


def test_endpoint_without_addresses_is_not_policed() -> None:
    bare = pod("bare", "10.0.0.50")
    bare.spec.ipNetworks = []  # type: ignore[attr-defined]
    with pytest.raises(FlowError, match="has no ipNetworks"):
        oracle(bare).evaluate(Flow("a", "bare"))


def test_same_endpoint_never_reaches_the_dataplane() -> None:
    deny = np("deny", {"selector": "all()", "types": ["Ingress", "Egress"]})
    v = oracle(deny).evaluate(Flow("a", "a", port=80))
    assert v.allowed and v.ingress.reason is Reason.SAME_ENDPOINT
    assert v.egress is not None and v.egress.reason is Reason.SAME_ENDPOINT


def test_cidr_source_has_no_egress_and_notes_a_pod_address() -> None:
    v = oracle().evaluate(Flow("10.0.0.1", "b", port=80))
    assert v.egress is None and v.allowed and v.flow.source == "10.0.0.1"
    assert v.notes == ("10.0.0.1/32 is the address of default/a: name the endpoint as the source to also "
                       "evaluate its egress policy",)


def test_verdict_text_and_json() -> None:
    deny = np("deny-all", {"selector": "app == 'b'", "ingress": [{"action": "Deny"}]})
    v = verdict([*PODS, deny], "a", "b", "tcp", 80)
    assert str(v) == (
        "denied: default/a (10.0.0.1) → default/b (10.0.0.2) tcp/80\n"
        "  egress: profile kns.default rule 0 Allow (no policy applies)\n"
        "  ingress: default/deny-all (tier default) rule 0 Deny")
    doc = json.loads(json.dumps(v.to_dict()))
    assert doc["allowed"] is False
    assert doc["flow"] == {"source": "default/a", "sourceAddress": "10.0.0.1", "destination": "default/b",
                           "destinationAddress": "10.0.0.2", "protocol": "tcp", "description": "tcp/80"}
    assert doc["ingress"] == {"direction": "ingress", "endpoint": "default/b", "action": "Deny", "reason": "rule",
                              "explanation": "ingress: default/deny-all (tier default) rule 0 Deny",
                              "tier": "default", "policy": "default/deny-all", "policy_kind": "NetworkPolicy",
                              "rule_index": 0, "policies_applied": True, "trail": []}
    assert doc["egress"]["profile"] == "kns.default"


def test_matrix_covers_every_ordered_pair() -> None:
    deny_b = np("deny-b", {"selector": "app == 'b'", "ingress": [{"action": "Deny"}]})
    o = oracle(deny_b)
    m = o.matrix(["a", "b", "prod/a"], "tcp", 80)
    assert set(m) == {(s, d) for s in ("a", "b", "prod/a") for d in ("a", "b", "prod/a") if s != d}
    assert {k: v.allowed for k, v in m.items()} == {
        ("a", "b"): False, ("prod/a", "b"): False, ("a", "prod/a"): True, ("b", "a"): True,
        ("b", "prod/a"): True, ("prod/a", "a"): True}
    with_self = o.matrix(["a", "b"], "tcp", 80, include_self=True)
    assert with_self[("a", "a")].allowed and len(with_self) == 4


def test_matrix_icmp_defaults_to_echo_request_and_all_pods() -> None:
    ping_only = np("ping-only", {"selector": "app == 'b'", "ingress": [
        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}]})
    m = oracle(ping_only).matrix(protocol="icmp")
    assert m[("default/a", "default/b")].allowed
    assert m[("default/a", "default/b")].flow.description == "icmp type 8"
    assert ("default/b", "default/v6") not in m  # no common family: skipped, not an error


def test_echo_request_default_follows_the_address_family() -> None:
    o = oracle(pod("w6", "fd00::7"))
    v4 = o.evaluate(o.with_echo_request(Flow("a", "b", "icmp")))
    assert v4.flow.description == "icmp type 8"
    v6 = o.evaluate(o.with_echo_request(Flow("a", "w6", "icmp")))
    assert v6.flow.description == "icmpv6 type 128" and v6.flow.source_address == "fd00::1"
    assert o.with_echo_request(Flow("a", "b", "icmp", icmp_type=0)).icmp_type == 0
    assert o.with_echo_request(Flow("a", "b", "tcp")).icmp_type is None
    m = o.matrix(["a", "w6"], "icmp")
    assert m[("a", "w6")].flow.description == "icmpv6 type 128"
