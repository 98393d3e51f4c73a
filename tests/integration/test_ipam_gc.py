"""The leak collector: releases addresses whose owner is gone for a grace period, never one whose owner exists."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from libcalico.datastore.backend import Backend
from libcalico.datastore.client import Client
from libcalico.ipam import IPAM, AssignRequest
from libcalico.ipam.gc import LeakCollector
from libcalico.ipam.report import check, scan
from libcalico.resources import IPPool, Node, WorkloadEndpoint

GRACE = 300.0


@pytest.fixture(params=["sqlite", "etcd"])
def store(request: pytest.FixtureRequest) -> Backend:
    backend = request.getfixturevalue(f"{request.param}_backend")
    assert isinstance(backend, Backend)
    return backend


async def setup(store: Backend) -> IPAM:
    await Client(store).create(IPPool.model_validate(
        {"metadata": {"name": "p"}, "spec": {"cidr": "10.0.0.0/27", "blockSize": 29}}))
    return IPAM(store)


async def give(ipam: IPAM, handle: str, attrs: dict[str, str], num: int = 1, host: str = "n1") -> list[str]:
    got = await ipam.auto_assign(AssignRequest(host=host, num4=num, handle=handle, attrs=attrs))
    return [str(a) for a in got.addresses]


async def wep(store: Backend, pod: str, ips: list[str], container: str = "c", ns: str = "default") -> None:
    await Client(store).create(WorkloadEndpoint.model_validate({
        "metadata": {"name": f"n1-k8s-{pod}-eth0", "namespace": ns},
        "spec": {"orchestrator": "k8s", "node": "n1", "pod": pod, "endpoint": "eth0", "containerID": container,
                 "interfaceName": "cali0", "ipNetworks": [f"{ip}/32" for ip in ips]}}))


async def held(store: Backend) -> set[str]:
    return {a.ip for a in (await scan(store)).allocations}


async def test_owned_addresses_survive_and_orphans_go_after_the_grace_period(store: Backend) -> None:
    ipam = await setup(store)
    live = await give(ipam, "k8s-pod-network.live", {"namespace": "default", "pod": "web", "node": "n1"})
    await wep(store, "web", live, container="live")
    orphan = await give(ipam, "k8s-pod-network.dead", {"namespace": "default", "pod": "gone", "node": "n1"})
    manual = await give(ipam, "my-reservation", {})  # no clue to an owner: assumed valid, as Calico does
    gc = LeakCollector(ipam, GRACE, release_empty_blocks=False)
    first = await gc.run_once(now=0.0)
    assert first.released == [] and first.suspected == 1
    assert (await gc.run_once(now=GRACE - 1)).released == []
    done = await gc.run_once(now=GRACE + 1)
    assert done.released == orphan
    for t in (GRACE * 3, GRACE * 10):
        assert (await gc.run_once(now=t)).released == []
    assert await held(store) == set(live + manual)
    assert await ipam.store.read_handle("k8s-pod-network.dead") is None


async def test_a_handle_is_released_whole_or_not_at_all(store: Backend) -> None:
    ipam = await setup(store)
    both = await give(ipam, "k8s-pod-network.c1", {"node": "n1"}, num=2)
    await wep(store, "other", both[:1], container="someone-else")  # one address is in use by an endpoint
    gc = LeakCollector(ipam, GRACE)
    await gc.run_once(now=0.0)
    assert (await gc.run_once(now=GRACE + 1)).released == []
    assert await held(store) == set(both)
    await Client(store).delete(WorkloadEndpoint, "n1-k8s-other-eth0", "default")
    await gc.run_once(now=GRACE + 2)
    assert sorted((await gc.run_once(now=2 * GRACE + 3)).released) == sorted(both)


async def test_container_handles_and_tunnel_addresses(store: Backend) -> None:
    ipam = await setup(store)
    client = Client(store)
    await client.create(Node.model_validate({"metadata": {"name": "n1"}}))
    tunnel = await give(ipam, "vxlan-tunnel-addr-n1", {"node": "n1", "type": "vxlanTunnelAddress"})
    container = await give(ipam, "k8s-pod-network.abc", {"node": "n1"})
    await wep(store, "x", ["10.99.0.1"], container="abc")  # found by container ID, not by address
    gc = LeakCollector(ipam, GRACE)
    await gc.run_once(now=0.0)
    assert (await gc.run_once(now=GRACE + 1)).released == []
    await client.delete(Node, "n1")
    await client.delete(WorkloadEndpoint, "n1-k8s-x-eth0", "default")
    await gc.run_once(now=GRACE + 2)
    assert sorted((await gc.run_once(now=2 * GRACE + 3)).released) == sorted(tunnel + container)


async def test_revalidation_just_before_release_keeps_a_returning_owner(store: Backend) -> None:
    ipam = await setup(store)
    ip = await give(ipam, "k8s-pod-network.p", {"namespace": "default", "pod": "p", "node": "n1"})
    answers: list[bool] = []

    async def pod_exists(namespace: str, pod: str) -> bool:
        answers.append(len(answers) >= 2)  # gone for the first two looks, back for the re-check
        return answers[-1]

    gc = LeakCollector(ipam, GRACE, pod_exists=pod_exists)
    await gc.run_once(now=0.0)
    assert (await gc.run_once(now=GRACE + 1)).released == []
    assert answers == [False, False, True]
    assert await held(store) == set(ip)


async def test_an_address_handed_out_again_is_a_new_allocation(store: Backend) -> None:
    ipam = await setup(store)
    first = await give(ipam, "k8s-pod-network.old", {"namespace": "default", "pod": "a", "node": "n1"})
    gc = LeakCollector(ipam, GRACE)
    await gc.run_once(now=0.0)
    await ipam.release_by_handle("k8s-pod-network.old")
    await ipam.assign_ip(first[0], "k8s-pod-network.new", {"namespace": "default", "pod": "b", "node": "n1"}, "n1")
    result = await gc.run_once(now=GRACE + 1)  # same address, new owner and sequence number: just suspected
    assert result.released == [] and result.suspected == 1
    assert await held(store) == set(first)


async def test_empty_blocks_are_released_after_two_looks_keeping_the_last(store: Backend) -> None:
    ipam = await setup(store)
    await give(ipam, "k8s-pod-network.a", {"node": "n1"}, num=12)  # two blocks of 8
    await ipam.release_by_handle("k8s-pod-network.a")
    gc = LeakCollector(ipam, GRACE)
    assert (await gc.run_once(now=0.0)).released_blocks == []
    released = (await gc.run_once(now=GRACE + 1)).released_blocks
    assert len(released) == 1
    remaining = (await scan(store)).blocks
    assert len(remaining) == 1 and next(iter(remaining.values())).host == "n1"
    assert (await gc.run_once(now=5 * GRACE)).released_blocks == []
    assert (await check(store)).problems == 0


async def test_check_report_finds_leaks_and_unallocated_use(store: Backend) -> None:
    ipam = await setup(store)
    leaked = await give(ipam, "k8s-pod-network.l", {"node": "n1"})
    used = await give(ipam, "k8s-pod-network.u", {"node": "n1"})
    await wep(store, "u", used + ["10.0.0.30", "192.168.9.9"])
    await store.create("/calico/ipam/v2/handle/stray", {"block": {}, "deleted": False})
    report = await check(store)
    assert report.leaked_ips == leaked
    assert report.unallocated_in_use == ["10.0.0.30"]
    assert report.non_calico_ips == ["192.168.9.9"]
    assert report.leaked_handles == ["stray"]
    assert report.problems == 4
    doc: dict[str, Any] = report.to_json("v0")
    entry = doc["allocations"][leaked[0]][0]
    assert entry["inUse"] is False and entry["handle"] == "k8s-pod-network.l" and entry["node"] == "n1"
    assert doc["allocations"][used[0]][0]["owners"] == ["Workload(default/n1-k8s-u-eth0)"]
    assert ipaddress.ip_address(leaked[0]) in ipaddress.ip_network("10.0.0.0/27")
