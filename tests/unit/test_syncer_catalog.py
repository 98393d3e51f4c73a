"""What each syncer type carries, how it maps onto watches, backoff bounds and the validation checks."""

from __future__ import annotations

import random

import pytest

from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.errors import ValidationError
from libcalico.syncer.backoff import RetryPolicy
from libcalico.syncer.catalog import (
    RESOURCE_KINDS,
    SyncerSpec,
    bgp_spec,
    felix_spec,
    ipam_blocks,
    resource_type,
    syncer_spec,
    tunnel_ip_allocation_spec,
)
from libcalico.syncer.plan import WatchMode, common_prefix, plan_watches
from libcalico.syncer.validation import check_value

R = RESOURCE_ROOT
BLOCK4 = "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26"
BLOCK6 = "/calico/ipam/v2/assignment/ipv6/block/fd00::-122"
AFFINITY_N1 = "/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26"
AFFINITY_N2 = "/calico/ipam/v2/host/n2/ipv6/block/fd00::-122"

FELIX_CARRIES = [
    f"{R}clusterinformations/default", f"{R}felixconfigurations/default", f"{R}tiers/default",
    f"{R}networkpolicies/ns1/p1", f"{R}globalnetworkpolicies/g1", f"{R}stagednetworkpolicies/ns1/s1",
    f"{R}stagedglobalnetworkpolicies/s1", f"{R}stagedkubernetesnetworkpolicies/ns1/k1",
    f"{R}networksets/ns1/n1", f"{R}globalnetworksets/g1", f"{R}ippools/p1", f"{R}nodes/n1",
    f"{R}profiles/kns.ns1", f"{R}workloadendpoints/ns1/n1-k8s-pod-eth0", f"{R}hostendpoints/h1",
    f"{R}bgpconfigurations/default", f"{R}bgppeers/peer1", BLOCK4, BLOCK6,
]
NOBODY_CARRIES = [
    "/calico/ipam/v2/handle/k8s-pod-network.abc", "/calico/felix/v2/no-region/host/n1/status",
    f"{R}networkpolicies/p1-without-namespace", f"{R}globalnetworkpolicies/ns1/too-deep",
    f"{R}kubecontrollersconfigurations/default", "/calico/ipam/v2/assignment/ipv4/block/x/extra",
]


@pytest.mark.parametrize("key", FELIX_CARRIES)
def test_felix_carries(key: str) -> None:
    assert felix_spec().type_of(key) is not None


@pytest.mark.parametrize("key", NOBODY_CARRIES)
def test_nobody_carries(key: str) -> None:
    for spec in (felix_spec(), bgp_spec(), tunnel_ip_allocation_spec()):
        assert spec.type_of(key) is None, (spec.name, key)


def test_bgp_has_no_policies_and_has_affinities() -> None:
    spec = bgp_spec()
    carried = {k for k in FELIX_CARRIES if spec.type_of(k)}
    assert carried == {f"{R}ippools/p1", f"{R}nodes/n1", f"{R}bgpconfigurations/default", f"{R}bgppeers/peer1"}
    assert spec.type_of(f"{R}bgpfilters/f1") is not None
    assert spec.type_of(AFFINITY_N1) is not None and spec.type_of(AFFINITY_N2) is not None
    assert felix_spec().type_of(AFFINITY_N1) is None


def test_bgp_node_filter_narrows_affinities() -> None:
    spec = bgp_spec("n1")
    assert spec.type_of(AFFINITY_N1) is not None
    assert spec.type_of(AFFINITY_N2) is None
    assert spec.type_of(f"{R}nodes/n2") is not None  # confd needs every node (peerings)


def test_tunnel_node_filter_is_exact() -> None:
    spec = tunnel_ip_allocation_spec("n1")
    assert spec.type_of(f"{R}nodes/n1") is not None
    assert spec.type_of(f"{R}nodes/n1-b") is None
    assert spec.type_of(f"{R}ippools/p1") is not None
    assert spec.type_of(f"{R}bgppeers/peer1") is None
    assert tunnel_ip_allocation_spec().type_of(f"{R}nodes/n1-b") is not None


def test_unknown_syncer_type() -> None:
    with pytest.raises(ValueError, match="unknown syncer type 'calc'.*felix, bgp, tunnel-ip-allocation"):
        syncer_spec("calc")


def test_name_filter_needs_cluster_scoped_kind() -> None:
    with pytest.raises(ValueError, match="cluster-scoped"):
        resource_type("networkpolicies", "p1")


# ---------------------------------------------------------------- watch plans


@pytest.mark.parametrize(("prefixes", "expected"), [
    ([f"{R}ippools/", f"{R}nodes/n1"], R),
    ([f"{R}ippools/"], f"{R}ippools/"),
    ([f"{R}nodes/n1"], f"{R}nodes/n1"),
    (["/a/bc/", "/a/bd/"], "/a/"),
    (["/a/b/", "/a/b/c/"], "/a/b/"),
    ([f"{R}ippools/", "/calico/ipam/v2/host/"], "/calico/"),
])
def test_common_prefix(prefixes: list[str], expected: str) -> None:
    assert common_prefix(prefixes) == expected


@pytest.mark.parametrize("spec", [felix_spec(), bgp_spec("n1"), tunnel_ip_allocation_spec("n1")], ids=lambda s: s.name)
def test_plans_cover_every_type(spec: SyncerSpec) -> None:
    per_type = plan_watches(spec, WatchMode.PER_TYPE)
    assert [p.types for p in per_type] == [(t,) for t in spec.types]
    (shared,) = plan_watches(spec, WatchMode.SHARED)
    assert shared.types == spec.types
    assert all(t.prefix.startswith(shared.prefix) for t in spec.types)


# ---------------------------------------------------------------- backoff


def test_backoff_grows_and_is_bounded() -> None:
    policy = RetryPolicy(initial=0.1, maximum=2.0, multiplier=2.0, jitter=0.25)
    rng = random.Random(7)
    delays = [policy.delay(n, rng) for n in range(1, 200)]
    assert all(0.075 <= d <= 2.5 for d in delays)
    assert delays[0] <= 0.125 and min(delays[10:]) >= 1.5
    assert len({round(d, 6) for d in delays[10:]}) > 10  # jittered, not lock-step


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 3, "maximum": 2}, {"multiplier": 0.5}, {"jitter": 1}])
def test_backoff_rejects_nonsense(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="retry policy"):
        RetryPolicy(**kwargs)


# ---------------------------------------------------------------- validation


def np(name: str = "p1", ns: str = "ns1", action: str = "Allow") -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": "all()", "ingress": [{"action": action}]}}


def test_valid_policy_passes() -> None:
    check_value(resource_type("networkpolicies"), f"{R}networkpolicies/ns1/p1", np())


@pytest.mark.parametrize(("key", "value", "field"), [
    (f"{R}networkpolicies/ns1/p1", np(action="Allowz"), "spec.ingress[0].action"),
    (f"{R}networkpolicies/ns1/p2", np(), "metadata.name"),
    (f"{R}networkpolicies/ns2/p1", np(), "metadata.namespace"),
    (f"{R}networkpolicies/ns1/p1", {**np(), "kind": "GlobalNetworkPolicy"}, "kind"),
    (f"{R}networkpolicies/ns1/p1", {"kind": "NetworkPolicy"}, "metadata"),
])
def test_invalid_resources(key: str, value: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        check_value(resource_type("networkpolicies"), key, value)
    assert info.value.field == field


def test_kind_without_model_gets_key_and_shape_checks() -> None:
    rtype = resource_type("bgppeers")
    good = {"apiVersion": "projectcalico.org/v3", "kind": "BGPPeer", "metadata": {"name": "peer1"}, "spec": {}}
    check_value(rtype, f"{R}bgppeers/peer1", good)
    with pytest.raises(ValidationError, match="apiVersion"):
        check_value(rtype, f"{R}bgppeers/peer1", {**good, "apiVersion": "v1"})


def test_value_must_be_a_map() -> None:
    with pytest.raises(ValidationError, match="must be a map, not list"):
        check_value(resource_type("ippools"), f"{R}ippools/p1", [])


def test_block_checks() -> None:
    blocks = ipam_blocks()
    check_value(blocks, BLOCK4, {"cidr": "10.0.0.0/26", "allocations": [0, None], "unallocated": [1],
                                 "attributes": [{"handle_id": "h"}]})
    check_value(blocks, BLOCK6, {"cidr": "fd00::/122"})
    with pytest.raises(ValidationError, match="does not match the block key's CIDR '10.0.0.0/26'"):
        check_value(blocks, BLOCK4, {"cidr": "10.0.0.64/26"})
    with pytest.raises(ValidationError, match="allocations"):
        check_value(blocks, BLOCK4, {"cidr": "10.0.0.0/26", "allocations": ["x"]})


def test_affinity_checks() -> None:
    aff = bgp_spec().types[-1]
    check_value(aff, AFFINITY_N1, {"state": "confirmed", "deleted": False})
    with pytest.raises(ValidationError, match="'bogus' is not one of"):
        check_value(aff, AFFINITY_N1, {"state": "bogus"})


def test_every_kind_named_is_carried_by_some_syncer() -> None:
    carried = {t.name for s in (felix_spec(), bgp_spec(), tunnel_ip_allocation_spec()) for t in s.types}
    assert set(RESOURCE_KINDS) <= carried
