"""Calico's defaults and normalisation: policy tier and types, IPPool, Tier, ports, orders, CIDRs."""

from __future__ import annotations

from typing import Any

import pytest

from libcalico.errors import ValidationError
from libcalico.resources import (
    FelixConfiguration,
    IPAMConfiguration,
    IPPool,
    NetworkPolicy,
    StagedNetworkPolicy,
    Tier,
    parse_resource,
)

V3 = "projectcalico.org/v3"


def make(kind: str, spec: dict[str, Any] | None, name: str = "x", **meta: Any) -> Any:
    doc: dict[str, Any] = {"apiVersion": V3, "kind": kind, "metadata": {"name": name, **meta}}
    if spec is not None:
        doc["spec"] = spec
    return parse_resource(doc)


ALLOW = {"action": "Allow"}


@pytest.mark.parametrize(
    ("ingress", "egress", "types"),
    [
        (None, None, ["Ingress"]),
        ([ALLOW], None, ["Ingress"]),
        (None, [ALLOW], ["Egress"]),
        ([ALLOW], [ALLOW], ["Ingress", "Egress"]),
        ([], [], ["Ingress"]),
    ],
)
@pytest.mark.parametrize("kind", ["NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy",
                                  "StagedGlobalNetworkPolicy"])
def test_policy_types_inferred_like_calico(kind: str, ingress: Any, egress: Any, types: list[str]) -> None:
    spec: dict[str, Any] = {}
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    policy = make(kind, spec)
    assert policy.spec.types == types
    assert policy.spec.tier == "default"


def test_explicit_types_are_kept() -> None:
    policy = make("NetworkPolicy", {"types": ["Egress"], "ingress": [ALLOW]})
    assert policy.spec.types == ["Egress"]


def test_policy_without_spec_gets_defaults() -> None:
    policy = make("NetworkPolicy", None)
    assert isinstance(policy, NetworkPolicy)
    assert policy.to_dict()["spec"] == {"tier": "default", "types": ["Ingress"]}


def test_policy_in_another_tier_needs_no_name_prefix() -> None:
    # Calico dropped the "<tier>." name prefix requirement (projectcalico/calico#11232).
    policy = make("GlobalNetworkPolicy", {"tier": "security"}, name="block-bad-actors")
    assert policy.spec.tier == "security"
    prefixed = make("NetworkPolicy", {"tier": "security"}, name="security.block-bad-actors", namespace="a")
    assert prefixed.name == "security.block-bad-actors"


def test_kubernetes_policy_names_keep_their_prefix() -> None:
    policy = make("NetworkPolicy", {}, name="knp.default.allow-web.v2", namespace="a")
    assert policy.name == "knp.default.allow-web.v2"


def test_staged_delete_gets_no_types() -> None:
    staged = make("StagedNetworkPolicy", {"stagedAction": "Delete"}, namespace="a")
    assert isinstance(staged, StagedNetworkPolicy)
    assert staged.spec.types is None
    assert staged.to_dict()["spec"] == {"tier": "default", "stagedAction": "Delete"}


@pytest.mark.parametrize(("cidr", "block"), [("10.0.0.0/8", 26), ("fd00:1::/48", 122)])
def test_ippool_defaults(cidr: str, block: int) -> None:
    pool = make("IPPool", {"cidr": cidr})
    assert isinstance(pool, IPPool)
    assert pool.to_dict()["spec"] == {
        "cidr": cidr, "vxlanMode": "Never", "ipipMode": "Never", "natOutgoing": False, "blockSize": block,
        "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic",
    }


def test_ippool_empty_modes_mean_never() -> None:
    pool = make("IPPool", {"cidr": "10.0.0.0/16", "ipipMode": "", "vxlanMode": "", "nodeSelector": ""})
    assert (pool.spec.ipipMode, pool.spec.vxlanMode, pool.spec.nodeSelector) == ("Never", "Never", "all()")


def test_ippool_cidr_written_in_canonical_form() -> None:
    pool = make("IPPool", {"cidr": "FD00:0:0:0::/48"})
    assert pool.spec.cidr == "fd00::/48"


@pytest.mark.parametrize(("cidr", "block", "ok"), [
    ("10.0.0.0/20", 20, True), ("10.0.0.0/19", 20, True), ("10.0.0.0/21", 20, False),
    ("10.0.0.0/32", 32, True), ("fd00::/116", 116, True), ("fd00::/117", 116, False),
])
def test_ippool_prefix_against_block_size(cidr: str, block: int, ok: bool) -> None:
    spec = {"cidr": cidr, "blockSize": block}
    if ok:
        assert make("IPPool", spec).spec.blockSize == block
    else:
        with pytest.raises(ValidationError) as info:
            make("IPPool", spec)
        assert info.value.field == "spec.cidr"
        # A disabled pool is exempt, as in Calico.
        assert make("IPPool", {**spec, "disabled": True}).spec.disabled is True


def test_default_tier_order_is_one_million() -> None:
    tier = make("Tier", {}, name="default")
    assert isinstance(tier, Tier)
    assert tier.spec.order == 1_000_000
    assert tier.to_dict()["spec"] == {"order": 1000000}
    assert make("Tier", {}, name="custom").spec.order is None


def test_order_integers_stay_integers_on_the_wire() -> None:
    assert make("NetworkPolicy", {"order": 100}).to_dict()["spec"]["order"] == 100
    assert isinstance(make("NetworkPolicy", {"order": 100}).to_dict()["spec"]["order"], int)
    assert make("NetworkPolicy", {"order": 100.25}).to_dict()["spec"]["order"] == 100.25


@pytest.mark.parametrize(("given", "stored"), [
    ("80", 80), (80, 80), ("80:80", 80), ("80:90", "80:90"), ("http", "http"), ("1:65535", "1:65535"),
])
def test_rule_ports_normalised_like_calico(given: Any, stored: Any) -> None:
    policy = make("NetworkPolicy", {"ingress": [
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [given]}}]})
    assert policy.to_dict()["spec"]["ingress"][0]["destination"]["ports"] == [stored]


def test_numeric_protocols_support_ports() -> None:
    for proto in (6, 17, 132, "6"):
        policy = make("NetworkPolicy", {"ingress": [
            {"action": "Allow", "protocol": proto, "destination": {"ports": [1]}}]})
        assert policy.spec.ingress is not None


def test_icmp_numbers_count_as_icmp() -> None:
    policy = make("NetworkPolicy", {"ingress": [{"action": "Allow", "protocol": 58, "ipVersion": 6,
                                                 "icmp": {"type": 128, "code": 0}}]})
    assert policy.spec.ingress is not None
    with pytest.raises(ValidationError) as info:
        make("NetworkPolicy", {"ingress": [{"action": "Allow", "protocol": 1, "ipVersion": 6}]})
    assert info.value.field == "spec.ingress[0].protocol"


def test_ipam_configuration_defaults() -> None:
    config = make("IPAMConfiguration", None, name="default")
    assert isinstance(config, IPAMConfiguration)
    assert config.to_dict()["spec"] == {"strictAffinity": False, "autoAllocateBlocks": True}


def test_felix_configuration_stores_only_what_is_set() -> None:
    config = make("FelixConfiguration", {"logSeverityScreen": "debug", "routeRefreshInterval": "1m30s"},
                  name="node.worker-1")
    assert isinstance(config, FelixConfiguration)
    assert config.to_dict()["spec"] == {"logSeverityScreen": "debug", "routeRefreshInterval": "1m30s"}


def test_bgp_asdot_notation_becomes_a_number() -> None:
    peer = make("BGPPeer", {"peerIP": "10.0.0.1", "asNumber": "1.10"})
    assert peer.spec.asNumber == 65546
    node = make("Node", {"bgp": {"asNumber": 64512}}, name="n1")
    assert node.spec.bgp.asNumber == 64512


def test_calico_selectors_are_checked_with_the_selector_parser() -> None:
    for selector in ("all()", "", "has(a) && b in {'x', 'y'}", "!has(x) || c != 'd'"):
        assert make("NetworkPolicy", {"selector": selector}).spec.selector == selector
    with pytest.raises(ValidationError) as info:
        make("NetworkPolicy", {"selector": "a ==== b"})
    assert info.value.field == "spec.selector"
    assert info.value.reason.startswith("invalid selector 'a ==== b'")
