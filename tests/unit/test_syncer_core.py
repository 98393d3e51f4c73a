"""The syncer core without I/O: statuses, snapshot, deltas, dedupe, resync deletions, validation."""

from __future__ import annotations

import asyncio

import hypothesis.strategies as st
import structlog
from hypothesis import given, settings

from libcalico.datastore.backend import KV, EventType, WatchEvent
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.syncer.callbacks import SyncStatus, Update, UpdateType
from libcalico.syncer.catalog import bgp_spec, felix_spec, resource_type
from libcalico.syncer.core import Loss, Output, SyncerCore
from libcalico.syncer.plan import WatchMode, plan_watches
from libcalico.syncer.validation import ValidationFilter
from libcalico.syncer.view import ViewCallbacks

WFD, RIP, IN_SYNC = SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC
POOL_KEY = f"{RESOURCE_ROOT}ippools/pool1"
GNS_PREFIX = f"{RESOURCE_ROOT}globalnetworksets/"


def pool(name: str = "pool1", cidr: str = "10.0.0.0/16") -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
            "spec": {"cidr": cidr}}


def netset(name: str, net: str = "10.1.0.0/24") -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": name},
            "spec": {"nets": [net]}}


def new_core(mode: WatchMode = WatchMode.SHARED, validate: bool = True) -> SyncerCore:
    spec = felix_spec()
    return SyncerCore(spec, (p.types for p in plan_watches(spec, mode)),
                      ValidationFilter(spec.name) if validate else None)


def feed(view: ViewCallbacks, outputs: list[Output]) -> None:
    """Apply outputs to a consumer the way the driver does: statuses, and runs of updates as batches."""
    batch: list[Update] = []
    for item in outputs:
        if isinstance(item, Update):
            batch.append(item)
            continue
        if batch:
            view.on_updates(batch)
            batch = []
        view.on_status(item)
    if batch:
        view.on_updates(batch)


def test_start_listing_then_deltas() -> None:
    core = new_core()
    assert core.start() == [WFD]
    out = core.listed(0, [KV(f"{GNS_PREFIX}a", netset("a"), 3), KV(POOL_KEY, pool(), 5)], 7)
    assert out[0] is RIP and out[-1] is IN_SYNC
    assert [(u.key, u.update_type, u.revision) for u in out[1:-1] if isinstance(u, Update)] == [
        (f"{GNS_PREFIX}a", UpdateType.NEW, 3), (POOL_KEY, UpdateType.NEW, 5)]
    changed = pool(cidr="10.9.0.0/16")
    out = core.events(0, [WatchEvent(EventType.PUT, POOL_KEY, changed, 8),
                          WatchEvent(EventType.DELETE, f"{GNS_PREFIX}a", None, 9)])
    assert out == [Update(POOL_KEY, changed, 8, UpdateType.UPDATED),
                   Update(f"{GNS_PREFIX}a", None, 9, UpdateType.DELETED)]


def test_in_sync_only_after_every_watcher_listed() -> None:
    core = new_core(WatchMode.PER_TYPE)
    core.start()
    n = len(core.spec.types)
    pool_wid = [t.name for t in core.spec.types].index("ippools")
    out = core.listed(pool_wid, [KV(POOL_KEY, pool(), 2)], 2)
    assert out == [RIP, Update(POOL_KEY, pool(), 2, UpdateType.NEW)]
    for wid in range(n):
        if wid != pool_wid:
            out = core.listed(wid, [], 2)
            assert (IN_SYNC in out) == (core.in_sync)
    assert core.status is IN_SYNC and out == [IN_SYNC]


def test_unchanged_value_is_not_reemitted() -> None:
    core = new_core()
    core.start()
    core.listed(0, [KV(POOL_KEY, pool(), 2)], 2)
    assert core.events(0, [WatchEvent(EventType.PUT, POOL_KEY, pool(), 3)]) == []
    assert core.events(0, [WatchEvent(EventType.DELETE, f"{GNS_PREFIX}never", None, 4)]) == []


def test_keys_the_stream_does_not_carry_are_dropped() -> None:
    spec = bgp_spec()
    core = SyncerCore(spec, (p.types for p in plan_watches(spec, WatchMode.SHARED)), ValidationFilter("bgp"))
    core.start()
    policy_key = f"{RESOURCE_ROOT}networkpolicies/ns1/p1"
    out = core.listed(0, [KV(policy_key, {"kind": "NetworkPolicy"}, 2),
                          KV("/calico/ipam/v2/handle/h1", {"block": {}}, 3),
                          KV(POOL_KEY, pool(), 4)], 4)
    assert [u.key for u in out if isinstance(u, Update)] == [POOL_KEY]


def test_resync_emits_deletions_and_only_real_changes() -> None:
    core = new_core()
    core.start()
    keys = {name: f"{GNS_PREFIX}{name}" for name in ("keep", "change", "gone")}
    core.listed(0, [KV(keys[n], netset(n), i) for i, n in enumerate(("change", "gone", "keep"), 1)], 3)
    assert core.lost(0, Loss.RESYNC) == [RIP]
    out = core.listed(0, [KV(keys["change"], netset("change", "10.7.0.0/24"), 9), KV(keys["keep"], netset("keep"), 3),
                          KV(f"{GNS_PREFIX}new", netset("new"), 10)], 12)
    assert out == [
        Update(keys["change"], netset("change", "10.7.0.0/24"), 9, UpdateType.UPDATED),
        Update(f"{GNS_PREFIX}new", netset("new"), 10, UpdateType.NEW),
        Update(keys["gone"], None, 12, UpdateType.DELETED),
        IN_SYNC,
    ]


def test_unavailable_reports_waiting_then_resync() -> None:
    core = new_core()
    core.start()
    core.listed(0, [KV(POOL_KEY, pool(), 2)], 2)
    assert core.lost(0, Loss.UNAVAILABLE) == [WFD]
    assert core.lost(0, Loss.UNAVAILABLE) == []
    assert core.listed(0, [], 5) == [RIP, Update(POOL_KEY, None, 5, UpdateType.DELETED), IN_SYNC]


def test_failed_retries_do_not_flap_the_status() -> None:
    core = new_core(WatchMode.PER_TYPE)
    core.start()
    n = len(core.spec.types)
    for wid in range(n):
        core.listed(wid, [], 1)
    for wid in range(n):
        assert core.lost(wid, Loss.UNAVAILABLE) == ([WFD] if wid == 0 else [])
    assert core.listed(0, [], 2) == [RIP]
    assert core.lost(1, Loss.UNAVAILABLE) == [], "a retry of a watcher already known to be down"
    out: list[Output] = []
    for wid in range(1, n):
        out += core.listed(wid, [], 2)
    assert out == [IN_SYNC]
    assert core.lost(3, Loss.UNAVAILABLE) == [WFD], "a watcher that had reconnected lost the store again"


def test_streamed_resync_equals_listing() -> None:
    items = [KV(f"{GNS_PREFIX}{c}", netset(c), i) for i, c in enumerate("abc", 1)]
    a, b = new_core(), new_core()
    a.start()
    b.start()
    whole = a.listed(0, items, 4)
    streamed = b.begin_resync(0)
    for kv in items:
        streamed += b.put(0, kv.key, kv.value, kv.revision)
    streamed += b.end_resync(0, 4)
    assert whole == streamed


def test_invalid_value_treated_as_deleted_and_logged_once() -> None:
    core = new_core()
    core.start()
    core.listed(0, [KV(POOL_KEY, pool(), 2)], 2)
    bad = pool(cidr="not-a-cidr")
    with structlog.testing.capture_logs() as logs:
        out = core.events(0, [WatchEvent(EventType.PUT, POOL_KEY, bad, 3)])
        assert out == [Update(POOL_KEY, None, 3, UpdateType.DELETED)]
        assert core.lost(0, Loss.RESYNC) == [RIP]
        out = core.listed(0, [KV(POOL_KEY, bad, 3)], 3)  # same key and revision seen again
        assert out == [IN_SYNC]
        core.events(0, [WatchEvent(EventType.PUT, POOL_KEY, bad, 4)])  # a new revision: logged again
    rejected = [e for e in logs if e["event"] == "syncer invalid value"]
    assert [(e["key"], e["revision"]) for e in rejected] == [(POOL_KEY, 3), (POOL_KEY, 4)]
    assert "spec.cidr" in rejected[0]["reason"]
    out = core.events(0, [WatchEvent(EventType.PUT, POOL_KEY, pool(), 5)])
    assert out == [Update(POOL_KEY, pool(), 5, UpdateType.NEW)]


def test_core_needs_a_watcher() -> None:
    try:
        SyncerCore(felix_spec(), [], None)
    except ValueError as exc:
        assert "at least one watcher" in str(exc)
    else:
        raise AssertionError("a core with no watchers was accepted")


# ---------------------------------------------------------------- property: the consumer's view is the store's

NAMES = st.sampled_from(["a", "b", "c", "d"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), NAMES, st.sampled_from(["10.0.0.0/24", "10.0.1.0/24", "bad"])),
        st.tuples(st.just("delete"), NAMES, st.just("")),
        st.tuples(st.just("gap"), st.just(""), st.sampled_from([Loss.RESYNC, Loss.UNAVAILABLE])),
        st.tuples(st.just("heal"), st.just(""), st.just("")),
    ),
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_view_equals_store_after_any_sequence_of_writes_and_gaps(ops: list[tuple]) -> None:
    asyncio.run(_check_view(ops))


async def _check_view(ops: list[tuple]) -> None:
    core = new_core()
    view = ViewCallbacks()
    store: dict[str, tuple[dict, int]] = {}
    revision = 0
    watching = True
    feed(view, core.start())
    feed(view, core.listed(0, [], 0))
    for op, name, arg in ops:
        key = f"{GNS_PREFIX}{name}"
        if op == "put":
            revision += 1
            value = netset(name, arg) if arg != "bad" else {"kind": "GlobalNetworkSet", "metadata": {"name": "x"}}
            store[key] = (value, revision)
            if watching:
                feed(view, core.events(0, [WatchEvent(EventType.PUT, key, value, revision)]))
        elif op == "delete" and key in store:
            revision += 1
            del store[key]
            if watching:
                feed(view, core.events(0, [WatchEvent(EventType.DELETE, key, None, revision)]))
        elif op == "gap" and watching:
            watching = False
            feed(view, core.lost(0, arg))
        elif op == "heal" and not watching:
            watching = True
            feed(view, core.listed(0, [KV(k, v, r) for k, (v, r) in sorted(store.items())], revision))
    if not watching:
        feed(view, core.listed(0, [KV(k, v, r) for k, (v, r) in sorted(store.items())], revision))
    valid = {k: v for k, (v, _) in store.items() if v["metadata"]["name"] == k.rsplit("/", 1)[1]}
    assert view.view == valid
    assert view.anomalies == []
    assert view.status is IN_SYNC
    assert view.statuses[:3] == [WFD, RIP, IN_SYNC]
    assert all(a is not b for a, b in zip(view.statuses, view.statuses[1:], strict=False))


def test_name_filter_resource_type_matches_one_key_only() -> None:
    rtype = resource_type("nodes", "n1")
    assert rtype.matches(f"{RESOURCE_ROOT}nodes/n1")
    assert not rtype.matches(f"{RESOURCE_ROOT}nodes/n1-b")
