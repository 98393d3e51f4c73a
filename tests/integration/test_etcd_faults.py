"""The etcd backend under faults: members killed and restarted, compaction, racing processes.

Every etcd here is a real ``/usr/bin/etcd`` started by ``tests/fixtures/etcd.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from libcalico.datastore.backend import EventType, WatchEvent
from libcalico.datastore.etcd import EtcdBackend
from libcalico.errors import DatastoreError, ResyncRequired, RevisionConflict, Unavailable
from tests.fixtures.etcd import EtcdCluster

WEP = "/calico/resources/v3/projectcalico.org/workloadendpoints/ns1/"


def wep(name: str, n: int = 0) -> tuple[str, dict[str, Any]]:
    """A WorkloadEndpoint-shaped entry."""
    value = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "ns1", "labels": {"app": "web", "n": str(n)}},
        "spec": {
            "node": "node1",
            "orchestrator": "k8s",
            "pod": name,
            "endpoint": "eth0",
            "interfaceName": f"cali{n:011d}",
            "ipNetworks": [f"10.0.{n // 250}.{n % 250}/32"],
        },
    }
    return WEP + name, value


async def eventually(
    check: Callable[[], Awaitable[bool] | bool], timeout: float, what: str
) -> None:
    """Poll ``check`` until it is true; fail saying ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(1_000_000):
        result = check()
        if isinstance(result, Awaitable):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.02)


class Recorder:
    """A watch running in the background, keeping its events and the error that ended it."""

    def __init__(self, backend: EtcdBackend, prefix: str, revision: int) -> None:
        self.events: list[WatchEvent] = []
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._run(backend, prefix, revision))

    async def _run(self, backend: EtcdBackend, prefix: str, revision: int) -> None:
        try:
            async for event in backend.watch(prefix, revision):
                self.events.append(event)
        except DatastoreError as exc:
            self.error = exc

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def apply_events(state: dict[str, Any], events: list[WatchEvent]) -> dict[str, Any]:
    """The state a consumer builds from a listing plus events."""
    out = dict(state)
    for e in events:
        if e.type is EventType.DELETE:
            out.pop(e.key, None)
        else:
            out[e.key] = e.value
    return out


def assert_strictly_increasing(events: list[WatchEvent]) -> None:
    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions)), f"events out of order or duplicated: {revisions}"


# ------------------------------------------------------------------ one member killed and restarted


async def test_watch_reports_unavailable_when_etcd_dies_and_relist_loses_nothing(
    etcd_single: EtcdCluster,
) -> None:
    backend = EtcdBackend.from_env(etcd_single.env(), retry_timeout=1.5, connect_timeout=0.5)
    try:
        written = {}
        for i in range(5):
            key, value = wep(f"a{i}", i)
            written[key] = (await backend.create(key, value)).value
        listing = await backend.list(WEP)
        recorder = Recorder(backend, WEP, listing.revision)
        for i in range(5, 8):
            key, value = wep(f"a{i}", i)
            written[key] = (await backend.create(key, value)).value
        await eventually(lambda: len(recorder.events) == 3, 10, "the live watch to see 3 creates")

        before_crash = dict(written)
        etcd_single.kill(0)
        started = time.monotonic()
        await asyncio.wait_for(asyncio.shield(recorder.task), timeout=20)
        assert isinstance(recorder.error, Unavailable | ResyncRequired), recorder.error
        assert time.monotonic() - started < 10, (
            "watch took far longer than its retry budget to give up"
        )
        with pytest.raises(Unavailable):
            await backend.get(WEP + "a0")

        etcd_single.restart(0)
        for i in range(8, 11):
            key, value = wep(f"a{i}", i)
            written[key] = (await backend.create(key, value)).value
        # Everything written before and after the crash is there, and the old watch's view was right so far.
        relisted = await backend.list(WEP)
        assert {kv.key: kv.value for kv in relisted.items} == written
        seen = apply_events({kv.key: kv.value for kv in listing.items}, recorder.events)
        assert seen == before_crash
        # A new watch from the new listing carries on.
        fresh = Recorder(backend, WEP, relisted.revision)
        later = await backend.update(*wep("a0", 100))
        await eventually(lambda: len(fresh.events) == 1, 10, "the new watch to see one update")
        assert (fresh.events[0].key, fresh.events[0].revision) == (later.key, later.revision)
        await fresh.stop()
    finally:
        await backend.close()


async def test_watch_resumes_without_gap_when_etcd_comes_back_within_budget(
    etcd_single: EtcdCluster,
) -> None:
    backend = EtcdBackend.from_env(etcd_single.env(), retry_timeout=30, connect_timeout=0.5)
    writer = EtcdBackend.from_env(etcd_single.env(), retry_timeout=30, connect_timeout=0.5)
    try:
        start = await backend.current_revision()
        recorder = Recorder(backend, WEP, start)
        revisions = [(await writer.create(*wep(f"b{i}", i))).revision for i in range(3)]
        await eventually(lambda: len(recorder.events) == 3, 10, "3 events before the crash")
        etcd_single.kill(0)
        etcd_single.restart(0)
        revisions += [(await writer.create(*wep(f"b{i}", i))).revision for i in range(3, 6)]
        await eventually(
            lambda: len(recorder.events) == 6 or recorder.task.done(), 20, "3 events after restart"
        )
        assert recorder.error is None, recorder.error
        assert [e.revision for e in recorder.events] == revisions
        await recorder.stop()
    finally:
        await backend.close()
        await writer.close()


async def test_nothing_reachable_fails_within_the_retry_budget(etcd_single: EtcdCluster) -> None:
    env = etcd_single.env()
    etcd_single.kill(0)
    backend = EtcdBackend.from_env(env, retry_timeout=1.0, connect_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await backend.create(*wep("x"))
        assert time.monotonic() - started < 5
        assert "no etcd endpoint reachable" in str(caught.value)
        assert etcd_single.members[0].client_url in str(caught.value)
    finally:
        await backend.close()


# ------------------------------------------------------------------ a 3-member cluster losing one


def leader_index(cluster: EtcdCluster) -> int:
    """Which member is the raft leader now (by its ``etcd_server_is_leader`` metric)."""
    leaders = [
        i
        for i, m in enumerate(cluster.members)
        if m.running and m.metric("etcd_server_is_leader") == 1
    ]
    assert len(leaders) == 1, f"expected one leader, found {leaders}"
    return leaders[0]


@pytest.mark.parametrize("victim_role", ["leader", "follower"])
async def test_cluster_member_killed_writes_and_watches_go_on(
    etcd_cluster3: EtcdCluster, victim_role: str
) -> None:
    leader = leader_index(etcd_cluster3)
    victim = leader if victim_role == "leader" else (leader + 1) % 3
    order = [victim] + [i for i in range(3) if i != victim]
    env = {
        "DATASTORE_TYPE": "etcdv3",
        "ETCD_ENDPOINTS": ",".join(etcd_cluster3.members[i].client_url for i in order),
    }
    backend = EtcdBackend.from_env(env, retry_timeout=20, connect_timeout=1.0)
    try:
        start = await backend.current_revision()
        assert backend.connected_endpoint == etcd_cluster3.members[victim].client_url
        recorder = Recorder(backend, WEP, start)
        revisions = [(await backend.create(*wep(f"c{i}", i))).revision for i in range(5)]
        await eventually(lambda: len(recorder.events) == 5, 10, "5 events before the kill")

        etcd_cluster3.kill(victim)
        if victim_role == "leader":
            # Survivors elect a new leader; a write proposed meanwhile could time out with an unknown outcome.
            survivors = [m for i, m in enumerate(etcd_cluster3.members) if i != victim]
            await eventually(lambda: all(m.healthy() for m in survivors), 20, "a new leader")
        for i in range(5, 10):
            revisions.append((await backend.create(*wep(f"c{i}", i))).revision)
        assert backend.connected_endpoint != etcd_cluster3.members[victim].client_url
        await eventually(
            lambda: len(recorder.events) == 10 or recorder.task.done(),
            20,
            "5 events after the kill",
        )
        assert recorder.error is None, recorder.error
        assert [e.revision for e in recorder.events] == revisions
        assert_strictly_increasing(recorder.events)
        listing = await backend.list(WEP)
        assert [kv.key for kv in listing.items] == sorted(wep(f"c{i}")[0] for i in range(10))
        await recorder.stop()

        # The member comes back and catches up; a client that only knows it sees everything.
        etcd_cluster3.restart(victim)
        alone = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd_cluster3.members[victim].client_url})
        try:
            await eventually(lambda: _count(alone), 20, "the restarted member to catch up")
        finally:
            await alone.close()
    finally:
        await backend.close()


async def _count(backend: EtcdBackend) -> bool:
    return len((await backend.list(WEP)).items) == 10


async def test_dead_first_endpoint_is_skipped_at_connect(etcd_cluster3: EtcdCluster) -> None:
    etcd_cluster3.kill(0)
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": etcd_cluster3.endpoints}, retry_timeout=10)
    try:
        kv = await backend.create(*wep("d0"))
        assert (await backend.get(kv.key)) == kv
        assert backend.connected_endpoint in (
            etcd_cluster3.members[1].client_url,
            etcd_cluster3.members[2].client_url,
        )
    finally:
        await backend.close()


# ------------------------------------------------------------------ compaction


async def test_compaction_past_a_watch_gives_exactly_one_resync_and_no_retries(
    etcd_single: EtcdCluster,
) -> None:
    backend = EtcdBackend.from_env(etcd_single.env())
    member = etcd_single.members[0]
    try:
        first = await backend.create(*wep("e0"))
        for n in range(1, 6):
            await backend.update(*wep("e0", n))
        compacted = await backend.compact()
        assert compacted == await backend.current_revision()
        watch_requests = member.metric("grpc_server_msg_received_total", grpc_method="Watch")

        stream = backend.watch(WEP, first.revision - 1)
        resyncs = []
        for _ in range(3):  # a retry storm would show up as more watch requests, not more raises
            try:
                async with asyncio.timeout(10):
                    await anext(stream)
            except ResyncRequired as exc:
                resyncs.append(exc)
            except StopAsyncIteration:
                break
        assert len(resyncs) == 1
        assert resyncs[0].requested == first.revision - 1 and resyncs[0].compacted == compacted
        assert (
            member.metric("grpc_server_msg_received_total", grpc_method="Watch") - watch_requests
            == 1
        )

        # Compacting again at or below the compacted revision is a no-op, not an error.
        assert await backend.compact(compacted) == compacted
        # The resync: list, then watch from the listing.
        listing = await backend.list(WEP)
        recorder = Recorder(backend, WEP, listing.revision)
        later = await backend.update(*wep("e0", 99))
        await eventually(lambda: len(recorder.events) == 1, 10, "the event after the resync")
        assert recorder.events[0].revision == later.revision
        await recorder.stop()
    finally:
        await backend.close()


# ------------------------------------------------------------------ racing processes

RACER = r"""
import asyncio, json, sys
from libcalico.datastore import backend_from_env
from libcalico.errors import AlreadyExists, RevisionConflict

PREFIX = "/calico/resources/v3/projectcalico.org/globalnetworksets/"

async def main(me, increments, claims):
    backend = backend_from_env()
    won, conflicts, revisions = [], 0, []
    try:
        for i in range(max(increments, claims)):
            if i < claims:
                try:
                    await backend.create(PREFIX + f"claim-{i}", {"metadata": {"name": f"claim-{i}"}, "owner": me})
                    won.append(i)
                except AlreadyExists:
                    pass
            if i < increments:
                for _ in range(10_000):
                    kv = await backend.get(PREFIX + "counter")
                    try:
                        new = await backend.update(PREFIX + "counter", {"count": kv.value["count"] + 1},
                                                   revision=kv.revision)
                    except RevisionConflict:
                        conflicts += 1
                        continue
                    revisions.append(new.revision)
                    break
                else:
                    raise SystemExit("no increment in 10000 attempts")
    finally:
        await backend.close()
    print(json.dumps({"won": won, "conflicts": conflicts, "revisions": revisions}))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


async def test_cas_writers_in_several_processes_lose_no_update(
    etcd_backend: EtcdBackend, etcd_env: dict[str, str]
) -> None:
    prefix = "/calico/resources/v3/projectcalico.org/globalnetworksets/"
    racers, increments, claims = 4, 25, 30
    await etcd_backend.create(prefix + "counter", {"count": 0})
    env = {**os.environ, **etcd_env}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            RACER,
            str(i),
            str(increments),
            str(claims),
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for i in range(racers)
    ]
    try:
        async with asyncio.timeout(120):
            outputs = [await p.communicate() for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    reports = []
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, f"racer failed ({p.returncode}): {err.decode()[-2000:]}"
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    counter = await etcd_backend.get(prefix + "counter")
    assert counter.value["count"] == racers * increments
    revisions = [r for rep in reports for r in rep["revisions"]]
    assert len(set(revisions)) == len(revisions) == racers * increments
    assert counter.revision == max(revisions)
    # Every claim was won by exactly one process, and the store agrees on who.
    winners = {i: me for me, rep in enumerate(reports) for i in rep["won"]}
    assert sorted(winners) == list(range(claims))
    assert sum(len(rep["won"]) for rep in reports) == claims
    for i, me in winners.items():
        assert (await etcd_backend.get(f"{prefix}claim-{i}")).value["owner"] == me


async def test_cas_increments_across_a_member_kill_lose_nothing_and_apply_once(
    etcd_cluster3: EtcdCluster,
) -> None:
    members = etcd_cluster3.members
    victim = (leader_index(etcd_cluster3) + 1) % 3  # a follower: no re-election stalls the test
    backends = []
    for first in range(3):  # each backend starts on a different member, the victim's among them
        order = [first] + [i for i in range(3) if i != first]
        env = {"ETCD_ENDPOINTS": ",".join(members[i].client_url for i in order)}
        backends.append(EtcdBackend.from_env(env, retry_timeout=20, connect_timeout=1.0))
    key = "/calico/resources/v3/projectcalico.org/globalnetworksets/counter"
    per_task, killed = 30, asyncio.Event()
    try:
        await backends[0].create(key, {"count": 0})
        done: list[int] = []
        unknown = 0

        async def incrementer(backend: EtcdBackend) -> None:
            nonlocal unknown
            for _ in range(per_task):
                for _attempt in range(1000):
                    kv = await backend.get(key)
                    try:
                        new = await backend.update(
                            key, {"count": kv.value["count"] + 1}, revision=kv.revision
                        )
                    except RevisionConflict:
                        continue
                    except Unavailable:
                        unknown += 1
                        break
                    done.append(new.revision)
                    break
                else:
                    raise AssertionError("no increment in 1000 attempts")
                if len(done) == per_task and not killed.is_set():
                    killed.set()
                    etcd_cluster3.kill(victim)

        async with asyncio.timeout(120):
            await asyncio.gather(*(incrementer(b) for b in backends for _ in range(2)))
        assert killed.is_set()
        final = (await backends[1].get(key)).value["count"]
        assert len(done) == len(set(done)), "two increments claimed one revision"
        assert len(done) <= final <= len(done) + unknown, (len(done), unknown, final)
        assert len(done) + unknown == 6 * per_task
    finally:
        for b in backends:
            await b.close()
