"""The asyncio driver: list+watch tasks feeding a :class:`SyncerCore`, and the callbacks it drives.

How it works::

    watch task (one per WatchPlan)            main task
    ───────────────────────────────           ─────────────────────────────────
    list(prefix) ─► Listed ──────┐            core.start()  → on_status(wait-for-datastore)
    or list_rows(prefix) ─►      │
      Begin, Rows, Rows…, End ───┤
    or list_pages(prefix) ─►     │
      Begin, Page, Page…, End ───┤
    watch(prefix, rev) ─► Events ┼► queue ──► core.listed/rows/page/events/lost → batch
    ResyncRequired / Unavailable ┘                → on_updates / on_status
      └─ Lost; jittered backoff, then list again

A bounded queue between the two gives backpressure: a slow consumer slows the
watch tasks rather than growing memory. A listing is handed over as it is read
(``list_pages``, etcd) or, once read whole (``list_rows``, sqlite), in pieces:
``resync-in-progress`` goes out on its own as soon as the store has answered,
then the entries in batches of at most ``_MAX_BATCH`` (each validated just
before it is delivered; the loop runs other tasks between them), then
``in-sync``. A listing's entries all survive, so the cyclic garbage collector is
paused from the start of the listing (``list_rows``) or from its first page
(``list_pages``) until it has been delivered. Watch tasks are task roots: any
failure is logged, reported as a loss and retried after a backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any

import structlog

from libcalico.collector import collector_paused
from libcalico.datastore.backend import KV, Backend, WatchEvent
from libcalico.errors import DatastoreError, ResyncRequired
from libcalico.syncer.backoff import RetryPolicy
from libcalico.syncer.callbacks import (
    SyncerCallbacks,
    SyncStatus,
    Update,
    deliver_status,
    deliver_updates,
)
from libcalico.syncer.catalog import SyncerSpec, syncer_spec
from libcalico.syncer.core import Loss, Output, Row, SyncerCore
from libcalico.syncer.plan import WatchMode, WatchPlan, default_watch_mode, plan_watches
from libcalico.syncer.validation import ValidationFilter

log = structlog.get_logger(__name__)

_QUEUE_SIZE = 1024
_MAX_BATCH = 1000  # updates (or other messages) handled per delivery to the callbacks
_PAGE_CHUNK = 250  # listed entries per message: the main task yields to the loop between them


@dataclass(frozen=True, slots=True)
class _Listed:
    wid: int
    items: list[KV]
    revision: int


@dataclass(frozen=True, slots=True)
class _Begin:
    wid: int
    pause: contextlib.ExitStack | None = None  # a collector pause taken before the listing: the main task's now


@dataclass(frozen=True, slots=True)
class _Page:
    wid: int
    items: list[KV]


@dataclass(frozen=True, slots=True)
class _Rows:
    wid: int
    rows: list[Row]


@dataclass(frozen=True, slots=True)
class _End:
    wid: int
    revision: int


@dataclass(frozen=True, slots=True)
class _Event:
    wid: int
    event: WatchEvent


@dataclass(frozen=True, slots=True)
class _Lost:
    wid: int
    why: Loss


_Message = _Listed | _Begin | _Page | _Rows | _End | _Event | _Lost


class Syncer:
    """One syncer type's stream from a backend to a callbacks object; ``run()`` until cancelled."""

    def __init__(
        self,
        backend: Backend,
        spec: SyncerSpec,
        callbacks: SyncerCallbacks,
        *,
        mode: WatchMode | None = None,
        retry: RetryPolicy | None = None,
        validate: bool = True,
    ) -> None:
        self.backend = backend
        self.spec = spec
        self.callbacks = callbacks
        self.mode = mode or default_watch_mode(backend.name)
        self.retry = retry or RetryPolicy()
        self.plans: list[WatchPlan] = plan_watches(spec, self.mode)
        self.validation = ValidationFilter(spec.name) if validate else None
        self.core = SyncerCore(spec, (p.types for p in self.plans), self.validation)
        self._queue: asyncio.Queue[_Message] = asyncio.Queue(_QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self.resyncs = 0  # listings started after the first one of each watch
        self.listings = [0] * len(self.plans)  # complete listings handled, per watch
        self._collector_pauses: dict[int, contextlib.ExitStack] = {}
        self._ended: list[int] = []

    @property
    def status(self) -> SyncStatus | None:
        """The last status sent to the callbacks."""
        return self.core.status

    async def run(self) -> None:
        """Stream until cancelled; a callback's exception stops the watches and is raised from here."""
        log.info("syncer starting", syncer=self.spec.name, mode=self.mode.value,
                 watches=[p.prefix for p in self.plans])
        try:
            async with asyncio.TaskGroup() as tg:
                for wid, plan in enumerate(self.plans):
                    tg.create_task(self._watch_root(wid, plan), name=f"syncer-{self.spec.name}-watch-{wid}")
                tg.create_task(self._main(), name=f"syncer-{self.spec.name}-main")
        except BaseExceptionGroup as group:  # only the main task can fail: the watch tasks never do
            raise group.exceptions[0] from None
        finally:
            while not self._queue.empty():  # listings never handled must not keep the collector paused
                msg = self._queue.get_nowait()
                if isinstance(msg, _Begin) and msg.pause is not None:
                    msg.pause.close()

    def start(self) -> asyncio.Task[None]:
        """Run in a background task; ``stop()`` ends it."""
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=f"syncer-{self.spec.name}")
        return self._task

    async def stop(self, timeout: float = 10.0) -> None:
        """Cancel a started syncer and wait (at most ``timeout`` seconds) for it to finish.

        Raises the callback error that ended the run, if one did.
        """
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.wait({task}, timeout=timeout)
        if not task.done():
            log.error("syncer stop timed out", syncer=self.spec.name, timeout=timeout)
            return
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def __aenter__(self) -> Syncer:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ------------------------------------------------------------ main task

    async def _main(self) -> None:
        try:
            await self._deliver(self.core.start())
            while True:
                msg = await self._queue.get()
                outputs = self._handle(msg)
                work = _work(msg)
                while work < _MAX_BATCH:
                    try:
                        msg = self._queue.get_nowait()
                    except asyncio.QueueEmpty:
                        break
                    outputs.extend(self._handle(msg))
                    work += _work(msg)
                await self._deliver(outputs)
                for wid in self._ended:
                    self._collector_pauses.pop(wid).close()
                self._ended.clear()
                if not self._queue.empty():
                    await asyncio.sleep(0)  # a get() that need not wait never yields: let the watches run
        finally:
            for pause in self._collector_pauses.values():
                pause.close()
            self._collector_pauses.clear()

    def _handle(self, msg: _Message) -> list[Output]:
        if isinstance(msg, _Event):
            return self.core.events(msg.wid, (msg.event,))
        if isinstance(msg, _Rows):
            return self.core.rows(msg.wid, msg.rows)
        if isinstance(msg, _Page):
            return self.core.page(msg.wid, msg.items)
        if isinstance(msg, _Begin):
            # The listing's entries all survive: no collector passes over them until it has been
            # delivered (see libcalico.collector).
            pause = msg.pause
            if msg.wid in self._collector_pauses:
                if pause is not None:
                    pause.close()
            else:
                if pause is None:
                    pause = _pause_collector()
                self._collector_pauses[msg.wid] = pause
            return self.core.begin_resync(msg.wid)
        if isinstance(msg, _End | _Listed):
            self.listings[msg.wid] += 1
            if isinstance(msg, _End):
                self._end_pause(msg.wid)
                return self.core.end_resync(msg.wid, msg.revision)
            return self.core.listed(msg.wid, msg.items, msg.revision)
        self._end_pause(msg.wid)
        return self.core.lost(msg.wid, msg.why)

    def _end_pause(self, wid: int) -> None:
        if wid in self._collector_pauses and wid not in self._ended:
            self._ended.append(wid)

    async def _deliver(self, outputs: list[Output]) -> None:
        batch: list[Update] = []
        for item in outputs:
            if isinstance(item, Update):
                batch.append(item)
                continue
            await deliver_updates(self.callbacks, batch)
            batch = []
            log.info("syncer status", syncer=self.spec.name, status=item.value)
            await deliver_status(self.callbacks, item)
        await deliver_updates(self.callbacks, batch)

    # ------------------------------------------------------------ watch tasks

    async def _watch_root(self, wid: int, plan: WatchPlan) -> None:
        failures = 0
        revision: int | None = None
        listings = 0
        while True:
            if failures:
                await asyncio.sleep(self.retry.delay(failures))
            why: Loss | None = None
            detail: dict[str, Any] = {}
            watching_since = time.monotonic()
            try:
                if revision is None:
                    listings += 1
                    if listings > 1:
                        self.resyncs += 1
                    revision = await self._list(wid, plan)
                watching_since = time.monotonic()
                stream = self.backend.watch(plan.prefix, revision)
                try:
                    async for event in stream:
                        await self._queue.put(_Event(wid, event))
                        revision = event.revision
                        failures = 0
                finally:
                    await self._close_stream(stream, plan)
                detail = {"reason": "watch ended"}
            except ResyncRequired as exc:
                why, detail = Loss.RESYNC, {"error": str(exc)}
            except DatastoreError as exc:
                why, detail = Loss.UNAVAILABLE, {"error": str(exc), "error_type": type(exc).__name__}
            except Exception as exc:  # task root: never let one bad turn kill the stream
                log.exception("syncer watch failed", syncer=self.spec.name, prefix=plan.prefix)
                why, detail = Loss.UNAVAILABLE, {"error": repr(exc)}
            if time.monotonic() - watching_since > self.retry.maximum:
                failures = 0  # it had been healthy for a while: start the backoff over
            failures += 1
            if why is not None:
                revision = None
                await self._queue.put(_Lost(wid, why))
            log.info("syncer watch restarting", syncer=self.spec.name, prefix=plan.prefix,
                     loss=why.value if why else None, failures=failures, **detail)

    async def _list(self, wid: int, plan: WatchPlan) -> int:
        """List the watch's prefix into the queue; return the listing's revision.

        A backend with ``list_pages`` (etcd) streams: each page goes to the main task
        while the next is fetched, so validation overlaps the datastore's reading.
        """
        list_rows = getattr(self.backend, "list_rows", None)
        if list_rows is not None:
            # sqlite: the listing as plain rows (no KV object per entry), read with the collector paused
            # until the main task has delivered it (see libcalico.collector); handed over in
            # pieces, so resync-in-progress goes out as soon as it is read and each batch is checked and
            # delivered in its own turn of the loop (the whole snapshot of 11,300 entries in one message
            # held the status back, and the loop, for the ~40 ms its validation takes).
            pause = _pause_collector()
            try:
                rows, listed_at = await list_rows(plan.prefix)
                await self._queue.put(_Begin(wid, pause))  # the pause is the main task's from here on
            except BaseException:
                pause.close()
                raise
            for start in range(0, len(rows), _MAX_BATCH):
                await self._queue.put(_Rows(wid, rows[start:start + _MAX_BATCH]))
            await self._queue.put(_End(wid, listed_at))
            return int(listed_at)
        pages = getattr(self.backend, "list_pages", None)
        if pages is None:
            listing = await self.backend.list(plan.prefix)
            await self._queue.put(_Listed(wid, listing.items, listing.revision))
            return listing.revision
        revision: int | None = None
        async with contextlib.aclosing(pages(plan.prefix)) as stream:
            async for page in stream:
                if revision is None:  # the store answered: the resync begins
                    await self._queue.put(_Begin(wid))
                revision = page.revision
                items = page.items
                for start in range(0, len(items), _PAGE_CHUNK):
                    await self._queue.put(_Page(wid, items[start:start + _PAGE_CHUNK]))
        if revision is None:
            raise DatastoreError(f"{self.backend.name} list_pages of {plan.prefix} yielded no page")
        await self._queue.put(_End(wid, revision))
        return revision

    async def _close_stream(self, stream: object, plan: WatchPlan) -> None:
        """Close a watch; a failure to close is logged, never raised (it must not mask a cancellation)."""
        aclose = getattr(stream, "aclose", None)
        if aclose is None:
            return
        try:
            await aclose()
        except Exception as exc:  # part of the watch task root: cleanup must not replace the real outcome
            log.warning("syncer watch close failed", syncer=self.spec.name, prefix=plan.prefix, error=repr(exc))


def _pause_collector() -> contextlib.ExitStack:
    """A collector pause for one listing (see libcalico.collector), to be closed by whoever delivers it."""
    pause = contextlib.ExitStack()
    pause.enter_context(collector_paused())
    return pause


def _work(msg: _Message) -> int:
    """How much a message weighs against the batch limit: its entries, or one; a resync's start fills a batch.

    ``resync-in-progress`` is thus delivered on its own, before any of the listing's entries are handled.
    """
    if isinstance(msg, _Rows):
        return len(msg.rows)
    if isinstance(msg, _Page | _Listed):
        return len(msg.items)
    if isinstance(msg, _Begin):
        return _MAX_BATCH
    return 1


def new_syncer(
    name: str,
    backend: Backend,
    callbacks: SyncerCallbacks,
    *,
    node: str | None = None,
    mode: WatchMode | None = None,
    retry: RetryPolicy | None = None,
) -> Syncer:
    """A syncer of type ``felix``, ``bgp`` or ``tunnel-ip-allocation`` (``node`` narrows the latter two)."""
    return Syncer(backend, syncer_spec(name, node), callbacks, mode=mode, retry=retry)
