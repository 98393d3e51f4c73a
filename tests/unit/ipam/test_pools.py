"""Pool qualification (Calico's pool_qualification.go rules) and reservations."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from libcalico.ipam.errors import NoQualifiedPool
from libcalico.ipam.pools import PoolInfo, Reservations, enabled_pools, host_order, qualify
from libcalico.resources import IPPool, IPReservation


def pool(name: str, cidr: str, **spec: Any) -> IPPool:
    return IPPool.model_validate({"metadata": {"name": name}, "spec": {"cidr": cidr, **spec}})


POOLS = enabled_pools([
    pool("b-rack1", "10.1.0.0/16", nodeSelector="rack == 'r1'"),
    pool("a-all", "10.0.0.0/16"),
    pool("c-off", "10.2.0.0/16", disabled=True),
    pool("d-prod", "10.3.0.0/16", namespaceSelector="env == 'prod'"),
    pool("e-tunnel", "10.4.0.0/16", allowedUses=["Tunnel"]),
    pool("f-manual", "10.5.0.0/16", assignmentMode="Manual"),
    pool("v6", "fd00::/64"),
])


def names(pools: list[PoolInfo]) -> list[str]:
    return [p.name for p in pools]


def test_disabled_pools_are_never_enabled() -> None:
    assert "c-off" not in names(POOLS)
    assert names(POOLS) == ["a-all", "b-rack1", "d-prod", "e-tunnel", "f-manual", "v6"]


def test_selectors_uses_and_assignment_mode() -> None:
    assert names(qualify(POOLS, 4, "Workload", {}, None)) == ["a-all"]
    assert names(qualify(POOLS, 4, "Workload", {"rack": "r1"}, {"env": "prod"})) == ["a-all", "b-rack1", "d-prod"]
    assert names(qualify(POOLS, 4, "Tunnel", {}, None)) == ["a-all", "e-tunnel"]
    assert names(qualify(POOLS, 6, "Workload", {}, None)) == ["v6"]


def test_requested_pools_skip_selectors_but_not_uses_or_disabled() -> None:
    assert names(qualify(POOLS, 4, "Workload", {}, None, ["b-rack1", "10.5.0.0/16"])) == ["b-rack1", "f-manual"]
    with pytest.raises(NoQualifiedPool, match="does not exist, or is not enabled"):
        qualify(POOLS, 4, "Workload", {}, None, ["c-off"])
    with pytest.raises(NoQualifiedPool, match="does not exist"):
        qualify(POOLS, 4, "Workload", {}, None, ["10.99.0.0/16"])
    with pytest.raises(NoQualifiedPool, match="allows use Workload"):
        qualify(POOLS, 4, "Workload", {}, None, ["e-tunnel"])


def test_no_pool_for_node_is_an_error() -> None:
    only_rack = enabled_pools([pool("r", "10.1.0.0/16", nodeSelector="rack == 'r1'")])
    with pytest.raises(NoQualifiedPool, match="no configured Calico IPv4 pools for node n9"):
        qualify(only_rack, 4, "Workload", {}, None, host="n9")


def test_block_arithmetic() -> None:
    p = enabled_pools([pool("p", "10.0.0.0/24", blockSize=26)])[0]
    assert p.block_count() == 4
    assert p.nth_block(3) == ipaddress.ip_network("10.0.0.192/26")
    assert p.block_of(ipaddress.ip_address("10.0.0.77")) == ipaddress.ip_network("10.0.0.64/26")
    order = list(host_order("node-1", 4))
    assert sorted(order) == [0, 1, 2, 3] and order == list(host_order("node-1", 4))


def test_reservations() -> None:
    res = Reservations([IPReservation.model_validate(
        {"metadata": {"name": "r"}, "spec": {"reservedCIDRs": ["10.0.0.0/31", "10.0.0.2/31", "10.0.1.5"]}})])
    assert res.holds(ipaddress.ip_address("10.0.0.1"))
    assert not res.holds(ipaddress.ip_address("10.0.0.4"))
    assert res.covers(ipaddress.ip_network("10.0.0.0/30"))  # two /31s together cover it
    assert not res.covers(ipaddress.ip_network("10.0.1.0/30"))
    assert res.touching(ipaddress.ip_network("10.0.1.4/30")) == [ipaddress.ip_network("10.0.1.5/32")]
