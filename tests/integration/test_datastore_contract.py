"""The datastore contract: every backend (sqlite, etcd, kubernetes) passes these same tests.

Keys and values are shaped like the resources Calico stores, so that every
backend (including the one that maps keys onto Kubernetes CRDs) can hold them.
Run one backend with ``-k sqlite`` / ``-k etcd`` / ``-k kubernetes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libcalico.datastore.backend import KV, Backend, EventType, WatchEvent
from libcalico.errors import AlreadyExists, NotFound, ResyncRequired, RevisionConflict
from tests.fixtures.backends import force_compaction

GNP = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/"
NP = "/calico/resources/v3/projectcalico.org/networkpolicies/"
NETSETS = "/calico/resources/v3/projectcalico.org/globalnetworksets/"


def gnp(name: str, order: float = 10.0, **annotations: str) -> tuple[str, dict[str, Any]]:
    """A GlobalNetworkPolicy-shaped entry: its key and value."""
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = dict(annotations)
    value = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": meta,
             "spec": {"order": order, "selector": "all()", "types": ["Ingress"]}}
    return GNP + name, value


def np_(namespace: str, name: str, order: float = 10.0) -> tuple[str, dict[str, Any]]:
    """A NetworkPolicy-shaped entry: its key and value."""
    value = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
             "metadata": {"name": name, "namespace": namespace},
             "spec": {"order": order, "selector": "all()", "types": ["Ingress"]}}
    return f"{NP}{namespace}/{name}", value


def netset(name: str) -> tuple[str, dict[str, Any]]:
    """A GlobalNetworkSet-shaped entry: its key and value."""
    value = {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
             "metadata": {"name": name}, "spec": {"nets": ["10.0.0.0/8"]}}
    return NETSETS + name, value


def spec_of(kv: KV | WatchEvent) -> dict[str, Any]:
    assert kv.value is not None
    return dict(kv.value["spec"])


@contextlib.asynccontextmanager
async def watching(backend: Backend, prefix: str, revision: int) -> AsyncIterator[AsyncIterator[WatchEvent]]:
    """A watch stream that is closed (its generator finalised) on leaving the block."""
    stream = backend.watch(prefix, revision)
    try:
        yield stream
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


async def collect(backend: Backend, prefix: str, revision: int, count: int, timeout: float = 15.0) -> list[WatchEvent]:
    """The first ``count`` events of a watch, or fail after ``timeout`` seconds saying what came."""
    events: list[WatchEvent] = []
    try:
        async with asyncio.timeout(timeout):
            async with watching(backend, prefix, revision) as stream:
                async for event in stream:
                    events.append(event)
                    if len(events) >= count:
                        break
    except TimeoutError:
        raise AssertionError(f"watch from {revision} gave {len(events)} of {count} events in {timeout}s: {events}") from None
    return events


async def wait_for_not_found(backend: Backend, key: str, timeout: float) -> float:
    """Poll ``get`` until the key is gone; return when (monotonic seconds)."""
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        try:
            await backend.get(key)
        except NotFound:
            return time.monotonic()
        assert time.monotonic() < deadline, f"{key} still present after {timeout}s"
        await asyncio.sleep(0.05)
    raise AssertionError("unreachable: poll loop bound hit")


# ------------------------------------------------------------------ CRUD


async def test_create_then_get_returns_value_and_revision(backend: Backend) -> None:
    key, value = gnp("alpha")
    created = await backend.create(key, value)
    assert created.key == key and created.value == value and created.revision > 0
    fetched = await backend.get(key)
    assert fetched == created


async def test_create_existing_key_raises_already_exists(backend: Backend) -> None:
    key, value = gnp("alpha", order=1)
    first = await backend.create(key, value)
    with pytest.raises(AlreadyExists) as caught:
        await backend.create(key, gnp("alpha", order=2)[1])
    assert str(caught.value) == f"resource already exists: {key}"
    assert await backend.get(key) == first


async def test_missing_key_raises_not_found_everywhere(backend: Backend) -> None:
    key, value = gnp("ghost")
    with pytest.raises(NotFound) as caught:
        await backend.get(key)
    assert str(caught.value) == f"resource does not exist: {key}"
    with pytest.raises(NotFound):
        await backend.update(key, value)
    with pytest.raises(NotFound):
        await backend.update(key, value, revision=1)
    with pytest.raises(NotFound):
        await backend.delete(key)
    assert (await backend.list(GNP)).items == []


async def test_update_replaces_value_with_a_newer_revision(backend: Backend) -> None:
    key, value = gnp("alpha", order=1)
    created = await backend.create(key, value)
    updated = await backend.update(key, gnp("alpha", order=2)[1])
    assert updated.revision > created.revision
    assert spec_of(updated)["order"] == 2
    assert await backend.get(key) == updated


async def test_update_compare_and_swap_on_revision(backend: Backend) -> None:
    key, value = gnp("alpha", order=1)
    created = await backend.create(key, value)
    second = await backend.update(key, gnp("alpha", order=2)[1], revision=created.revision)
    with pytest.raises(RevisionConflict) as caught:
        await backend.update(key, gnp("alpha", order=3)[1], revision=created.revision)
    assert caught.value.identifier == key
    assert await backend.get(key) == second
    third = await backend.update(key, gnp("alpha", order=4)[1], revision=second.revision)
    assert spec_of(await backend.get(key))["order"] == 4 and third.revision > second.revision


async def test_delete_returns_last_value_and_removes(backend: Backend) -> None:
    key, value = gnp("alpha")
    created = await backend.create(key, value)
    deleted = await backend.delete(key)
    assert deleted.key == key and deleted.value == value and deleted.revision == created.revision
    with pytest.raises(NotFound):
        await backend.get(key)
    with pytest.raises(NotFound):
        await backend.delete(key)
    recreated = await backend.create(key, value)
    assert recreated.revision > created.revision


async def test_delete_compare_and_swap_on_revision(backend: Backend) -> None:
    key, value = gnp("alpha", order=1)
    created = await backend.create(key, value)
    current = await backend.update(key, gnp("alpha", order=2)[1])
    with pytest.raises(RevisionConflict):
        await backend.delete(key, revision=created.revision)
    assert await backend.get(key) == current
    await backend.delete(key, revision=current.revision)
    with pytest.raises(NotFound):
        await backend.get(key)


async def test_apply_creates_then_replaces(backend: Backend) -> None:
    key, _ = gnp("alpha")
    first = await backend.apply(key, gnp("alpha", order=1)[1])
    assert await backend.get(key) == first
    second = await backend.apply(key, gnp("alpha", order=2)[1])
    assert second.revision > first.revision and spec_of(second)["order"] == 2
    assert await backend.get(key) == second


async def test_revisions_are_store_wide_and_increasing(backend: Backend) -> None:
    start = await backend.current_revision()
    revisions = []
    for i in range(5):
        key, value = gnp(f"p{i}")
        revisions.append((await backend.create(key, value)).revision)
    revisions.append((await backend.create(*netset("n0"))).revision)
    revisions.append((await backend.update(*gnp("p0", order=99))).revision)
    revisions.append((await backend.delete(GNP + "p1")).revision)
    assert revisions[0] > start
    assert revisions[:-1] == sorted(set(revisions[:-1])), revisions
    assert await backend.current_revision() > revisions[-2]


# ------------------------------------------------------------------ list


async def test_list_by_prefix_in_key_order(backend: Backend) -> None:
    names = ["delta", "alpha", "charlie", "bravo", "echo"]
    random.Random(7).shuffle(names)
    for name in names:
        await backend.create(*gnp(name))
    for ns, name in [("prod", "web"), ("dev", "web"), ("prod", "db"), ("dev", "api")]:
        await backend.create(*np_(ns, name))
    await backend.create(*netset("other"))

    policies = await backend.list(GNP)
    assert [kv.key for kv in policies.items] == [GNP + n for n in sorted(names)]
    assert all(kv.value["kind"] == "GlobalNetworkPolicy" for kv in policies.items)
    assert policies.revision >= max(kv.revision for kv in policies.items)

    everywhere = await backend.list(NP)
    assert [kv.key for kv in everywhere.items] == [NP + k for k in ["dev/api", "dev/web", "prod/db", "prod/web"]]
    prod = await backend.list(NP + "prod/")
    assert [kv.key for kv in prod.items] == [NP + "prod/db", NP + "prod/web"]
    for kv in prod.items:
        assert await backend.get(kv.key) == kv


async def test_list_of_nothing_has_the_current_revision(backend: Backend) -> None:
    await backend.create(*netset("n0"))
    listing = await backend.list(GNP)
    assert listing.items == []
    assert listing.revision == await backend.current_revision()


# ------------------------------------------------------------------ watch


async def test_watch_after_list_has_no_gap_and_no_duplicate(backend: Backend) -> None:
    for i in range(3):
        await backend.create(*gnp(f"before{i}"))
    listing = await backend.list(GNP)
    after: list[KV] = []
    after.append(await backend.create(*gnp("after0")))
    after.append(await backend.update(*gnp("before0", order=5)))
    await backend.create(*netset("elsewhere"))  # outside the watched prefix
    after.append(await backend.delete(GNP + "before1"))
    watcher = asyncio.create_task(collect(backend, GNP, listing.revision, 5))
    after.append(await backend.create(*gnp("after1")))
    after.append(await backend.apply(*gnp("after0", order=7)))
    events = await watcher

    assert [e.key for e in events] == [GNP + n for n in ["after0", "before0", "before1", "after1", "after0"]]
    assert [e.type for e in events] == [EventType.PUT, EventType.PUT, EventType.DELETE, EventType.PUT, EventType.PUT]
    revisions = [e.revision for e in events]
    assert all(r > listing.revision for r in revisions)
    assert revisions == sorted(set(revisions))
    puts = [e for e in events if e.type is EventType.PUT]
    assert [e.revision for e in puts] == [kv.revision for kv in after if kv.key != GNP + "before1"]
    assert spec_of(events[1])["order"] == 5 and events[2].value is None
    # The listing plus the events is the store now.
    state: dict[str, Any] = {kv.key: kv.value for kv in listing.items}
    for e in events:
        if e.type is EventType.DELETE:
            state.pop(e.key)
        else:
            state[e.key] = e.value
    assert state == {kv.key: kv.value for kv in (await backend.list(GNP)).items}


async def test_watcher_sees_every_revision_in_order_under_concurrent_writes(backend: Backend) -> None:
    start = await backend.current_revision()
    writers, per_writer = 4, 15
    watcher = asyncio.create_task(collect(backend, GNP, start, writers * per_writer))

    async def writer(w: int) -> list[KV]:
        done: list[KV] = []
        rng = random.Random(w)
        for i in range(per_writer):
            key, value = gnp(f"w{w}-{i % 4}", order=float(i))
            step = rng.random()
            try:
                if step < 0.6:
                    done.append(await backend.apply(key, value))
                else:
                    done.append(await backend.delete(key))
            except NotFound:
                done.append(await backend.create(key, value))
        return done

    results = await asyncio.gather(*(writer(w) for w in range(writers)))
    events = await watcher

    revisions = [e.revision for e in events]
    assert revisions == sorted(set(revisions)), "events out of order or duplicated"
    # Deletes report the deleted entry's old revision, so compare by key and value order per writer.
    write_keys = sorted(kv.key for r in results for kv in r)
    assert sorted(e.key for e in events) == write_keys
    for w, done in enumerate(results):
        mine = [e for e in events if e.key.startswith(f"{GNP}w{w}-")]
        assert len(mine) == len(done)
        for event, kv in zip(mine, done, strict=True):
            assert event.key == kv.key
            if event.type is EventType.PUT:
                assert event.revision == kv.revision and event.value == kv.value
            else:
                assert event.value is None and event.revision > kv.revision


async def test_watch_started_before_concurrent_writes_sees_them_all_live(backend: Backend) -> None:
    start = await backend.current_revision()
    total = 40
    watcher = asyncio.create_task(collect(backend, GNP, start, total))

    async def writer(w: int) -> list[int]:
        return [(await backend.apply(*gnp(f"live{w}", order=float(i)))).revision for i in range(total // 2)]

    written = await asyncio.gather(writer(0), writer(1))
    events = await watcher
    assert [e.revision for e in events] == sorted(written[0] + written[1])
    assert all(e.type is EventType.PUT for e in events)
    last = {e.key: spec_of(e)["order"] for e in events}
    assert last == {GNP + "live0": total // 2 - 1, GNP + "live1": total // 2 - 1}


async def test_watch_from_compacted_revision_requires_resync(backend: Backend) -> None:
    first = await backend.create(*gnp("alpha", order=1))
    for order in range(2, 6):
        await backend.update(*gnp("alpha", order=order))
    compacted = await force_compaction(backend)
    assert compacted >= first.revision
    with pytest.raises(ResyncRequired):
        await collect(backend, GNP, first.revision - 1, 1, timeout=10)
    # From the listing's revision the watch works again.
    listing = await backend.list(GNP)
    later = await backend.update(*gnp("alpha", order=6))
    events = await collect(backend, GNP, listing.revision, 1)
    assert [(e.key, e.revision) for e in events] == [(later.key, later.revision)]


# ------------------------------------------------------------------ TTL


async def test_ttl_entry_expires_and_watcher_sees_the_delete(backend: Backend) -> None:
    keep = await backend.create(*gnp("keeper"))
    start = await backend.current_revision()
    key, value = gnp("ephemeral")
    created = await backend.create(key, value, ttl=2.0)
    created_at = time.monotonic()
    assert (await backend.get(key)).value == value
    watcher = asyncio.create_task(collect(backend, GNP + "ephemeral", start, 2, timeout=30))
    gone_at = await wait_for_not_found(backend, key, timeout=30)
    assert gone_at - created_at >= 1.5, "entry expired long before its TTL"
    events = await watcher
    assert [(e.type, e.key) for e in events] == [(EventType.PUT, key), (EventType.DELETE, key)]
    assert events[0].revision == created.revision and events[1].revision > created.revision
    assert [kv.key for kv in (await backend.list(GNP)).items] == [keep.key]


# ------------------------------------------------------------------ processes

RACER = r"""
import asyncio, json, sys, time
from libcalico.datastore import backend_from_env
from libcalico.errors import NotFound, RevisionConflict

GNP = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/"

def policy(name, annotations):
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy",
            "metadata": {"name": name, "annotations": annotations},
            "spec": {"order": 1, "selector": "all()", "types": ["Ingress"]}}

async def main(me: int, racers: int, increments: int) -> None:
    backend = backend_from_env()
    try:
        await backend.create(GNP + f"ready-{me}", policy(f"ready-{me}", {}))
        deadline = time.monotonic() + 60
        while len([kv for kv in (await backend.list(GNP)).items if "/ready-" in kv.key]) < racers:
            if time.monotonic() > deadline:
                raise SystemExit("racers never all ready")
            await asyncio.sleep(0.005)
        key = GNP + "counter"
        conflicts, revisions = 0, []
        for _ in range(increments):
            for _attempt in range(10_000):
                kv = await backend.get(key)
                count = int(kv.value["metadata"]["annotations"]["count"])
                try:
                    new = await backend.update(key, policy("counter", {"count": str(count + 1)}), revision=kv.revision)
                except RevisionConflict:
                    conflicts += 1
                    continue
                revisions.append(new.revision)
                break
            else:
                raise SystemExit("no successful increment in 10000 attempts")
        print(json.dumps({"conflicts": conflicts, "revisions": revisions}))
    finally:
        await backend.close()

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
"""


async def test_processes_racing_compare_and_swap_lose_no_update(backend: Backend, backend_env: dict[str, str]) -> None:
    racers, increments = 3, 40
    await backend.create(*gnp("counter", 10.0, count="0"))
    env = {**os.environ, **backend_env}
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", RACER, str(i), str(racers), str(increments),
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for i in range(racers)
    ]
    try:
        async with asyncio.timeout(180):
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
    final = await backend.get(GNP + "counter")
    assert final.value["metadata"]["annotations"]["count"] == str(racers * increments)
    all_revisions = [r for rep in reports for r in rep["revisions"]]
    assert len(all_revisions) == len(set(all_revisions)) == racers * increments
    assert final.revision == max(all_revisions)
    print("conflicts per racer:", [rep["conflicts"] for rep in reports])
