"""The core's fast paths give the plain answers: routing by parent path, rows, fresh resyncs, built updates."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.datastore.backend import KV, EventType, WatchEvent
from libcalico.datastore.keys import IPAM_ROOT, RESOURCE_ROOT
from libcalico.syncer.callbacks import SyncStatus, Update, UpdateType, trusted_update
from libcalico.syncer.catalog import (
    ResourceType,
    SyncerSpec,
    bgp_spec,
    felix_spec,
    resource_type,
    syncer_spec,
    tunnel_ip_allocation_spec,
)
from libcalico.syncer.core import Loss, SyncerCore
from libcalico.syncer.plan import WatchMode, plan_watches
from libcalico.syncer.validation import ValidationFilter

RIP, IN_SYNC = SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC

SEGMENTS = st.sampled_from(["n1", "n1-b", "ns", "a", "", "x/y", "ipv4", "block", "10.0.0.0-26", "ippools",
                            "nodes", "workloadendpoints", "networkpolicies", "host", "assignment", "handle"])
ROOTS = st.sampled_from([RESOURCE_ROOT, IPAM_ROOT, IPAM_ROOT + "assignment/", IPAM_ROOT + "host/", "/calico/", ""])
KEYS = st.builds(lambda root, parts: root + "/".join(parts), ROOTS, st.lists(SEGMENTS, min_size=0, max_size=5))
SPECS = [felix_spec(), bgp_spec(), bgp_spec("n1"), tunnel_ip_allocation_spec(), tunnel_ip_allocation_spec("n1")]


def _carried(spec: SyncerSpec, mode: WatchMode, keys: list[str]) -> list[str]:
    core = SyncerCore(spec, (p.types for p in plan_watches(spec, mode)))
    core.start()
    out: list[str] = []
    for wid in range(len(plan_watches(spec, mode))):
        out += [u.key for u in core.listed(wid, [KV(k, {"n": i}, i) for i, k in enumerate(keys)], 1)
                if isinstance(u, Update)]
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(KEYS, max_size=30, unique=True), st.sampled_from(SPECS), st.sampled_from(list(WatchMode)))
def test_routing_carries_exactly_the_keys_the_spec_matches(keys: list[str], spec: SyncerSpec,
                                                           mode: WatchMode) -> None:
    plans = plan_watches(spec, mode)
    expected = [k for p in plans for k in keys if any(t.matches(k) for t in p.types)]
    assert _carried(spec, mode, keys) == expected
    assert _carried(spec, mode, list(reversed(keys))) == [k for p in plans for k in reversed(keys)
                                                         if any(t.matches(k) for t in p.types)]


def test_a_remembered_parent_never_drags_in_a_neighbour() -> None:
    spec = syncer_spec("tunnel-ip-allocation", "n1")
    keys = [f"{RESOURCE_ROOT}nodes/n1", f"{RESOURCE_ROOT}nodes/n2", f"{RESOURCE_ROOT}nodes/n1",
            f"{RESOURCE_ROOT}ippools/p1", f"{RESOURCE_ROOT}ippools/p2", f"{RESOURCE_ROOT}ippools/",
            f"{RESOURCE_ROOT}ippools/p3/x"]
    core = SyncerCore(spec, [spec.types])
    core.start()
    out = core.begin_resync(0)
    for i, key in enumerate(keys):
        out += core.put(0, key, {"i": i}, i + 1)
    assert [(u.key, u.update_type) for u in out if isinstance(u, Update)] == [
        (f"{RESOURCE_ROOT}nodes/n1", UpdateType.NEW), (f"{RESOURCE_ROOT}nodes/n1", UpdateType.UPDATED),
        (f"{RESOURCE_ROOT}ippools/p1", UpdateType.NEW), (f"{RESOURCE_ROOT}ippools/p2", UpdateType.NEW)]
    assert core.delete(0, f"{RESOURCE_ROOT}nodes/n2", 9) == []
    assert core.delete(0, f"{RESOURCE_ROOT}nodes/n1", 9) == [Update(f"{RESOURCE_ROOT}nodes/n1", None, 9,
                                                                    UpdateType.DELETED)]


def test_rows_equal_pages_of_kvs() -> None:
    spec = felix_spec()
    rnd = random.Random(7)
    items = [KV(f"{RESOURCE_ROOT}globalnetworksets/s{i}", {"v": rnd.randrange(3)}, i) for i in range(50)]
    a = SyncerCore(spec, [spec.types])
    b = SyncerCore(spec, [spec.types])
    assert a.listed(0, items, 60) == b.listed_rows(0, [(kv.key, kv.value, kv.revision) for kv in items], 60)
    again = [KV(kv.key, {"v": 1}, kv.revision + 60) for kv in items[::2]]
    assert a.listed(0, again, 200) == b.listed_rows(0, [(kv.key, kv.value, kv.revision) for kv in again], 200)


def test_a_fresh_resync_and_a_later_one_delete_what_they_should() -> None:
    spec = felix_spec()
    core = SyncerCore(spec, [spec.types])
    core.start()
    k = [f"{RESOURCE_ROOT}globalnetworksets/s{i}" for i in range(3)]
    out = core.begin_resync(0)
    out += core.put(0, k[0], {"a": 1}, 1)
    out += core.put(0, k[1], {"a": 1}, 2)
    out += core.delete(0, k[1], 3)  # gone before the fresh listing ended: nothing left to delete at its end
    out += core.end_resync(0, 3)
    assert out == [RIP, Update(k[0], {"a": 1}, 1, UpdateType.NEW), Update(k[1], {"a": 1}, 2, UpdateType.NEW),
                   Update(k[1], None, 3, UpdateType.DELETED), IN_SYNC]
    assert core.lost(0, Loss.RESYNC) == [RIP]
    assert core.listed_rows(0, [(k[2], {"a": 2}, 5)], 5) == [
        Update(k[2], {"a": 2}, 5, UpdateType.NEW), Update(k[0], None, 5, UpdateType.DELETED), IN_SYNC]
    assert core.events(0, [WatchEvent(EventType.PUT, k[2], {"a": 2}, 6)]) == []


def test_trusted_updates_equal_checked_ones() -> None:
    for value, kind in (({"a": 1}, UpdateType.NEW), ({"a": 1}, UpdateType.UPDATED), (None, UpdateType.DELETED)):
        built = trusted_update("/k", value, 3, kind)
        plain = Update("/k", value, 3, kind)
        assert built == plain and repr(built) == repr(plain) and type(built) is Update
        assert (built.key, built.value, built.revision, built.update_type) == ("/k", value, 3, kind)


class _Recorder(ValidationFilter):
    """Accepts everything, noting which resource type each key was routed to."""

    def __init__(self) -> None:
        super().__init__("test")
        self.routed: list[tuple[str, str]] = []

    def accepts(self, rtype: ResourceType, key: str, value: Any, revision: int) -> bool:
        self.routed.append((key, rtype.name))
        return True


def test_overlapping_types_route_to_the_first_match_always() -> None:
    """A parent path shared by two types is never remembered for one of them."""
    spec = SyncerSpec("test", (resource_type("nodes", "n1"), resource_type("nodes"), resource_type("ippools")))
    recorder = _Recorder()
    core = SyncerCore(spec, [spec.types], recorder)
    core.start()
    keys = [f"{RESOURCE_ROOT}nodes/n2", f"{RESOURCE_ROOT}nodes/n1", f"{RESOURCE_ROOT}nodes/n3",
            f"{RESOURCE_ROOT}ippools/a", f"{RESOURCE_ROOT}ippools/b"]
    core.listed_rows(0, [(k, {"i": i}, i + 1) for i, k in enumerate(keys)], 9)
    assert recorder.routed == [(keys[0], "nodes"), (keys[1], "nodes/n1"), (keys[2], "nodes"),
                               (keys[3], "ippools"), (keys[4], "ippools")]
