"""Faults at the syncer level on real etcd: what a felix syncer's consumer sees, compared key by key with etcd.

- etcd killed and restarted under a watching syncer (writes issued while it was down land after);
- one member of a 3-member cluster killed (its writes and watches go on through the others);
- compaction past the syncer's watches: exactly one re-list per watch, counted at the syncer
  and as Range requests at etcd itself;
- invalid data written around the API (not JSON, too deep, bad UTF-8, invalid resources):
  skipped as deleted, logged once across resyncs, never a crash.

Every etcd is a real ``/usr/bin/etcd`` from tests/fixtures/etcd.py. ``Faults`` (from the
syncer resync tests) sits in front of the backend where a test needs to hold watches or
cut the store off; it counts list calls.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import structlog

from libcalico.datastore.backend import Backend
from libcalico.datastore.etcd import EtcdBackend
from libcalico.datastore.etcd_connection import EtcdClient
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.errors import ValidationError
from libcalico.syncer import (
    RetryPolicy,
    Syncer,
    SyncStatus,
    Update,
    UpdateType,
    ViewCallbacks,
    WatchMode,
    syncer_spec,
)
from libcalico.syncer.catalog import SyncerSpec
from libcalico.syncer.validation import check_value
from tests.fixtures.etcd import EtcdCluster
from tests.integration.test_syncer_resync import Faults

R = RESOURCE_ROOT
V3 = "projectcalico.org/v3"
FAST = RetryPolicy(initial=0.02, maximum=0.2)
WFD, RIP, IN_SYNC = SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC
FELIX = syncer_spec("felix")


def wep(name: str, n: int, ns: str = "ns1") -> tuple[str, dict[str, Any]]:
    """A valid WorkloadEndpoint and its key."""
    value = {
        "apiVersion": V3, "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": "web", "projectcalico.org/namespace": ns}},
        "spec": {"orchestrator": "k8s", "node": "node-1", "pod": name, "endpoint": "eth0",
                 "interfaceName": f"cali{n:011d}", "ipNetworks": [f"10.0.{n // 250}.{n % 250}/32"],
                 "profiles": [f"kns.{ns}"], "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]},
    }
    return f"{R}workloadendpoints/{ns}/{name}", value


def pool(name: str, cidr: str) -> tuple[str, dict[str, Any]]:
    return f"{R}ippools/{name}", {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": name},
                                  "spec": {"cidr": cidr}}


async def etcd_view(store: Backend, spec: SyncerSpec = FELIX) -> dict[str, Any]:
    """What a consumer of ``spec`` must hold: etcd's carried entries that pass validation."""
    out: dict[str, Any] = {}
    for kv in (await store.list("/calico/")).items:
        rtype = spec.type_of(kv.key)
        if rtype is None:
            continue
        try:
            check_value(rtype, kv.key, kv.value)
        except ValidationError:
            continue
        out[kv.key] = kv.value
    return out


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(1_000_000):
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


def range_requests(cluster: EtcdCluster) -> float:
    """Range requests every member has handled so far (etcd's own gRPC metric)."""
    return sum(m.metric("grpc_server_handled_total", grpc_method="Range") for m in cluster.members if m.running)


async def put_raw(cluster: EtcdCluster, key: str, data: bytes) -> int:
    """Write bytes straight into etcd, around the datastore API; return the revision."""
    backend = EtcdBackend.from_env(cluster.env())
    client = EtcdClient(backend.config.endpoints[0], None, timeout=10)
    await client.connect()
    try:
        await client.put(key.encode(), data)
        return await backend.current_revision()
    finally:
        await client.close()
        await backend.close()


# ------------------------------------------------------------------ etcd killed and restarted


async def test_syncer_across_etcd_kill_and_restart(etcd_single: EtcdCluster) -> None:
    env = etcd_single.env()
    store = EtcdBackend.from_env(env, retry_timeout=1.0, connect_timeout=0.3)
    writer = EtcdBackend.from_env(env, retry_timeout=30.0, connect_timeout=0.3)
    try:
        for i in range(12):
            await writer.create(*wep(f"w{i}", i))
        await writer.create(*pool("pool-a", "10.0.0.0/16"))
        view = ViewCallbacks()
        async with Syncer(store, FELIX, view, retry=FAST) as syncer:
            await view.wait_for_status(IN_SYNC, timeout=20)
            assert view.view == await etcd_view(writer)

            etcd_single.kill(0)
            await view.wait_for_status(WFD, count=2, timeout=20)  # the consumer is told: not in sync
            await eventually(lambda: syncer.core.watches_down == len(syncer.plans), 20, "every watch to give up")
            # Writes issued while etcd is down wait in the writer's retries and land once it is back.
            during = [asyncio.create_task(writer.update(*wep("w0", 100))),
                      asyncio.create_task(writer.delete(wep("w1", 1)[0])),
                      asyncio.create_task(writer.create(*wep("w-new", 200)))]
            await eventually(lambda: writer.connected_endpoint is None, 10, "the writer to find etcd gone")
            assert not any(t.done() for t in during)
            await asyncio.to_thread(etcd_single.restart, 0)
            landed = await asyncio.gather(*during)
            after = [await writer.update(*wep("w2", 102)), await writer.delete(wep("w3", 3)[0])]
            expected = await etcd_view(writer)  # etcd's final state: nothing is written after this
            await view.wait_for(lambda: view.view == expected and view.status is IN_SYNC, timeout=30,
                                what="the view to equal etcd, in sync")
            assert view.view == expected, "the syncer's view equals etcd, key by key"
            assert landed[0].key in view.view and landed[1].key not in view.view and landed[2].key in view.view
            assert view.view[after[0].key] == after[0].value and after[1].key not in view.view
            assert view.statuses == [WFD, RIP, IN_SYNC, WFD, RIP, IN_SYNC]
            assert view.anomalies == []
    finally:
        await store.close()
        await writer.close()


# ------------------------------------------------------------------ a 3-member cluster losing one


def leader_index(cluster: EtcdCluster) -> int:
    """The member that is raft leader now."""
    leaders = [i for i, m in enumerate(cluster.members) if m.running and m.metric("etcd_server_is_leader") == 1]
    assert len(leaders) == 1, f"expected one leader, found {leaders}"
    return leaders[0]


@pytest.mark.parametrize("victim_role", ["leader", "follower"])
async def test_syncer_rides_through_a_member_kill(etcd_cluster3: EtcdCluster, victim_role: str) -> None:
    cluster = etcd_cluster3
    leader = leader_index(cluster)
    victim = leader if victim_role == "leader" else (leader + 1) % 3
    order = [victim] + [i for i in range(3) if i != victim]
    env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": ",".join(cluster.members[i].client_url for i in order)}
    store = EtcdBackend.from_env(env, retry_timeout=20.0, connect_timeout=1.0)
    try:
        for i in range(8):
            await store.create(*wep(f"m{i}", i))
        view = ViewCallbacks()
        async with Syncer(store, FELIX, view, mode=WatchMode.PER_TYPE, retry=FAST) as syncer:
            await view.wait_for_status(IN_SYNC, timeout=20)
            assert store.connected_endpoint == cluster.members[victim].client_url

            cluster.kill(victim)
            # The syncer's own backend writes on: the client fails over to the survivors.
            writes = [await store.update(*wep("m0", 100)), await store.create(*wep("m-new", 300))]
            await store.delete(wep("m1", 1)[0])
            expected = await etcd_view(store)  # etcd's final state: nothing is written after this
            await view.wait_for(lambda: view.view == expected, timeout=30, what="the view to equal etcd")
            assert store.connected_endpoint != cluster.members[victim].client_url
            assert view.view == expected, "the syncer's view equals etcd, key by key"
            assert [view.revisions[w.key] for w in writes] == [w.revision for w in writes]
            # Every watch resumed on a survivor from where it was: no gap, so no re-list.
            assert view.statuses == [WFD, RIP, IN_SYNC]
            assert syncer.listings == [1] * len(syncer.plans) and syncer.resyncs == 0
            assert view.anomalies == []
    finally:
        await store.close()


# ------------------------------------------------------------------ compaction past the watches


@pytest.mark.parametrize("mode", [WatchMode.SHARED, WatchMode.PER_TYPE], ids=lambda m: m.value)
async def test_compaction_gives_one_relist_per_watch(etcd_single: EtcdCluster, mode: WatchMode) -> None:
    page_size = 100
    store = EtcdBackend.from_env(etcd_single.env(), page_size=page_size)
    try:
        for i in range(350):  # several pages: the re-list streams page by page
            await store.create(*wep(f"c{i:03d}", i))
        faults, view = Faults(store), ViewCallbacks()
        syncer = Syncer(faults, FELIX, view, mode=mode, retry=FAST)
        watches = len(syncer.plans)
        async with faults, syncer:
            await view.wait_for_status(IN_SYNC, timeout=20)
            assert len(view.view) == 350 and len(faults.list_times) == watches
            faults.hold()  # the watches fall behind...
            changed = await store.update(*wep("c000", 999))
            gone = await store.delete(wep("c001", 1)[0])
            await store.compact()  # ...past the compaction
            ranges = range_requests(etcd_single)
            faults.release()
            await view.wait_for(lambda: syncer.listings == [2] * watches and view.status is IN_SYNC,
                                timeout=30, what="every watch re-listed once, in sync")
            # One re-list per watch: 4 Range pages for the endpoints, 1 for every other prefix
            # (in shared mode one listing of the common prefix: 4 pages).
            pages = 4 if mode is WatchMode.SHARED else 4 + watches - 1
            assert range_requests(etcd_single) - ranges == pages, "Range requests beyond one re-list"
            assert len(faults.list_times) == 2 * watches and syncer.resyncs == watches
            deltas = view.updates_since(IN_SYNC, 1)
            assert sorted((u.key, u.update_type) for u in deltas) == [
                (changed.key, UpdateType.UPDATED), (gone.key, UpdateType.DELETED)]
            # No storm afterwards either: a later write arrives by the watch, with no more listing.
            later = await store.update(*wep("c002", 998))
            await view.wait_for(lambda: view.revisions.get(later.key) == later.revision, what="a later write")
            assert len(faults.list_times) == 2 * watches
            assert range_requests(etcd_single) - ranges == pages
            assert view.view == await etcd_view(store) and view.anomalies == []
    finally:
        await store.close()


# ------------------------------------------------------------------ invalid data around the API


async def test_invalid_data_in_etcd_is_skipped_and_logged_once(etcd_single: EtcdCluster) -> None:
    store = EtcdBackend.from_env(etcd_single.env(), retry_timeout=2.0)
    weps = f"{R}workloadendpoints/ns1/"
    bad_ip_key, bad_ip = wep("bad-ip", 7)
    bad_ip["spec"]["ipNetworks"] = ["10.0.0.300/32"]
    misnamed_key = weps + "misnamed"
    raw: dict[str, bytes] = {
        weps + "garbage": b"not json {",
        weps + "array": b"[1, 2, 3]",
        weps + "deep": b"[" * 5000 + b"]" * 5000,  # deeper than the json module's recursion limit
        weps + "bad-utf8": b'{"kind": "WorkloadEndpoint", "x": "\xff\xfe"}',
        bad_ip_key: json.dumps(bad_ip).encode(),
        misnamed_key: json.dumps(wep("other-name", 8)[1]).encode(),
        f"{R}ippools/nan": b'{"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "nan"},'
                           b' "spec": {"cidr": "10.1.0.0/16", "blockSize": NaN}}',
    }
    try:
        written = {key: await put_raw(etcd_single, key, data) for key, data in raw.items()}
        good = [await store.create(*wep(f"good-{i}", i)) for i in range(2)]
        view = ViewCallbacks()
        with structlog.testing.capture_logs() as logs:
            async with Faults(store) as faults, Syncer(faults, FELIX, view, retry=FAST) as syncer:
                await view.wait_for_status(IN_SYNC, timeout=20)
                assert set(view.view) == {kv.key for kv in good}
                for n in (2, 3):  # two more full re-lists: nothing is logged again
                    faults.outage(True)
                    await view.wait_for_status(WFD, count=n)
                    faults.outage(False)
                    await view.wait_for_status(IN_SYNC, count=n, timeout=20)
                assert set(view.view) == {kv.key for kv in good}

                fixed = await store.update(bad_ip_key, wep("bad-ip", 7)[1])  # repaired through the API
                corrupt = await put_raw(etcd_single, good[0].key, b"\x00\x01 broken")  # broken around it
                await view.wait_for(lambda: bad_ip_key in view.view and good[0].key not in view.view,
                                    what="the repaired endpoint in, the corrupted one out")
                assert view.updates_for(bad_ip_key) == [Update(bad_ip_key, wep("bad-ip", 7)[1], fixed.revision,
                                                               UpdateType.NEW)]
                assert view.updates_for(good[0].key)[-1] == Update(good[0].key, None, corrupt, UpdateType.DELETED)
                assert view.view == await etcd_view(store)
                assert view.status is IN_SYNC and not syncer.start().done() and view.anomalies == []
    finally:
        await store.close()
    reports: dict[str, list[int]] = {}
    for event in logs:
        if event["event"] in ("etcd value not a json object", "syncer invalid value"):
            reports.setdefault(event["key"], []).append(event["revision"])
    expected = {key: [rev] for key, rev in written.items()}
    expected[bad_ip_key] = [written[bad_ip_key]]
    expected[good[0].key] = [corrupt]
    assert reports == expected, "each bad key/revision is logged exactly once"
    assert not [e for e in logs if e["event"] == "syncer watch failed"], "bad data never breaks a watch"


async def test_values_decode_exactly_as_json_does(etcd_single: EtcdCluster) -> None:
    """Values are parsed by orjson, but where it would differ (integers past 64 bits) the result is the json module's."""
    store = EtcdBackend.from_env(etcd_single.env())
    block = "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26"
    data = b'{"cidr": "10.0.0.0/26", "allocations": [18446744073709551616, null], "unallocated": [1]}'
    try:
        await put_raw(etcd_single, block, data)
        assert (await store.get(block)).value == json.loads(data)
        [listed] = (await store.list(block)).items
        assert listed.value == json.loads(data) and type(listed.value["allocations"][0]) is int
        view = ViewCallbacks()
        async with Syncer(store, FELIX, view, retry=FAST):
            await view.wait_for_status(IN_SYNC, timeout=20)
            assert view.view == {block: json.loads(data)}
    finally:
        await store.close()
