"""The client's stream assembly against the real snapshot cache: views equal the datastore across reconnects."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.syncer import SyncStatus, Update, UpdateType, ViewCallbacks
from libcalico.typha.protocol import (
    FrameDecoder,
    KVs,
    KVUpdate,
    Sender,
    Status,
    encode,
    parse_message,
)
from libcalico.typha.stream import Output, StreamAssembler
from services.typha.filtering import felix_shaper
from services.typha.snapcache import Breadcrumb, SnapshotCache

WEP = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/"
POL = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/"


def wep(name: str, node: str, label: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": label}, "uid": "u-" + name},
        "spec": {"node": node, "pod": name, "interfaceName": "cali" + name, "ipNetworks": ["10.0.0.1/32"]},
    }


def deliver(view: ViewCallbacks, outputs: list[Output]) -> None:
    """Hand outputs to the consumer the way the client's driver does (batches between statuses)."""
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


class Agent:
    """One node's client: an assembler fed with the cache's frames, connecting and disconnecting."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.assembler = StreamAssembler()
        self.view = ViewCallbacks()
        deliver(self.view, self.assembler.start())
        self.crumb: Breadcrumb | None = None
        self.decoder = FrameDecoder()

    def feed(self, data: bytes) -> None:
        out: list[Output] = []
        for raw in self.decoder.feed(data):
            msg = parse_message(raw, Sender.SERVER)
            assert msg is not None
            out.extend(self.assembler.on_message(msg))
        deliver(self.view, out)

    def connect(self, cache: SnapshotCache, *, cut_after: int | None = None) -> None:
        """Join: snapshot frames then status, as the server's session sends them; maybe cut mid-snapshot."""
        self.decoder = FrameDecoder()
        deliver(self.view, self.assembler.connected())
        crumb = cache.join()
        frames = crumb.snapshot_frames(self.node)
        for i, frame in enumerate(frames):
            if cut_after is not None and i >= cut_after:
                self.disconnect()
                return
            self.feed(frame)
        self.feed(encode(Status(crumb.status)))
        self.crumb = crumb

    def disconnect(self) -> None:
        self.assembler.disconnected()
        self.crumb = None

    def walk(self) -> None:
        while self.crumb is not None and self.crumb.next is not None:
            self.crumb = self.crumb.next
            self.feed(self.crumb.delta_bytes(self.node))


def shaped(state: dict[str, Any], node: str) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        owner, trimmed = felix_shaper(key, value)
        if owner is None or owner == node:
            out[key] = value
        elif trimmed is not None:
            out[key] = trimmed
    return out


def test_reconnect_emits_only_changes_and_deletions_of_vanished_keys() -> None:
    cache = SnapshotCache(felix_shaper)
    cache.on_status(SyncStatus.IN_SYNC)
    cache.on_update(POL + "a", {"v": 1}, 1)
    cache.on_update(POL + "b", {"v": 1}, 2)
    cache.on_update(WEP + "p1", wep("p1", "n1", "x"), 3)
    agent = Agent("n1")
    agent.connect(cache)
    assert agent.view.statuses == [SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC]
    assert agent.view.view[WEP + "p1"] == wep("p1", "n1", "x")  # own endpoint in full, reported once
    assert [u.update_type for u in agent.view.updates_for(WEP + "p1")] == [UpdateType.NEW]
    agent.disconnect()
    cache.on_update(POL + "a", None, 4)  # vanished while away
    cache.on_update(POL + "b", {"v": 2}, 5)  # changed while away
    cache.on_update(POL + "c", {"v": 1}, 6)  # new while away
    agent.connect(cache)
    since = agent.view.updates_since(SyncStatus.RESYNC_IN_PROGRESS, 2)
    assert {(u.key, u.update_type) for u in since} == {
        (POL + "a", UpdateType.DELETED), (POL + "b", UpdateType.UPDATED), (POL + "c", UpdateType.NEW)}
    assert agent.view.anomalies == []
    assert agent.view.status is SyncStatus.IN_SYNC


def test_deletions_wait_until_the_server_is_in_sync() -> None:
    assembler = StreamAssembler()
    assembler.start()
    assembler.connected()
    assembler.on_message(KVs((KVUpdate("/k/a", {"v": 1}, 1), KVUpdate("/k/b", {"v": 1}, 2))))
    assembler.on_message(Status(SyncStatus.IN_SYNC))
    assembler.disconnected()
    assembler.connected()
    assembler.on_message(KVs((KVUpdate("/k/a", {"v": 1}, 3),)))
    out = assembler.on_message(Status(SyncStatus.RESYNC_IN_PROGRESS))  # server still loading: no deletions
    assert not any(isinstance(o, Update) for o in out)
    out = assembler.on_message(KVs((KVUpdate("/k/c", {"v": 1}, 4),)))
    assert [(o.key, o.update_type) for o in out if isinstance(o, Update)] == [("/k/c", UpdateType.NEW)]
    out = assembler.on_message(Status(SyncStatus.IN_SYNC))
    assert out == [Update("/k/b", None, 4, UpdateType.DELETED), SyncStatus.IN_SYNC]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("wep"), st.sampled_from(["p1", "p2", "p3"]), st.sampled_from(["n1", "n2"]),
                  st.sampled_from(["a", "b"])),
        st.tuples(st.just("pol"), st.sampled_from(["x", "y"]), st.none(), st.sampled_from(["1", "2"])),
        st.tuples(st.just("del"), st.sampled_from(["p1", "p2", "p3", "x", "y"]), st.none(), st.none()),
        st.tuples(st.just("publish"), st.none(), st.none(), st.none()),
        st.tuples(st.just("status"), st.sampled_from(list(SyncStatus)), st.none(), st.none()),
        st.tuples(st.just("drop"), st.integers(0, 2), st.none(), st.none()),
        st.tuples(st.just("reconnect"), st.integers(0, 2), st.integers(0, 3), st.none()),
        st.tuples(st.just("walk"), st.integers(0, 2), st.none(), st.none()),
    ),
    max_size=50,
)


@settings(max_examples=250, deadline=None)
@given(ops)
def test_any_updates_and_reconnects_leave_every_view_equal_to_the_datastore(sequence: list[Any]) -> None:
    cache = SnapshotCache(felix_shaper)
    state: dict[str, Any] = {}
    agents = [Agent("n1"), Agent("n2"), Agent("n3")]
    rev = 0
    for op, a, b, c in sequence:
        rev += 1
        if op == "wep":
            state[WEP + a] = wep(a, b, c)
            cache.on_update(WEP + a, state[WEP + a], rev)
        elif op == "pol":
            state[POL + a] = {"spec": {"v": c}}
            cache.on_update(POL + a, state[POL + a], rev)
        elif op == "del":
            key = (WEP + a) if a.startswith("p") else (POL + a)
            state.pop(key, None)
            cache.on_update(key, None, rev)
        elif op == "publish":
            cache.publish()
        elif op == "status":
            cache.on_status(a)
        elif op == "drop":
            agents[a].disconnect()
        elif op == "reconnect":
            agents[a].disconnect()
            agents[a].connect(cache, cut_after=b if b < 3 else None)
        elif op == "walk":
            agents[a].walk()
    # The datastore settles: the syncer reports in sync, every agent (re)connects or walks to the end.
    cache.on_status(SyncStatus.IN_SYNC)
    cache.publish()
    for agent in agents:
        if agent.crumb is None:
            agent.connect(cache)
        agent.walk()
        assert agent.view.view == shaped(state, agent.node)
        assert agent.view.status is SyncStatus.IN_SYNC
        assert agent.view.anomalies == []
