"""One syncer type's pipeline: datastore syncer → validation → snapshot cache → waiting clients.

How it works::

    Syncer (list + watch, validation filter) ──callbacks──► Pipeline.on_updates / on_status
                                                              │ encode once into the cache
                                                              ▼
                          publisher: at most every ServerBatchIntervalSecs ── SnapshotCache.publish()
                                                              │ a new breadcrumb
                                                              ▼
                                    wake every client session waiting at the end of the chain

Publishing in batches bounds how often a thousand client sessions wake up,
whatever the datastore's update rate; the latency it adds is at most one
interval. The pipeline reports ready once its cache is in sync.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from libcalico.datastore.backend import Backend
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.runtime import Reporter
from libcalico.syncer import SyncStatus, Update, UpdateType, new_syncer
from services.typha.metrics import TyphaMetrics
from services.typha.snapcache import Breadcrumb, Shaper, SnapshotCache

log = structlog.get_logger(__name__)

_NODE_PREFIX = f"{RESOURCE_ROOT}nodes/"


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
        self._next: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._last_publish = 0.0
        self._skipped_seen = 0
        reporter.report(live=True, ready=False, detail="waiting for the datastore")
        for family in (metrics.connections_active, metrics.cache_size, metrics.updates_total,
                       metrics.updates_skipped, metrics.breadcrumb_seq, metrics.snapshot_send_secs,
                       metrics.client_latency_secs, metrics.ping_latency):
            family.labels(name)  # every syncer's series exists from the start

    # ------------------------------------------------------------ syncer callbacks

    def on_status(self, status: SyncStatus) -> None:
        """The syncer's status: recorded in the cache and published with the next breadcrumb."""
        self.cache.on_status(status)
        self._dirty.set()
        self.reporter.report(live=True, ready=status is SyncStatus.IN_SYNC, detail=status.value)

    def on_updates(self, updates: list[Update]) -> None:
        """A batch from the syncer: each update is encoded once into the cache."""
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
        """Where a new client starts: a recent built snapshot is shared by clients joining together."""
        return self.cache.join(now, reuse_within=self.batch_interval * 4)

    async def wait_next(self, crumb: Breadcrumb, timeout: float) -> None:
        """Return once ``crumb`` has a successor, or after ``timeout`` seconds."""
        if crumb.next is not None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._next), timeout)
        except TimeoutError:
            pass

    @property
    def in_sync(self) -> bool:
        return self.cache.status is SyncStatus.IN_SYNC

    # ------------------------------------------------------------ tasks

    def publish(self) -> Breadcrumb | None:
        """Publish what is queued now and wake the clients."""
        now = time.monotonic()
        crumb = self.cache.publish(now)
        self._last_publish = now
        if crumb is not None:
            waiters, self._next = self._next, asyncio.get_running_loop().create_future()
            waiters.set_result(None)
            self.metrics.breadcrumb_seq.labels(self.name).set(crumb.seq)
            self.metrics.cache_size.labels(self.name).set(self.cache.size)
        return crumb

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
                pause = self._last_publish + self.batch_interval - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                self._dirty.clear()
                self.publish()
        finally:
            stop_wait.cancel()
            syncer_task.cancel()
            await asyncio.gather(syncer_task, return_exceptions=True)
