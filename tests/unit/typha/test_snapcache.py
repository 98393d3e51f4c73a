"""Typha's snapshot cache: chain walking, per-node shaping, dropping unchanged updates."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.typha.protocol import FrameDecoder, KVs, Sender, Status, SyncStatus, parse_message
from services.typha.filtering import bgp_shaper, felix_shaper, trim_workload_endpoint
from services.typha.snapcache import Breadcrumb, SnapshotCache

WEP = "/calico/resources/v3/projectcalico.org/workloadendpoints/default/"
POL = "/calico/resources/v3/projectcalico.org/globalnetworkpolicies/"
AFF = "/calico/ipam/v2/host/"


def wep(name: str, node: str, label: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": label}, "uid": "u-" + name},
        "spec": {"node": node, "pod": name, "interfaceName": "cali" + name, "mac": "ee:ee:ee:ee:ee:ee",
                 "ipNetworks": ["10.0.0.1/32"], "profiles": ["kns.default"]},
    }


class View:
    """What a client sees: applies the frames it is sent, like the Typha client library."""

    def __init__(self) -> None:
        self.kvs: dict[str, Any] = {}
        self.status: SyncStatus | None = None
        self.decoder = FrameDecoder()

    def feed(self, data: bytes) -> None:
        for raw in self.decoder.feed(data):
            msg = parse_message(raw, Sender.SERVER)
            if isinstance(msg, KVs):
                for u in msg.kvs:
                    if u.value is None:
                        self.kvs.pop(u.key, None)
                    else:
                        self.kvs[u.key] = u.value
            elif isinstance(msg, Status):
                self.status = msg.status


class Client:
    def __init__(self, cache: SnapshotCache, node: str) -> None:
        self.node = node
        self.view = View()
        crumb = cache.join()
        for frame in crumb.snapshot_frames(node):
            self.view.feed(frame)
        self.view.status = crumb.status
        self.crumb: Breadcrumb = crumb

    def catch_up(self) -> None:
        while self.crumb.next is not None:
            self.crumb = self.crumb.next
            self.view.feed(self.crumb.delta_bytes(self.node))


def expected_view(state: dict[str, Any], node: str, shaper: Any) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        owner, trimmed = shaper(key, value)
        if owner is None or owner == node:
            out[key] = value
        elif trimmed is not None:
            out[key] = trimmed
    return out


def test_snapshot_then_deltas_with_trimming() -> None:
    cache = SnapshotCache(felix_shaper)
    cache.on_update(WEP + "n1-k8s-p1-eth0", wep("n1-k8s-p1-eth0", "n1"), 1)
    cache.on_update(WEP + "n2-k8s-p2-eth0", wep("n2-k8s-p2-eth0", "n2"), 2)
    cache.on_update(POL + "deny", {"spec": {"selector": "all()"}}, 3)
    cache.on_status(SyncStatus.IN_SYNC)
    c1, c2 = Client(cache, "n1"), Client(cache, "n2")
    assert c1.view.status is SyncStatus.IN_SYNC
    assert c1.view.kvs[WEP + "n1-k8s-p1-eth0"] == wep("n1-k8s-p1-eth0", "n1")
    assert c1.view.kvs[WEP + "n2-k8s-p2-eth0"] == trim_workload_endpoint(wep("n2-k8s-p2-eth0", "n2"))
    assert "uid" not in c1.view.kvs[WEP + "n2-k8s-p2-eth0"]["metadata"]
    cache.on_update(WEP + "n2-k8s-p2-eth0", wep("n2-k8s-p2-eth0", "n2", label="b"), 4)
    cache.on_update(POL + "deny", None, 5)
    cache.publish()
    for c in (c1, c2):
        c.catch_up()
    assert c2.view.kvs[WEP + "n2-k8s-p2-eth0"]["metadata"]["labels"] == {"app": "b"}
    assert c2.view.kvs[WEP + "n2-k8s-p2-eth0"]["spec"]["interfaceName"] == "calin2-k8s-p2-eth0"
    assert c1.view.kvs[WEP + "n2-k8s-p2-eth0"]["metadata"]["labels"] == {"app": "b"}
    assert "interfaceName" not in c1.view.kvs[WEP + "n2-k8s-p2-eth0"]["spec"]
    assert POL + "deny" not in c1.view.kvs


def test_block_affinities_only_for_their_node() -> None:
    cache = SnapshotCache(bgp_shaper)
    cache.on_update(AFF + "n1/ipv4/block/10.0.0.0-26", {"state": "confirmed"}, 1)
    cache.on_update(AFF + "n2/ipv4/block/10.0.0.64-26", {"state": "confirmed"}, 2)
    c1 = Client(cache, "n1")
    assert list(c1.view.kvs) == [AFF + "n1/ipv4/block/10.0.0.0-26"]
    cache.on_update(AFF + "n2/ipv4/block/10.0.0.64-26", None, 3)
    cache.on_update(AFF + "n1/ipv4/block/10.0.0.0-26", None, 4)
    cache.publish()
    assert cache.latest.delta_bytes("n3") == b""  # nothing for a third node
    c1.catch_up()
    assert c1.view.kvs == {}


def test_unchanged_updates_are_dropped_before_the_chain() -> None:
    cache = SnapshotCache()
    assert cache.on_update(POL + "a", {"x": 1}, 1)
    cache.publish()
    assert not cache.on_update(POL + "a", {"x": 1}, 2)
    assert not cache.on_update(POL + "b", None, 3)
    assert cache.publish() is None
    assert cache.updates_skipped == 2


def test_generic_delta_bytes_are_encoded_once_and_shared() -> None:
    cache = SnapshotCache(felix_shaper)
    cache.on_update(POL + "a", {"x": 1}, 1)
    crumb = cache.publish()
    assert crumb is not None
    assert crumb.delta_bytes("n1") is crumb.delta_bytes("n2")
    first = cache.join().snapshot_frames("n1")
    assert first[0] is cache.join().snapshot_frames("n9")[0]


ops = st.lists(
    st.one_of(
        st.tuples(st.just("wep"), st.sampled_from(["p1", "p2", "p3", "p4"]), st.sampled_from(["n1", "n2", "n3"]),
                  st.sampled_from(["a", "b"])),
        st.tuples(st.just("del"), st.sampled_from(["p1", "p2", "p3", "p4", "pol"]), st.none(), st.none()),
        st.tuples(st.just("pol"), st.just("pol"), st.none(), st.sampled_from(["x", "y"])),
        st.tuples(st.just("publish"), st.none(), st.none(), st.none()),
        st.tuples(st.just("join"), st.sampled_from(["n1", "n2", "n3"]), st.none(), st.none()),
        st.tuples(st.just("walk"), st.none(), st.none(), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(ops)
def test_every_client_view_equals_the_shaped_state(sequence: list[tuple[Any, Any, Any, Any]]) -> None:
    cache = SnapshotCache(felix_shaper)
    state: dict[str, Any] = {}
    clients: list[Client] = []
    rev = 0
    for op, a, b, c in sequence:
        rev += 1
        if op == "wep":
            key = WEP + a
            state[key] = wep(a, b, c)
            cache.on_update(key, state[key], rev)
        elif op == "pol":
            state[POL + a] = {"spec": {"v": c}}
            cache.on_update(POL + a, state[POL + a], rev)
        elif op == "del":
            key = (POL + a) if a == "pol" else (WEP + a)
            state.pop(key, None)
            cache.on_update(key, None, rev)
        elif op == "publish":
            cache.publish()
        elif op == "join":
            clients.append(Client(cache, a))
        elif op == "walk" and clients:
            clients[0].catch_up()
    cache.publish()
    for client in clients:
        client.catch_up()
        assert client.view.kvs == expected_view(state, client.node, felix_shaper)
