"""Syncers across gaps: datastore outages, compacted history, a reopened store, bounded reconnects.

The store is real; ``Faults`` sits in front of it the way a flaky network
would (toxiproxy-style): it can make the store unreachable, hold watches (the
syncer falls behind while writes and compaction go on), and swap in a freshly
opened store. Everything else passes straight through.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import structlog

from libcalico.datastore import backend_from_env
from libcalico.datastore.backend import KV, Backend, JSONMap, ListResult, WatchEvent
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.errors import Unavailable
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
from tests.fixtures.backends import force_compaction

SYNCER_BACKENDS = ["sqlite", "etcd"]  # "kubernetes" refuses some seed keys (Calico Nodes): needs its own seed
FAST = RetryPolicy(initial=0.02, maximum=0.2)
WFD, RIP, IN_SYNC = SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC
R = RESOURCE_ROOT
REAP_GRACE = 0.5


@pytest.fixture(params=SYNCER_BACKENDS)
def store_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store(request: pytest.FixtureRequest, store_name: str) -> Backend:
    """A fresh, empty backend of each kind the syncer tests run on."""
    return request.getfixturevalue(f"{store_name}_backend")


@pytest.fixture
def store_env(request: pytest.FixtureRequest, store_name: str) -> dict[str, str]:
    """Environment with which backend_from_env opens the same store again."""
    return dict(request.getfixturevalue(f"{store_name}_env"))


@pytest.fixture(params=[WatchMode.SHARED, WatchMode.PER_TYPE], ids=lambda m: m.value)
def mode(request: pytest.FixtureRequest) -> WatchMode:
    return request.param


class Faults(Backend):
    """A pass-through Backend in front of a real one, with switchable faults."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.name = inner.name
        self.down = False
        self.held = False
        self._fault = asyncio.Event()
        self._released = asyncio.Event()
        self._calls = asyncio.Event()
        self.list_times: list[float] = []
        self.outages = 0  # outages begun so far: a watch cut by one raises even if it has ended since
        self.watch_calls = 0
        self.reconnects = 0
        self._reapers: set[asyncio.Future[None]] = set()

    def _check(self) -> None:
        if self.down:
            raise Unavailable("faults: the datastore is unreachable")

    def outage(self, down: bool) -> None:
        """Make every call, and every open watch, fail with Unavailable (or stop doing so)."""
        self.down = down
        if down:
            self.outages += 1
            self._fault.set()
        else:
            self._fault.clear()

    def hold(self) -> None:
        """Stop delivering watch events: the syncer falls behind the store."""
        self.held = True
        self._released.clear()
        self._fault.set()

    def release(self) -> None:
        """Let held watches reconnect from where they stopped (the store may have compacted meanwhile)."""
        self.held = False
        self._fault.clear()
        self._released.set()

    async def swap(self, fresh: Backend) -> Backend:
        """Route calls to a freshly opened store and close the old one (its watches end)."""
        old, self.inner = self.inner, fresh
        await old.close()
        return old

    async def wait_lists(self, count: int, timeout: float = 10.0) -> None:
        """Return once ``list`` has been called ``count`` times."""
        deadline = time.monotonic() + timeout
        while len(self.list_times) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.list_times)} list calls within {timeout}s, wanted {count}")
            self._calls.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._calls.wait()

    async def get(self, key: str) -> KV:
        self._check()
        return await self.inner.get(key)

    async def list(self, prefix: str) -> ListResult:
        self.list_times.append(time.monotonic())
        self._calls.set()
        self._check()
        return await self.inner.list(prefix)

    async def list_pages(self, prefix: str) -> AsyncIterator[ListResult]:
        """The inner store's paged listing when it has one (etcd), else its whole listing as one page."""
        pages = getattr(self.inner, "list_pages", None)
        if pages is None:
            yield await self.list(prefix)
            return
        self.list_times.append(time.monotonic())
        self._calls.set()
        self._check()
        async for page in pages(prefix):
            self._check()
            yield page

    async def create(self, key: str, value: JSONMap, *, ttl: float | None = None) -> KV:
        self._check()
        return await self.inner.create(key, value, ttl=ttl)

    async def update(self, key: str, value: JSONMap, *, revision: int | None = None,
                     ttl: float | None = None) -> KV:
        self._check()
        return await self.inner.update(key, value, revision=revision, ttl=ttl)

    async def delete(self, key: str, *, revision: int | None = None) -> KV:
        self._check()
        return await self.inner.delete(key, revision=revision)

    async def current_revision(self) -> int:
        self._check()
        return await self.inner.current_revision()

    async def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchEvent]:
        self.watch_calls += 1
        self._check()
        last = revision
        while True:
            cut_by_outage = False
            stream = self.inner.watch(prefix, last)
            nxt: asyncio.Future[WatchEvent] | None = None
            try:
                while True:
                    nxt = asyncio.ensure_future(anext(stream))
                    nxt.add_done_callback(lambda t: t.cancelled() or t.exception())  # never "unretrieved"
                    outages = self.outages
                    fault = asyncio.ensure_future(self._fault.wait())
                    try:
                        done, _ = await asyncio.wait({nxt, fault}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        fault.cancel()
                    if nxt not in done:
                        cut_by_outage = self.outages != outages
                        break
                    try:
                        event = nxt.result()
                    except StopAsyncIteration:
                        nxt = None
                        return
                    nxt = None
                    yield event
                    last = event.revision
            finally:
                reaper = asyncio.ensure_future(self._reap(stream, nxt))
                self._reapers.add(reaper)
                reaper.add_done_callback(self._reapers.discard)
            if cut_by_outage:
                raise Unavailable("faults: the datastore became unreachable during the watch")
            await self._released.wait()
            self.reconnects += 1
            self._check()

    @staticmethod
    async def _reap(stream: AsyncIterator[WatchEvent], pending: asyncio.Future[WatchEvent] | None) -> None:
        """Close an abandoned inner watch in the background.

        A watch still being set up gets a grace period first: aetcd cannot be cancelled while it
        creates a watch (asyncio.Condition re-acquisition), so cancelling right away could hang.
        """
        if pending is not None and not pending.done():
            await asyncio.wait({pending}, timeout=REAP_GRACE)
            if not pending.done():
                pending.cancel()
                await asyncio.wait({pending}, timeout=REAP_GRACE)
        if pending is None or pending.done():
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> Faults:
        return self

    async def close(self) -> None:
        """Wait for abandoned inner watches to close; the inner store is the fixture's to close."""
        if self._reapers:
            await asyncio.wait(set(self._reapers), timeout=4 * REAP_GRACE)


def netset(name: str, net: str = "10.1.0.0/24") -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": name},
            "spec": {"nets": [net]}}


KEYS = {name: f"{R}globalnetworksets/{name}" for name in ("keep", "change", "gone", "new")}


async def seed(store: Backend) -> None:
    for name in ("keep", "change", "gone"):
        await store.create(KEYS[name], netset(name))


async def change_behind_the_syncer(store: Backend) -> None:
    await store.update(KEYS["change"], netset("change", "10.7.0.0/24"))
    await store.delete(KEYS["gone"])
    await store.create(KEYS["new"], netset("new"))
    await store.create(KEYS["gone"], netset("gone"))  # deleted and re-created with the same value
    await store.delete(KEYS["gone"])


def assert_gap_deltas(view: ViewCallbacks, after: SyncStatus, count: int) -> None:
    """After the gap: the changed and new keys, a deletion for the gone one, nothing for the kept one."""
    deltas = view.updates_since(after, count)
    assert sorted((u.key, u.update_type) for u in deltas) == sorted([
        (KEYS["change"], UpdateType.UPDATED), (KEYS["new"], UpdateType.NEW), (KEYS["gone"], UpdateType.DELETED)])
    assert view.view == {KEYS["keep"]: netset("keep"), KEYS["change"]: netset("change", "10.7.0.0/24"),
                         KEYS["new"]: netset("new")}
    assert view.anomalies == []


async def test_outage_then_recovery(store: Backend, mode: WatchMode) -> None:
    await seed(store)
    view = ViewCallbacks()
    async with Faults(store) as faults, Syncer(faults, syncer_spec("felix"), view, mode=mode, retry=FAST):
        await view.wait_for_status(IN_SYNC)
        faults.outage(True)
        await view.wait_for_status(WFD, count=2)
        await change_behind_the_syncer(store)
        await force_compaction(store)
        listed = len(faults.list_times)
        await faults.wait_lists(listed + 2)  # it keeps trying while the store is away
        faults.outage(False)
        await view.wait_for_status(IN_SYNC, count=2)
        assert view.statuses == [WFD, RIP, IN_SYNC, WFD, RIP, IN_SYNC]
        assert_gap_deltas(view, WFD, 2)
        gone = next(u for u in view.updates_since(WFD, 2) if u.update_type is UpdateType.DELETED)
        assert gone.revision == await store.current_revision()  # stamped with the re-list's revision


async def test_compacted_history_forces_resync(store: Backend, mode: WatchMode) -> None:
    """Every watch behind the compaction lists again exactly once, and the view catches up.

    Watches are independent: with one watch per type each finds its history gone on its
    own, and a watch that has re-listed may bring the stream back to in-sync while another
    has yet to notice. So the test waits until every watch has re-listed (not for the
    second in-sync, which can come before the network sets' watch has re-listed).
    """
    await seed(store)
    faults, view = Faults(store), ViewCallbacks()
    syncer = Syncer(faults, syncer_spec("felix"), view, mode=mode, retry=FAST)
    watches = len(syncer.plans)
    async with faults, syncer:
        await view.wait_for_status(IN_SYNC)
        assert len(faults.list_times) == watches
        faults.hold()
        await change_behind_the_syncer(store)
        await force_compaction(store)
        faults.release()
        await view.wait_for(lambda: syncer.listings == [2] * watches and view.status is IN_SYNC,
                            what="every watch re-listed once, and in sync")
        assert len(faults.list_times) == 2 * watches, "one re-list per watch, no retries"
        assert syncer.resyncs == watches and faults.reconnects == watches
        after = view.statuses[3:]
        assert view.statuses[:3] == [WFD, RIP, IN_SYNC] and WFD not in after, "lost history is a resync, not an outage"
        assert after == [RIP, IN_SYNC] * (len(after) // 2) and 1 <= len(after) // 2 <= watches
        assert_gap_deltas(view, IN_SYNC, 1)
        later = await store.update(KEYS["keep"], netset("keep", "10.9.0.0/24"))
        await view.wait_for(lambda: view.revisions.get(KEYS["keep"]) == later.revision, what="delta after resync")
        assert len(faults.list_times) == 2 * watches


async def test_invalid_value_logged_once_across_resyncs(store: Backend) -> None:
    bad_key = f"{R}ippools/bad"
    bad = await store.create(bad_key, {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                                       "metadata": {"name": "bad"}, "spec": {"cidr": "nonsense"}})
    await seed(store)
    view = ViewCallbacks()
    with structlog.testing.capture_logs() as logs:
        async with Faults(store) as faults, Syncer(faults, syncer_spec("felix"), view, mode=WatchMode.SHARED, retry=FAST):
            await view.wait_for_status(IN_SYNC)
            for n in (2, 3):
                faults.outage(True)
                await view.wait_for_status(WFD, count=n)
                faults.outage(False)
                await view.wait_for_status(IN_SYNC, count=n)
    assert bad_key not in view.view
    assert [(e["key"], e["revision"]) for e in logs if e["event"] == "syncer invalid value"] == [(bad_key, bad.revision)]


async def test_reopened_store_sends_only_what_changed(store: Backend, store_env: dict[str, str]) -> None:
    """Closing the store under the syncer and opening it again re-sends nothing that did not change.

    A backend may end its watches quietly on close (sqlite: the syncer watches on from its
    revision) or fail them with Unavailable (etcd: the syncer waits, re-lists, sends the difference).
    """
    await seed(store)
    faults, view, fresh = Faults(store), ViewCallbacks(), backend_from_env(store_env)
    syncer = Syncer(faults, syncer_spec("felix"), view, mode=WatchMode.SHARED, retry=FAST)
    async with fresh, faults, syncer:
        await view.wait_for_status(IN_SYNC)
        await faults.swap(fresh)
        made = await fresh.create(KEYS["new"], netset("new"))
        await view.wait_for(lambda: KEYS["new"] in view.view and view.status is IN_SYNC,
                            what="write through the reopened store, in sync")
        assert view.statuses in ([WFD, RIP, IN_SYNC], [WFD, RIP, IN_SYNC, WFD, RIP, IN_SYNC])
        assert view.updates_since(IN_SYNC) == [Update(KEYS["new"], netset("new"), made.revision, UpdateType.NEW)]
        assert view.anomalies == []


async def test_reopened_store_after_compaction_resyncs(store: Backend, store_env: dict[str, str]) -> None:
    await seed(store)
    faults, view, fresh = Faults(store), ViewCallbacks(), backend_from_env(store_env)
    syncer = Syncer(faults, syncer_spec("felix"), view, mode=WatchMode.SHARED, retry=FAST)
    async with fresh, faults, syncer:
        await view.wait_for_status(IN_SYNC)
        faults.hold()
        await change_behind_the_syncer(store)
        await force_compaction(store)
        await faults.swap(fresh)
        faults.release()
        await view.wait_for_status(IN_SYNC, count=2)
        assert view.statuses in ([WFD, RIP, IN_SYNC, RIP, IN_SYNC], [WFD, RIP, IN_SYNC, WFD, RIP, IN_SYNC])
        assert_gap_deltas(view, IN_SYNC, 1)


async def test_reconnects_back_off(store: Backend) -> None:
    policy = RetryPolicy(initial=0.02, maximum=0.16, multiplier=2.0, jitter=0.25)
    view = ViewCallbacks()
    async with Faults(store) as faults, Syncer(faults, syncer_spec("felix"), view, mode=WatchMode.SHARED, retry=policy):
        await view.wait_for_status(IN_SYNC)
        faults.outage(True)
        start = len(faults.list_times)
        await faults.wait_lists(start + 7)
        faults.outage(False)
        await view.wait_for_status(IN_SYNC, count=2)
    times = faults.list_times[start:start + 7]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for attempt, gap in enumerate(gaps, start=2):
        floor = min(policy.maximum, policy.initial * policy.multiplier ** (attempt - 1)) * (1 - policy.jitter)
        assert gap >= floor * 0.99, f"attempt {attempt} came {gap:.3f}s after the last, under the {floor:.3f}s floor"
    assert view.statuses == [WFD, RIP, IN_SYNC, WFD, RIP, IN_SYNC]


class BrokenOnce(Faults):
    """A store whose first list fails with a bug-like error rather than a datastore error."""

    def __init__(self, inner: Backend) -> None:
        super().__init__(inner)
        self.broken = True

    async def list(self, prefix: str) -> ListResult:
        if self.broken:
            self.broken = False
            raise RuntimeError("backend bug")
        return await super().list(prefix)

    async def list_pages(self, prefix: str) -> AsyncIterator[ListResult]:
        if self.broken:
            self.broken = False
            raise RuntimeError("backend bug")
        async for page in super().list_pages(prefix):
            yield page


async def test_unexpected_backend_error_is_logged_and_retried(store: Backend) -> None:
    await seed(store)
    view = ViewCallbacks()
    with structlog.testing.capture_logs() as logs:
        async with BrokenOnce(store) as faults, Syncer(faults, syncer_spec("felix"), view, retry=FAST):
            await view.wait_for_status(IN_SYNC)
    assert view.statuses == [WFD, RIP, IN_SYNC]
    assert set(view.view) == {KEYS["keep"], KEYS["change"], KEYS["gone"]}
    assert [e["log_level"] for e in logs if e["event"] == "syncer watch failed"] == ["error"]
