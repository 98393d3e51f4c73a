"""IPAM against real datastores: block order, exhaustion, borrowing, strict affinity, limits, reservations,
disabled pools, selectors, release, affinity release and crash repair.

Most cases run on sqlite and on a real etcd; a smoke case runs on every backend including kubernetes.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from libcalico.datastore.backend import Backend
from libcalico.datastore.client import Client
from libcalico.ipam import (
    IPAM,
    AddressInUse,
    AddressReserved,
    AssignRequest,
    BlockNotEmpty,
    InvalidIPAMConfig,
    IPAMSettings,
    NoFreeAddresses,
    NoQualifiedPool,
    ReleaseRequest,
)
from libcalico.ipam.keys import affinity_key, block_key, handle_key
from libcalico.ipam.report import check, scan
from libcalico.resources import IPPool, IPReservation, Node


@pytest.fixture(params=["sqlite", "etcd"])
def store(request: pytest.FixtureRequest) -> Backend:
    """An empty sqlite or etcd backend."""
    backend = request.getfixturevalue(f"{request.param}_backend")
    assert isinstance(backend, Backend)
    return backend


async def add_pool(backend: Backend, name: str, cidr: str, **spec: Any) -> None:
    await Client(backend).create(IPPool.model_validate({"metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}))


async def assign(ipam: IPAM, host: str, num: int = 1, handle: str | None = None, **kw: Any) -> list[str]:
    got = await ipam.auto_assign(AssignRequest(host=host, num4=num, handle=handle or f"h-{host}", **kw))
    return [str(i.ip) for i in got.ipv4]


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


async def in_use(backend: Backend) -> list[str]:
    return sorted((a.ip for a in (await scan(backend)).allocations), key=lambda s: int(ipaddress.ip_address(s)))


async def test_smoke_on_every_backend(backend: Backend) -> None:
    await add_pool(backend, "p", "10.0.0.0/28", blockSize=30)
    ipam = IPAM(backend)
    got = await ipam.auto_assign(AssignRequest(host="n1", num4=2, handle="k8s-pod-network.c1",
                                               attrs={"node": "n1"}))
    assert [i.network.prefixlen for i in got.ipv4] == [30, 30]
    assert sorted(await ipam.ips_by_handle("k8s-pod-network.c1")) == sorted(got.addresses)
    assert await ipam.release_by_handle("k8s-pod-network.c1") == got.addresses
    report = await check(backend)
    assert report.problems == 0 and not report.scan.allocations and not report.scan.handles


async def test_affine_block_first_then_new_blocks_then_exhaustion(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/28", blockSize=30)
    ipam = IPAM(store)
    first = await assign(ipam, "n1", 3)
    block = ipaddress.ip_network(f"{first[0]}/30", strict=False)
    assert all(ipaddress.ip_address(ip) in block for ip in first)  # one block serves the first three
    more = await assign(ipam, "n1", 13, handle="h2")
    assert len(set(first + more)) == 16
    with pytest.raises(NoFreeAddresses, match="only 0 available"):
        await assign(ipam, "n1", 1, handle="h3")
    with pytest.raises(NoFreeAddresses):
        await assign(ipam, "n2", 1, handle="h4")
    assert len(await in_use(store)) == 16
    assert (await ipam.store.read_handle("h3")) is None  # a failed request leaves no handle behind


async def test_a_request_that_cannot_be_met_keeps_nothing(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/29", blockSize=30)
    ipam = IPAM(store)
    with pytest.raises(NoFreeAddresses, match="cannot assign 9 IPv4 address"):
        await assign(ipam, "n1", 9)
    assert await in_use(store) == []
    assert await ipam.store.read_handle("h-n1") is None


async def test_borrowing_and_strict_affinity(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/29", blockSize=30)  # two blocks
    ipam = IPAM(store)
    a = await assign(ipam, "n1")
    b = await assign(ipam, "n2")
    borrowed = await assign(ipam, "n3", 2, attrs={"node": "n3"})
    owners = {str(c): blk.host for c, blk in (await scan(store)).blocks.items()}
    assert set(owners.values()) == {"n1", "n2"}  # n3 claimed nothing: it borrowed
    assert not set(borrowed) & set(a + b)
    assert await ipam.store.read_affinity("n3", net(borrowed[0] + "/30")) is None
    await ipam.configure(IPAMSettings(strict_affinity=True))
    with pytest.raises(NoFreeAddresses, match="strict affinity"):
        await assign(ipam, "n3", 1, handle="h-n3-b")
    assert len(await in_use(store)) == 4


async def test_max_blocks_per_host(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/28", blockSize=30)
    ipam = IPAM(store)
    await ipam.configure(IPAMSettings(strict_affinity=True, max_blocks_per_host=2))
    got = await assign(ipam, "n1", 8)
    with pytest.raises(NoFreeAddresses, match="maximum of 2 blocks"):
        await assign(ipam, "n1", 1, handle="more")
    assert len(got) == 8
    assert len(await assign(ipam, "n2", 8)) == 8  # the rest of the pool is still there for others


async def test_auto_allocate_blocks_off(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/28", blockSize=30)
    ipam = IPAM(store)
    with pytest.raises(InvalidIPAMConfig):
        await ipam.configure(IPAMSettings(strict_affinity=False, auto_allocate_blocks=False))
    await ipam.configure(IPAMSettings(strict_affinity=True, auto_allocate_blocks=False))
    with pytest.raises(NoFreeAddresses):
        await assign(ipam, "n1")
    await ipam.assign_ip("10.0.0.9", "static", None, "n1")  # claims 10.0.0.8/30 for n1
    assert await assign(ipam, "n1", 3) == ["10.0.0.8", "10.0.0.10", "10.0.0.11"]


async def test_reservations_are_never_handed_out(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/28", blockSize=29)
    await Client(store).create(IPReservation.model_validate(
        {"metadata": {"name": "r"}, "spec": {"reservedCIDRs": ["10.0.0.0/30", "10.0.0.6/32", "10.0.0.8/29"]}}))
    ipam = IPAM(store)
    got = await assign(ipam, "n1", 3)
    assert sorted(got) == ["10.0.0.4", "10.0.0.5", "10.0.0.7"]
    with pytest.raises(NoFreeAddresses):
        await assign(ipam, "n2", 1)  # 10.0.0.8/29 is wholly reserved: never claimed or borrowed
    with pytest.raises(AddressReserved):
        await ipam.assign_ip("10.0.0.6", "x", None, "n1")


async def test_disabled_pools_are_never_used(store: Backend) -> None:
    await add_pool(store, "a-live", "10.0.0.0/30", blockSize=30)
    await add_pool(store, "b-off", "10.1.0.0/24", blockSize=30, disabled=True)
    ipam = IPAM(store)
    assert all(ip.startswith("10.0.0.") for ip in await assign(ipam, "n1", 4))
    with pytest.raises(NoFreeAddresses):
        await assign(ipam, "n1", 1, handle="x")
    with pytest.raises(NoQualifiedPool):
        await assign(ipam, "n1", 1, handle="y", ipv4_pools=["b-off"])
    # A host's block in a pool that is disabled later is not used either.
    await ipam.release_by_handle("h-n1")
    pool = await Client(store).get(IPPool, "a-live")
    pool.spec.disabled = True  # type: ignore[attr-defined]
    await Client(store).update(pool)
    with pytest.raises(NoQualifiedPool):
        await assign(ipam, "n1", 1, handle="z")
    assert await in_use(store) == []


async def test_node_and_namespace_selectors(store: Backend) -> None:
    client = Client(store)
    await add_pool(store, "rack1", "10.1.0.0/29", blockSize=30, nodeSelector="rack == 'r1'")
    await add_pool(store, "prod", "10.2.0.0/29", blockSize=30, namespaceSelector="env == 'prod'")
    await client.create(Node.model_validate({"metadata": {"name": "n1", "labels": {"rack": "r1"}}}))
    ipam = IPAM(store)
    assert (await assign(ipam, "n1"))[0].startswith("10.1.")
    with pytest.raises(NoQualifiedPool, match="no configured Calico IPv4 pools for node n2"):
        await assign(ipam, "n2")
    got = await assign(ipam, "n2", 1, handle="p", namespace_labels={"env": "prod"})
    assert got[0].startswith("10.2.")
    assert (await assign(ipam, "n2", 1, handle="q", ipv4_pools=["10.1.0.0/29"]))[0].startswith("10.1.")


async def test_release_by_address_checks_handle_and_sequence(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/29", blockSize=30)
    ipam = IPAM(store)
    ips = [ipaddress.ip_address(x) for x in await assign(ipam, "n1", 2, handle="h")]
    info = await ipam.allocation(ips[0])
    assert info is not None and info.handle == "h"
    assert await ipam.release_ips([ReleaseRequest(ips[0], handle="other")]) == []
    assert await ipam.release_ips([ReleaseRequest(ips[0], sequence=info.sequence + 99)]) == []
    assert await ipam.release_ips([ReleaseRequest(ips[0], "h", info.sequence)]) == [ips[0]]
    held = await ipam.store.read_handle("h")
    assert held is not None and held[0].blocks == {str(ipaddress.ip_network(f"{ips[1]}/30", strict=False)): 1}
    assert await ipam.release_ips([ReleaseRequest(ips[1])]) == [ips[1]]
    assert await ipam.store.read_handle("h") is None
    assert await ipam.release_ips([ReleaseRequest(ips[1])]) == []  # releasing again is a no-op
    await ipam.assign_ip(str(ips[0]), "a", None, "n1")
    with pytest.raises(AddressInUse, match="handle a"):
        await ipam.assign_ip(str(ips[0]), "b", None, "n1")


async def test_release_block_affinity(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/29", blockSize=30)
    ipam = IPAM(store)
    ip = (await assign(ipam, "n1"))[0]
    cidr = ipaddress.ip_network(f"{ip}/30", strict=False)
    with pytest.raises(BlockNotEmpty):
        await ipam.release_affinity("n1", cidr)
    state = await ipam.store.read_affinity("n1", cidr)
    assert state is not None and state[0].value == "confirmed"
    await ipam.release_by_handle("h-n1")
    assert await ipam.release_affinity("n1", cidr)
    assert await ipam.store.read_block(cidr) is None
    assert await ipam.store.read_affinity("n1", cidr) is None
    # Not requiring emptiness: the block stays, unowned, and its allocation with it.
    ip = (await assign(ipam, "n1", 1, handle="again"))[0]
    cidr = ipaddress.ip_network(f"{ip}/30", strict=False)
    assert await ipam.release_affinity("n1", cidr, must_be_empty=False)
    found = await ipam.store.read_block(cidr)
    assert found is not None and found[0].host is None and found[0].in_use() == 1
    await ipam.release_by_handle("again")
    assert await ipam.store.read_block(cidr) is None  # an unowned block goes once empty


async def test_concurrent_assignments_on_one_host_never_collide(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/26", blockSize=29)
    ipam = IPAM(store)
    results = await asyncio.gather(*(assign(ipam, "n1", 2, handle=f"c{i}") for i in range(20)))
    flat = [ip for r in results for ip in r]
    assert len(flat) == len(set(flat)) == 40
    report = await check(store)
    assert report.miscounted_handles == [] and report.missing_handles == [] and report.leaked_handles == []


class Crash(Exception):
    """Raised by the fault hook to stop an operation between two datastore steps."""


@pytest.mark.parametrize("point", ["affinity-pending", "block-created", "handle-updated", "block-written"])
async def test_a_crash_between_steps_is_repaired_by_the_owner(store: Backend, point: str) -> None:
    await add_pool(store, "p", "10.0.0.0/29", blockSize=30)

    def fault(where: str) -> None:
        if where == point:
            raise Crash(where)

    crashing = IPAM(store, fault=fault)
    with pytest.raises(Crash):
        await crashing.auto_assign(AssignRequest(host="n1", num4=1, handle="k8s-pod-network.c"))
    healthy = IPAM(store)
    # The owner (the CNI DEL after a failed ADD) releases by handle; then a fresh ADD works normally.
    await healthy.release_by_handle("k8s-pod-network.c")
    assert await in_use(store) == []
    got = await healthy.auto_assign(AssignRequest(host="n1", num4=5, handle="k8s-pod-network.d"))
    assert len(got.ipv4) == 5
    await healthy.release_by_handle("k8s-pod-network.d")
    report = await check(store)
    assert report.problems == 0, report
    aff = {kv.key for kv in (await store.list("/calico/ipam/v2/host/")).items}
    blocks = {kv.key for kv in (await store.list("/calico/ipam/v2/assignment/")).items}
    assert {k.rsplit("/", 1)[1] for k in aff} == {k.rsplit("/", 1)[1] for k in blocks}  # no orphan either way


async def test_keys_and_values_are_calicos(store: Backend) -> None:
    await add_pool(store, "p", "10.0.0.0/29", blockSize=30)
    ipam = IPAM(store)
    ip = (await assign(ipam, "node-1", 1, handle="k8s-pod-network.abc", attrs={"pod": "p"}))[0]
    cidr = ipaddress.ip_network(f"{ip}/30", strict=False)
    block = (await store.get(block_key(cidr))).value
    assert block["affinity"] == "host:node-1" and block["cidr"] == str(cidr)
    assert block["attributes"] == [{"handle_id": "k8s-pod-network.abc", "secondary": {"pod": "p"}}]
    assert set(block) >= {"allocations", "unallocated", "sequenceNumber", "sequenceNumberForAllocation", "deleted"}
    assert (await store.get(affinity_key("node-1", cidr))).value == {"state": "confirmed", "deleted": False}
    assert (await store.get(handle_key("k8s-pod-network.abc"))).value == {"block": {str(cidr): 1}, "deleted": False}
