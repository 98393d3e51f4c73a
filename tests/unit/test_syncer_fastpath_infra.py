"""``fastpath.accepts`` for Tier, IPPool, Node, HostEndpoint and ClusterInformation: never True where the model
says no, and True for the forms real clusters hold.

The same proofs as for the policy kinds (test_syncer_fastpath_kinds.py, whose mutation machinery
this reuses): the manifest corpora, a differential property test per kind from rich seeds, a
sweep of every single-slot change of every seed, and the restated string rules against the
models' own checks on random text.
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcalico.resources import fields, ippool, policy
from libcalico.syncer import fastkinds
from tests.unit.test_syncer_fastpath_kinds import (
    REPLACEMENTS,
    TEXT,
    _documents,
    _raises,
    agrees,
    fast_accepts,
    model_accepts,
    mutants,
    single_slot_changes_agree,
    valid_mutants,
)

V3 = "projectcalico.org/v3"
KINDS = ("Tier", "IPPool", "Node", "HostEndpoint", "ClusterInformation")
LABELS = {"kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux", "topology.kubernetes.io/zone": ""}

SEEDS: dict[str, list[dict[str, Any]]] = {
    "Tier": [
        {"apiVersion": V3, "kind": "Tier", "metadata": {"name": "security", "labels": {"a": "b"}},
         "spec": {"order": 100, "defaultAction": "Pass"}},
        {"apiVersion": V3, "kind": "Tier", "metadata": {"name": "default"}, "spec": {"order": 1_000_000.0}},
        {"apiVersion": V3, "kind": "Tier", "metadata": {"name": "kube-admin"}},
        {"apiVersion": V3, "kind": "Tier", "metadata": {"name": "platform"}, "spec": {"defaultAction": "Deny"}},
    ],
    "IPPool": [
        {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": "default-ipv4-ippool", "uid": "u-1",
                                                          "creationTimestamp": "2024-01-01T00:00:00Z"},
         "spec": {"cidr": "10.96.0.0/11", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "CrossSubnet",
                  "natOutgoing": True, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"],
                  "disabled": False, "disableBGPExport": False, "assignmentMode": "Automatic",
                  "namespaceSelector": "team == 'a'"}},
        {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": "v6"},
         "spec": {"cidr": "fd00:0::/48", "vxlanMode": "Always", "blockSize": 122, "nodeSelector": "",
                  "ipipMode": ""}},
        {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": "lb"},
         "spec": {"cidr": "192.0.2.0/24", "allowedUses": ["LoadBalancer"], "assignmentMode": "Manual"}},
        {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": "small"},
         "spec": {"cidr": "10.0.0.0/30", "disabled": True, "ipipMode": "Always", "blockSize": 0,
                  "allowedUses": []}},
    ],
    "Node": [
        {"apiVersion": V3, "kind": "Node", "metadata": {"name": "node-1", "labels": LABELS,
                                                        "annotations": {"projectcalico.org/kube-labels": "{}"}},
         "spec": {"bgp": {"ipv4Address": "192.0.2.10/24", "ipv6Address": "2001:db8::10/64", "asNumber": "1.10",
                          "ipv4IPIPTunnelAddr": "10.0.0.1", "routeReflectorClusterID": "224.0.0.1"},
                  "ipv4VXLANTunnelAddr": "10.244.0.1", "vxlanTunnelMACAddr": "66:1d:29:5a:3b:01",
                  "ipv6VXLANTunnelAddr": "fd00::1", "vxlanTunnelMACAddrV6": "66-1d-29-5a-3b-02",
                  "orchRefs": [{"nodeName": "node-1", "orchestrator": "k8s"}],
                  "addresses": [{"address": "192.0.2.10/24", "type": "CalicoNodeIP"},
                                {"address": "192.0.2.10", "type": "InternalIP"}, {"address": "2001:db8::10"}],
                  "wireguard": {"interfaceIPv4Address": "10.255.0.1", "interfaceIPv6Address": "fd01::1"},
                  "interfaceName": "eth0"},
         "status": {"wireguardPublicKey": "A" * 43 + "=", "podCIDRs": ["10.244.1.0/24", "fd00:1::/64"]}},
        {"apiVersion": V3, "kind": "Node", "metadata": {"name": "n2"}, "spec": {"bgp": {"asNumber": 64512}}},
        {"apiVersion": V3, "kind": "Node", "metadata": {"name": "n3"}},
    ],
    "HostEndpoint": [
        {"apiVersion": V3, "kind": "HostEndpoint", "metadata": {"name": "node-1-eth0", "labels": {"role": "gw"}},
         "spec": {"node": "node-1", "interfaceName": "eth0", "expectedIPs": ["192.0.2.10", "2001:db8::10"],
                  "profiles": ["kns.default", "ingress"],
                  "ports": [{"name": "ssh", "protocol": "TCP", "port": 22},
                            {"name": "dns", "protocol": 17, "port": 53},
                            {"name": "sctp-port", "protocol": "132", "port": 9000}]}},
        {"apiVersion": V3, "kind": "HostEndpoint", "metadata": {"name": "node-2-all"},
         "spec": {"node": "node-2", "interfaceName": "*"}},
        {"apiVersion": V3, "kind": "HostEndpoint", "metadata": {"name": "by-ip"},
         "spec": {"node": "node-3", "expectedIPs": ["10.0.0.3"]}},
    ],
    "ClusterInformation": [
        {"apiVersion": V3, "kind": "ClusterInformation", "metadata": {"name": "default"},
         "spec": {"calicoVersion": "v3.30.0", "clusterGUID": "5e1f", "clusterType": "k8s,bgp,kdd",
                  "datastoreReady": True, "variant": "Calico"}},
        {"apiVersion": V3, "kind": "ClusterInformation", "metadata": {"name": "default"}},
    ],
}


@pytest.mark.parametrize("kind", KINDS)
def test_seeds_take_the_fast_path(kind: str) -> None:
    for doc in SEEDS[kind]:
        assert model_accepts(kind, doc), doc
        assert fast_accepts(kind, doc), doc


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_accepts_only_what_the_model_accepts(kind: str, data: st.DataObject) -> None:
    doc = data.draw(mutants(kind, SEEDS))
    for as_kind in KINDS:  # a mutant may have become another kind (its kind field changed)
        agrees(as_kind, doc)


@pytest.mark.parametrize("kind", KINDS)
def test_most_valid_mutants_take_the_fast_path(kind: str) -> None:
    """Not vacuous: of single-change mutants the model accepts, the fast path takes most (and never more)."""
    valid, fast = valid_mutants(kind, SEEDS, "fastkinds")
    assert valid >= 30  # (the mutations are made for policies: most break a pool or a node)
    assert fast >= 0.8 * valid, f"{kind}: only {fast} of {valid} valid mutants took the fast path"


EXTRA_REPLACEMENTS: list[Any] = ["Never", "Always", "LoadBalancer", "Workload", "*", "eth0", "10.0.0.0/8",
                                 "169.254.1.0/24", "fe80::/64", "10.0.0.1", "fd00::1", "64512", "1.10",
                                 "65536.1", "١٢", 20, 32, 33, 116, 128, 4294967296, "A" * 43 + "=",
                                 ["Workload", "Workload"], ["LoadBalancer", "Tunnel"], "default", "Pass"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_single_slot_change_agrees_with_the_model(kind: str) -> None:
    """Systematic, not random: each slot of each seed removed or given an odd or near-miss value in turn."""
    assert single_slot_changes_agree(kind, SEEDS, [*REPLACEMENTS, *EXTRA_REPLACEMENTS]) > 0


# ---------------------------------------------------------------- the models' defaults and cross-field rules

POOL = {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/16"}}
POOL_SPECS: list[dict[str, Any]] = [
    {"cidr": "10.0.0.0/16", "blockSize": b} for b in (0, 19, 20, 26, 32, 33, 116)] + [
    {"cidr": "10.0.0.0/24", "blockSize": 20}, {"cidr": "10.0.0.0/24", "blockSize": 20, "disabled": True},
    {"cidr": "10.0.0.0/27"}, {"cidr": "10.0.0.0/27", "disabled": True}, {"cidr": "fd00::/120"},
    {"cidr": "fd00::/64", "blockSize": 115}, {"cidr": "fd00::/64", "blockSize": 128},
    {"cidr": "fd00::/64", "ipipMode": "Always"}, {"cidr": "fd00::/64", "vxlanMode": "Always"},
    {"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": "CrossSubnet"},
    {"cidr": "10.0.0.0/16", "ipipMode": "Always", "vxlanMode": ""},
    {"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "disableBGPExport": True},
    {"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "nodeSelector": "a == 'b'"},
    {"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "nodeSelector": ""},
    {"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer"], "vxlanMode": "Always"},
    {"cidr": "10.0.0.0/16", "allowedUses": ["LoadBalancer", "LoadBalancer"]},
    {"cidr": "10.0.0.0/16", "allowedUses": ["Tunnel", "Workload"]},
    {"cidr": "10.0.0.0/16", "natOutgoing": None}, {"cidr": "10.0.0.0/16", "nodeSelector": None},
    {"cidr": "10.0.0.0/16", "vxlanMode": None}, {"cidr": "10.0.0.0/16", "assignmentMode": ""},
    {"cidr": "10.0.0.1/16"}, {"cidr": "10.0.0.1"}, {"cidr": "169.254.0.0/16"}, {"cidr": "169.0.0.0/8"},
    {"cidr": "fe80::/10"}, {"cidr": "10.0.0.0/255.255.0.0"}, {"cidr": ""},
]


@pytest.mark.parametrize("spec", POOL_SPECS, ids=lambda s: str(sorted(s.items())))
def test_pool_defaults_and_cross_field_checks_are_the_models(spec: dict[str, Any]) -> None:
    doc = {**POOL, "spec": spec}
    assert fast_accepts("IPPool", doc) == model_accepts("IPPool", doc)


@pytest.mark.parametrize(("name", "order", "valid"), [
    ("default", None, True), ("default", 1_000_000, True), ("default", 1_000_000.0, True), ("default", 5, False),
    ("kube-admin", 1000, True), ("kube-admin", 1001, False), ("kube-baseline", 10_000_000, True),
    ("other", 5, True), ("other", float("inf"), False), ("other", True, False), ("default", 10**400, False),
    ("a.b", 1, False), ("x" * 64, 1, False),
])
def test_tier_names_and_fixed_orders_are_the_models(name: str, order: Any, valid: bool) -> None:
    doc = {"apiVersion": V3, "kind": "Tier", "metadata": {"name": name}, "spec": {"order": order}}
    assert model_accepts("Tier", doc) == valid
    assert fast_accepts("Tier", doc) == valid


def test_static_tier_orders_are_the_models() -> None:
    assert fastkinds.STATIC_TIER_ORDERS == policy.STATIC_TIER_ORDERS


@pytest.mark.parametrize("bgp", [{}, {"asNumber": None}, {"ipv4Address": None, "ipv6Address": None},
                                 {"asNumber": 0}, {"ipv4Address": "10.0.0.1"}, {"ipv6Address": "10.0.0.1/24"}])
def test_an_empty_node_bgp_is_invalid_as_in_the_model(bgp: dict[str, Any]) -> None:
    doc = {"apiVersion": V3, "kind": "Node", "metadata": {"name": "n"}, "spec": {"bgp": bgp}}
    assert fast_accepts("Node", doc) == model_accepts("Node", doc)


@pytest.mark.parametrize("spec", [
    {"node": "n"}, {"node": "n", "interfaceName": ""}, {"node": "n", "expectedIPs": []},
    {"node": "", "interfaceName": "eth0"}, {"interfaceName": "eth0"}, {"node": "n", "interfaceName": "*"},
    {"node": "n", "interfaceName": "x" * 16}, {"node": "n", "expectedIPs": ["10.0.0.1/32"]},
    {"node": "n", "interfaceName": "eth0", "ports": [{"name": "x", "protocol": "ICMP", "port": 1}]},
    {"node": "n", "interfaceName": "eth0", "ports": [{"name": "x", "protocol": "TCP", "port": 0}]},
    {"node": "n", "interfaceName": "eth0", "ports": [{"protocol": "TCP", "port": 1}]},
    {"node": "n", "interfaceName": "eth0", "ports": [{"name": "a", "protocol": "tcp", "port": 1}]},
])
def test_host_endpoint_needs_a_node_and_an_interface_or_ips_as_in_the_model(spec: dict[str, Any]) -> None:
    doc = {"apiVersion": V3, "kind": "HostEndpoint", "metadata": {"name": "h"}, "spec": spec}
    assert fast_accepts("HostEndpoint", doc) == model_accepts("HostEndpoint", doc)


@pytest.mark.parametrize("name", ["default", "other", "", "Default"])
def test_cluster_information_is_only_default(name: str) -> None:
    doc = {"apiVersion": V3, "kind": "ClusterInformation", "metadata": {"name": name}}
    assert fast_accepts("ClusterInformation", doc) == model_accepts("ClusterInformation", doc) == (name == "default")


# ---------------------------------------------------------------- the restated rules, one by one

AS_TEXT = TEXT | st.sampled_from(["0", "4294967295", "4294967296", "1.10", "65535.65535", "65536.0", "1.", ".1",
                                  "١٢", "1.2.3", " 1", "01"]) | st.integers(-2, 2**33) | st.booleans()


@settings(max_examples=400, deadline=None)
@given(AS_TEXT)
def test_as_numbers_are_the_models_or_stricter(value: Any) -> None:
    number = fastkinds.as_number(value)
    if number is not None:
        assert not _raises(fields._as_number, value)
        assert fields._as_number(value) == number
    elif isinstance(value, str) and value.isascii() or isinstance(value, int):
        assert _raises(fields._as_number, value)  # ASCII forms: exactly the model's


ADDRESSES = st.sampled_from(["10.0.0.1", "10.0.0.1/32", "fd00::1", "fe80::1%eth0", "010.0.0.1", "::", "1.2.3",
                             " 10.0.0.1", "fd00::1/128", ""])


@settings(max_examples=300, deadline=None)
@given(ADDRESSES | TEXT)
def test_address_rules_are_the_models(text: str) -> None:
    for version in (4, 6):
        assert fastkinds.address_of(text, version) == (not _raises(fields._ip_version(version), text))
    assert fastkinds.address_of(text, 0) == (not _raises(fields._ip, text))


POOL_CIDRS = st.sampled_from(["10.0.0.0/8", "10.0.0.1/8", "10.0.0.0", "169.254.0.0/16", "169.254.3.0/24",
                              "168.0.0.0/6", "fe80::/64", "fe00::/7", "fd00:0::/48", "10.0.0.0/255.0.0.0",
                              "10.0.0.0/33", "", "/8", "10.0.0.0/8\n"])


@settings(max_examples=300, deadline=None)
@given(POOL_CIDRS | TEXT)
def test_pool_cidr_rule_is_the_models(text: str) -> None:
    net = fastkinds.pool_network(text)
    assert (net is not None) == (not _raises(ippool._pool_cidr, text))
    if net is not None:
        assert str(net) == ippool._pool_cidr(text)


# ---------------------------------------------------------------- the corpora


def test_valid_corpus_documents_of_these_kinds_take_the_fast_path_and_parse() -> None:
    accepted: dict[str, int] = {}
    for name, doc in _documents("valid"):
        for kind in KINDS:
            if fast_accepts(kind, doc):
                assert model_accepts(kind, doc), f"{name}: accepted as {kind} but the model rejects it"
                accepted[kind] = accepted.get(kind, 0) + 1
            elif doc.get("kind") == kind:
                assert not model_accepts(kind, doc), f"{name}: a valid {kind} that misses the fast path"
    assert set(accepted) == set(KINDS), f"the corpus should exercise every kind; accepted: {accepted}"


def test_no_invalid_corpus_document_is_accepted_as_any_of_these_kinds() -> None:
    documents = _documents("invalid")
    seen = {kind: 0 for kind in KINDS}
    for name, doc in documents:
        for kind in KINDS:
            assert not fast_accepts(kind, doc), f"{name}: invalid, yet accepted as {kind}"
        if doc.get("kind") in seen:
            seen[doc["kind"]] += 1
    assert all(seen[k] for k in ("Tier", "IPPool", "Node", "HostEndpoint")), seen


# ---------------------------------------------------------------- the syncer's filter: the key too


@pytest.mark.parametrize("kind", KINDS)
def test_the_filter_also_checks_the_key(kind: str) -> None:
    """What the fast path accepts still fails when its name is not the key's."""
    from libcalico.datastore.keys import RESOURCE_ROOT
    from libcalico.resources.base import kind_class
    from libcalico.syncer.catalog import felix_spec
    from libcalico.syncer.validation import ValidationFilter

    spec = felix_spec()
    doc = SEEDS[kind][0]
    name = doc["metadata"]["name"]
    right = f"{RESOURCE_ROOT}{kind_class(kind).KIND.plural}/{name}"
    rtype = spec.type_of(right)
    assert rtype is not None and fast_accepts(kind, doc)
    with structlog.testing.capture_logs():
        assert ValidationFilter("felix").accepts(rtype, right, doc, 1)
        for key in (f"{right}x", right.replace(name, "other")):
            assert spec.type_of(key) is rtype
            assert not ValidationFilter("felix").accepts(rtype, key, doc, 1), key
