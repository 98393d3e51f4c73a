"""One syncer type's pipeline: datastore syncer → validation → snapshot cache → the clients.

How it works::

    Syncer (list + watch, validation filter) ──callbacks──► Pipeline.on_updates / on_status
                                                              │ encode once into the cache
                                                              ▼
        publisher: when idle at once; under load at most every 4 × the recent fan-out time,
                   between 1 ms and ServerBatchIntervalSecs
                                                              │ SnapshotCache.publish() → a new breadcrumb
                                                              ▼
        fast path: for every following (caught-up) session, one transport.write of the
                   breadcrumb's bytes for its node, in this loop, no task wake-up
        slow path: a session whose socket buffers filled leaves the fast path; its own task
                   drains, walks the chain in batches and rejoins when it is caught up

The publisher publishes what is queued at once when nothing was published in
the last interval (an idle stream adds no delay), and otherwise at the end of
the interval, which bounds how often the clients are written to whatever the
datastore's update rate. The interval adapts to what a fan-out costs: four
times its recent duration (so writing to the clients takes at most about a
quarter of Typha's time), at least 1 ms, at most ``ServerBatchIntervalSecs``.
A few clients get each update within a millisecond or two; a thousand, on a
busy machine, in batches up to the configured interval.

Writing each breadcrumb to the caught-up clients straight from the publisher
costs one ``write`` per client (the same shared bytes for every client whose
node owns nothing in it), and no per-client task switch. The pipeline reports ready once its cache is in sync.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

import structlog

from libcalico.datastore.backend import Backend
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.runtime import Reporter
from libcalico.syncer import SyncStatus, Update, UpdateType, new_syncer
from services.typha.metrics import TyphaMetrics
from services.typha.snapcache import Breadcrumb, Shaper, SnapshotCache

log = structlog.get_logger(__name__)

_NODE_PREFIX = f"{RESOURCE_ROOT}nodes/"
MIN_BATCH_INTERVAL = 0.001
FANOUT_SHARE = 4  # the batch interval is this many times the recent fan-out time


class Follower(Protocol):
    """A client session on the fast path (see :class:`services.typha.session.Session`)."""

    def take(self, crumb: Breadcrumb) -> bool:
        """Write ``crumb``'s bytes; False when the session must leave the fast path."""


class Pipeline:
    """A syncer feeding one snapshot cache, and the wake-up of the clients that walk it."""

    def __init__(
        self,
        name: str,
        backend: Backend,
        shaper: Shaper,
        *,
        metrics: TyphaMetrics,
        reporter: Reporter,
        batch_interval: float,
    ) -> None:
        self.name = name
        self.cache = SnapshotCache(shaper)
        self.metrics = metrics
        self.reporter = reporter
        self.batch_interval = batch_interval
        self.syncer = new_syncer(name, backend, self)
        self.nodes = 0  # Node resources in the stream (for connection limits)
        self._dirty = asyncio.Event()
        self._last_publish = 0.0
        self._first_pending: float | None = None  # arrival of the oldest update not yet published
        self._skipped_seen = 0
        self.followers: dict[Follower, None] = {}  # insertion-ordered set
        self._fanout_recent = 0.0  # moving average of a fan-out's duration
        reporter.report(live=True, ready=False, detail="waiting for the datastore")
        for family in (metrics.connections_active, metrics.cache_size, metrics.updates_total,
                       metrics.updates_skipped, metrics.breadcrumb_seq, metrics.snapshot_send_secs,
                       metrics.client_latency_secs, metrics.ping_latency, metrics.breadcrumb_wait_secs,
                       metrics.fanout_secs, metrics.fanout_fallbehind):
            family.labels(name)  # every syncer's series exists from the start
        self._fanout_secs = metrics.fanout_secs.labels(name)
        self._wait_secs = metrics.breadcrumb_wait_secs.labels(name)
        self._fallbehind = metrics.fanout_fallbehind.labels(name)

    # ------------------------------------------------------------ syncer callbacks

    def on_status(self, status: SyncStatus) -> None:
        """The syncer's status: recorded in the cache and published with the next breadcrumb."""
        self.cache.on_status(status)
        self._dirty.set()
        self.reporter.report(live=True, ready=status is SyncStatus.IN_SYNC, detail=status.value)

    def on_updates(self, updates: list[Update]) -> None:
        """A batch from the syncer: each update is encoded once into the cache."""
        if self._first_pending is None:
            self._first_pending = time.monotonic()
        for u in updates:
            self.cache.on_update(u.key, u.value, u.revision)
            if u.key.startswith(_NODE_PREFIX):
                if u.update_type is UpdateType.NEW:
                    self.nodes += 1
                elif u.update_type is UpdateType.DELETED:
                    self.nodes -= 1
        self.metrics.updates_total.labels(self.name).inc(len(updates))
        skipped = self.cache.updates_skipped - self._skipped_seen
        if skipped:
            self._skipped_seen = self.cache.updates_skipped
            self.metrics.updates_skipped.labels(self.name).inc(skipped)
        self._dirty.set()

    # ------------------------------------------------------------ clients

    def join(self, now: float) -> Breadcrumb:
        """Where a new client starts: a recent built snapshot is shared by clients joining together.

        Anything queued is published (and written to the following sessions) first: the cache would
        otherwise publish it inside ``join``, past the fast path, and the followers would never get it.
        """
        self.publish()
        return self.cache.join(now, reuse_within=self.batch_interval * 4)

    def follow(self, session: Follower) -> None:
        """Put a caught-up session on the fast path: it gets every new breadcrumb from the publisher."""
        self.followers[session] = None

    def unfollow(self, session: Follower) -> None:
        """Take a session off the fast path (it fell behind, or it ends)."""
        self.followers.pop(session, None)

    @property
    def interval(self) -> float:
        """The current batch interval: adapted to the fan-out's cost, within its bounds."""
        return min(self.batch_interval, max(MIN_BATCH_INTERVAL, FANOUT_SHARE * self._fanout_recent))

    @property
    def in_sync(self) -> bool:
        return self.cache.status is SyncStatus.IN_SYNC

    # ------------------------------------------------------------ tasks

    def publish(self) -> Breadcrumb | None:
        """Publish what is queued now and write it to every following session."""
        now = time.monotonic()
        crumb = self.cache.publish(now)
        self._last_publish = now
        first, self._first_pending = self._first_pending, None
        if crumb is None:
            return None
        if first is not None:
            self._wait_secs.observe(now - first)
        self._fan_out(crumb, now)
        self.metrics.breadcrumb_seq.labels(self.name).set(crumb.seq)
        self.metrics.cache_size.labels(self.name).set(self.cache.size)
        return crumb

    def _fan_out(self, crumb: Breadcrumb, published: float) -> None:
        """The fast path: one write of this breadcrumb per following session, no task switch."""
        followers = self.followers
        if not followers:
            return
        dropped: list[Follower] = []
        for session in followers:
            if not session.take(crumb):
                dropped.append(session)
        for session in dropped:
            followers.pop(session, None)
        if dropped:
            self._fallbehind.inc(len(dropped))
        done = time.monotonic()
        self._fanout_secs.observe(done - published)
        self._fanout_recent = 0.7 * self._fanout_recent + 0.3 * (done - published)
        # Every follower was written between ``published`` and ``done``: count each at the midpoint.
        n = len(followers) + len(dropped)
        self.metrics.client_latency_secs.observe_many(self.name, n, n * (done - published) / 2)

    async def run(self, stop: asyncio.Event) -> None:
        """Run the syncer and the publisher until ``stop`` is set."""
        syncer_task = asyncio.create_task(self.syncer.run(), name=f"syncer-{self.name}")
        stop_wait = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                dirty = asyncio.ensure_future(self._dirty.wait())
                await asyncio.wait({dirty, stop_wait, syncer_task}, return_when=asyncio.FIRST_COMPLETED)
                dirty.cancel()
                if syncer_task.done():
                    syncer_task.result()  # a failed syncer fails the pipeline (and the service)
                    return
                if stop.is_set():
                    break
                pause = self._last_publish + self.interval - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                self._dirty.clear()
                self.publish()
        finally:
            stop_wait.cancel()
            syncer_task.cancel()
            await asyncio.gather(syncer_task, return_exceptions=True)
