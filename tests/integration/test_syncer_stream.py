"""Syncers on a real datastore: snapshot then deltas, statuses, filtering, validation, dedupe.

Runs on every backend in SYNCER_BACKENDS (one line to add etcd or kubernetes)
and in both watch modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
import structlog

from libcalico.datastore.backend import Backend
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.errors import NotFound, ValidationError
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

SYNCER_BACKENDS = ["sqlite", "etcd"]  # "kubernetes" refuses some seed keys (Calico Nodes): needs its own seed
MODES = [WatchMode.SHARED, WatchMode.PER_TYPE]
FAST = RetryPolicy(initial=0.02, maximum=0.2)
WFD, RIP, IN_SYNC = SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC
R = RESOURCE_ROOT
V3 = "projectcalico.org/v3"


@pytest.fixture(params=SYNCER_BACKENDS)
def store(request: pytest.FixtureRequest) -> Backend:
    """A fresh, empty backend of each kind the syncer tests run on."""
    return request.getfixturevalue(f"{request.param}_backend")


@pytest.fixture(params=MODES, ids=lambda m: m.value)
def mode(request: pytest.FixtureRequest) -> WatchMode:
    return request.param


def pool(name: str, cidr: str = "10.0.0.0/16") -> dict:
    return {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr}}


def policy(name: str, ns: str = "ns1", action: str = "Allow") -> dict:
    return {"apiVersion": V3, "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": "all()", "ingress": [{"action": action}]}}


def netset(name: str, net: str = "10.1.0.0/24") -> dict:
    return {"apiVersion": V3, "kind": "GlobalNetworkSet", "metadata": {"name": name}, "spec": {"nets": [net]}}


def node(name: str) -> dict:
    return {"apiVersion": V3, "kind": "Node", "metadata": {"name": name}, "spec": {}}


def peer(name: str) -> dict:
    return {"apiVersion": V3, "kind": "BGPPeer", "metadata": {"name": name},
            "spec": {"peerIP": "192.0.2.1", "asNumber": 64512}}


BLOCK = "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26"
AFFINITY = "/calico/ipam/v2/host/n1/ipv4/block/10.0.0.0-26"
SEED: dict[str, dict] = {
    f"{R}ippools/pool1": pool("pool1"),
    f"{R}networkpolicies/ns1/p1": policy("p1"),
    f"{R}globalnetworksets/gs1": netset("gs1"),
    f"{R}nodes/n1": node("n1"),
    f"{R}nodes/n1-b": node("n1-b"),
    f"{R}bgppeers/peer1": peer("peer1"),
    BLOCK: {"cidr": "10.0.0.0/26", "affinity": "host:n1", "allocations": [None], "unallocated": [0]},
    AFFINITY: {"state": "confirmed", "deleted": False},
    "/calico/ipam/v2/handle/k8s-pod-network.x": {"block": {"10.0.0.0/26": 1}},
    "/calico/felix/v2/no-region/host/n1/status": {"time": "now"},
}


async def seed(store: Backend) -> None:
    for key, value in SEED.items():
        await store.create(key, value)


async def expected_view(store: Backend, spec: SyncerSpec) -> dict[str, dict]:
    """What a consumer of ``spec`` must end up holding: the datastore's carried, valid entries."""
    listing = await store.list("/calico/")
    out = {}
    for kv in listing.items:
        rtype = spec.type_of(kv.key)
        if rtype is None:
            continue
        try:
            check_value(rtype, kv.key, kv.value)
        except ValidationError:
            continue
        out[kv.key] = kv.value
    return out


def syncer(store: Backend, name: str, view: ViewCallbacks, mode: WatchMode, node: str | None = None) -> Syncer:
    return Syncer(store, syncer_spec(name, node), view, mode=mode, retry=FAST)


async def test_snapshot_then_deltas_in_order(store: Backend, mode: WatchMode) -> None:
    await seed(store)
    view = ViewCallbacks()
    async with syncer(store, "felix", view, mode):
        await view.wait_for_status(IN_SYNC)
        assert view.statuses == [WFD, RIP, IN_SYNC]
        first_update = next(i for i, e in enumerate(view.events) if isinstance(e, Update))
        assert view.events[:first_update] == [WFD, RIP], "resync-in-progress comes before the snapshot"
        assert view.events[-1] is IN_SYNC, "in-sync comes after the whole snapshot"
        snapshot = [e for e in view.events if isinstance(e, Update)]
        assert all(u.update_type is UpdateType.NEW for u in snapshot)
        assert view.view == await expected_view(store, syncer_spec("felix"))
        assert set(view.view) == {f"{R}ippools/pool1", f"{R}networkpolicies/ns1/p1", f"{R}globalnetworksets/gs1",
                                  f"{R}nodes/n1", f"{R}nodes/n1-b", f"{R}bgppeers/peer1", BLOCK}

        writes = [
            await store.update(f"{R}ippools/pool1", pool("pool1", "10.9.0.0/16")),
            await store.delete(f"{R}globalnetworksets/gs1"),
            await store.create(f"{R}networkpolicies/ns1/p2", policy("p2")),
            await store.update(f"{R}networkpolicies/ns1/p2", policy("p2", action="Deny")),
            await store.delete(f"{R}nodes/n1-b"),
        ]
        await view.wait_for(lambda: len(view.updates_since(IN_SYNC)) >= len(writes), what="five deltas")
        deltas = view.updates_since(IN_SYNC)
        expected = [
            (f"{R}ippools/pool1", UpdateType.UPDATED, writes[0].revision),
            (f"{R}globalnetworksets/gs1", UpdateType.DELETED, None),
            (f"{R}networkpolicies/ns1/p2", UpdateType.NEW, writes[2].revision),
            (f"{R}networkpolicies/ns1/p2", UpdateType.UPDATED, writes[3].revision),
            (f"{R}nodes/n1-b", UpdateType.DELETED, None),
        ]
        got = [(u.key, u.update_type, None if u.value is None else u.revision) for u in deltas]
        if mode is WatchMode.SHARED:  # one watch: exactly the store's order
            assert got == expected
            assert [u.revision for u in deltas] == sorted(u.revision for u in deltas)
        else:  # one watch per type: per-key order only
            assert sorted(got, key=repr) == sorted(expected, key=repr)
        assert [u.update_type for u in view.updates_for(f"{R}networkpolicies/ns1/p2")] == [
            UpdateType.NEW, UpdateType.UPDATED]
        assert view.updates_for(f"{R}networkpolicies/ns1/p2")[-1].value == policy("p2", action="Deny")
        assert view.statuses == [WFD, RIP, IN_SYNC]
        assert view.anomalies == []
        assert view.view == await expected_view(store, syncer_spec("felix"))


async def test_bgp_stream_carries_no_policies(store: Backend, mode: WatchMode) -> None:
    await seed(store)
    view = ViewCallbacks()
    async with syncer(store, "bgp", view, mode, node="n1"):
        await view.wait_for_status(IN_SYNC)
        assert set(view.view) == {f"{R}ippools/pool1", f"{R}nodes/n1", f"{R}nodes/n1-b", f"{R}bgppeers/peer1",
                                  AFFINITY}
        await store.create(f"{R}networkpolicies/ns1/p9", policy("p9"))
        await store.create(f"{R}globalnetworksets/gs9", netset("gs9"))
        await store.create("/calico/ipam/v2/host/n2/ipv4/block/10.0.1.0-26", {"state": "confirmed"})
        await store.create(f"{R}ippools/pool9", pool("pool9", "10.8.0.0/16"))
        await view.wait_for(lambda: f"{R}ippools/pool9" in view.view, what="pool9 arrives")
        assert not [u for u in view.updates if "policies" in u.key or "networksets" in u.key or "/n2/" in u.key]
        assert view.view == await expected_view(store, syncer_spec("bgp", "n1"))


async def test_tunnel_stream_for_one_node(store: Backend, mode: WatchMode) -> None:
    await seed(store)
    view = ViewCallbacks()
    async with syncer(store, "tunnel-ip-allocation", view, mode, node="n1"):
        await view.wait_for_status(IN_SYNC)
        assert set(view.view) == {f"{R}ippools/pool1", f"{R}nodes/n1"}
        await store.update(f"{R}nodes/n1-b", {**node("n1-b"), "spec": {"bgp": {"ipv4Address": "10.0.0.2/24"}}})
        await store.update(f"{R}nodes/n1", {**node("n1"), "spec": {"bgp": {"ipv4Address": "10.0.0.1/24"}}})
        await view.wait_for(lambda: len(view.updates_since(IN_SYNC)) == 1, what="n1's update")
        assert [u.key for u in view.updates_since(IN_SYNC)] == [f"{R}nodes/n1"]


async def test_invalid_value_skipped_and_logged_once(store: Backend, mode: WatchMode) -> None:
    bad_key, wrong_kind_key = f"{R}networkpolicies/ns1/bad", f"{R}networkpolicies/ns1/wrongkind"
    await store.create(f"{R}ippools/pool1", pool("pool1"))
    bad = await store.create(bad_key, policy("bad", action="Allowz"))  # around the API: the client refuses it
    view = ViewCallbacks()
    with structlog.testing.capture_logs() as logs:
        async with syncer(store, "felix", view, mode):
            await view.wait_for_status(IN_SYNC)
            assert set(view.view) == {f"{R}ippools/pool1"}
            wrong = await store.create(wrong_kind_key, {**policy("wrongkind"), "kind": "GlobalNetworkPolicy"})
            await store.create(f"{R}networkpolicies/ns1/good", policy("good"))
            await view.wait_for(lambda: f"{R}networkpolicies/ns1/good" in view.view, what="good policy")
            broken = await store.update(f"{R}ippools/pool1", pool("pool1", "10.0.0.0/99"))
            await view.wait_for(lambda: f"{R}ippools/pool1" not in view.view, what="broken pool removed")
            assert view.updates_for(f"{R}ippools/pool1")[-1] == Update(
                f"{R}ippools/pool1", None, broken.revision, UpdateType.DELETED)
            fixed = await store.update(bad_key, policy("bad"))
            await view.wait_for(lambda: bad_key in view.view, what="fixed policy arrives")
            assert view.updates_for(bad_key) == [Update(bad_key, policy("bad"), fixed.revision, UpdateType.NEW)]
            assert wrong_kind_key not in view.view and view.anomalies == []
    rejected = [(e["key"], e["revision"]) for e in logs if e["event"] == "syncer invalid value"]
    assert sorted(rejected) == sorted([(bad_key, bad.revision), (wrong_kind_key, wrong.revision),
                                       (f"{R}ippools/pool1", broken.revision)])


async def test_unchanged_value_is_not_reemitted(store: Backend, mode: WatchMode) -> None:
    await store.create(f"{R}ippools/pool1", pool("pool1"))
    view = ViewCallbacks()
    async with syncer(store, "felix", view, mode):
        await view.wait_for_status(IN_SYNC)
        rewritten = await store.update(f"{R}ippools/pool1", pool("pool1"))
        assert rewritten.revision > 1
        await store.create(f"{R}ippools/pool2", pool("pool2", "10.2.0.0/16"))
        await view.wait_for(lambda: f"{R}ippools/pool2" in view.view, what="pool2 arrives")
        assert len(view.updates_for(f"{R}ippools/pool1")) == 1


async def test_view_equals_datastore_after_a_burst(store: Backend, mode: WatchMode) -> None:
    rng = random.Random(1234)
    view = ViewCallbacks()
    spec = syncer_spec("felix")
    async with syncer(store, "felix", view, mode):
        await view.wait_for_status(IN_SYNC)
        keys = [f"{R}globalnetworksets/s{i}" for i in range(8)] + [f"{R}ippools/p{i}" for i in range(4)]
        for _ in range(150):
            key = rng.choice(keys)
            name = key.rsplit("/", 1)[1]
            value = netset(name, f"10.{rng.randrange(3)}.0.0/24") if "networksets" in key else pool(
                name, rng.choice(["10.0.0.0/16", "10.1.0.0/16", "300.0.0.0/16"]))
            if rng.random() < 0.3:
                with contextlib.suppress(NotFound):
                    await store.delete(key)
            else:
                await store.apply(key, value)
        marker = await store.create(f"{R}ippools/zz-marker", pool("zz-marker", "10.200.0.0/16"))
        await view.wait_for(lambda: view.revisions.get(marker.key) == marker.revision, what="marker arrives")
        assert view.view == await expected_view(store, spec)
        assert view.anomalies == []
        for key in keys:
            revisions = [u.revision for u in view.updates_for(key)]
            assert revisions == sorted(revisions), key


class Boom(RuntimeError):
    pass


class FailingCallbacks(ViewCallbacks):
    """A consumer whose update handler breaks on the first batch."""

    def on_updates(self, updates: list[Update]) -> None:
        raise Boom(f"consumer broke on {len(updates)} updates")


async def test_callback_error_ends_the_run(store: Backend) -> None:
    await store.create(f"{R}ippools/pool1", pool("pool1"))
    view = FailingCallbacks()
    s = syncer(store, "felix", view, WatchMode.SHARED)
    with pytest.raises(Boom, match="consumer broke on 1 updates"):
        async with asyncio.timeout(10):
            await s.run()
    assert view.statuses == [WFD, RIP]
