"""Watches of the sqlite datastore: the event log replayed after a revision, woken by writes.

How it works::

    write through this backend ──notify()──┐
    poller: PRAGMA data_version changed ───┼──► wake every watch ──► each re-reads calico_events
      (another process wrote; every              after its last revision, _BATCH rows at a time
       ``poll_interval`` s while watched)

A watch from a revision older than the log's compacted point raises
:class:`~libcalico.errors.ResyncRequired`. The poller also deletes entries whose TTL has
passed (each with a DELETE event) once one is due; a read that notices an expired entry
asks for the same sweep in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from libcalico.datastore.backend import EventType, WatchEvent
from libcalico.datastore.sqlite_codec import decode, prefix_clause
from libcalico.datastore.sqlite_file import meta
from libcalico.errors import ResyncRequired, Unavailable

log = structlog.get_logger(__name__)

Read = Callable[[Callable[[sqlite3.Connection, float], Any]], Awaitable[Any]]

_BATCH = 512  # events read from the log at a time


class WatchHub:
    """The watches of one backend: their wake-ups, the poller for other processes' writes, the sweeper.

    ``read(fn)`` runs ``fn(conn, now)`` on the backend's read connection; ``ready()`` makes sure
    the file can be read; ``sweep()`` deletes expired entries; ``closed()`` tells whether the
    backend was closed.
    """

    def __init__(self, path: str, poll_interval: float, *, read: Read, ready: Callable[[], Awaitable[None]],
                 sweep: Callable[[], Awaitable[int]], closed: Callable[[], bool]) -> None:
        self.path, self.poll_interval = path, poll_interval
        self._read, self._ready, self._sweep, self._closed = read, ready, sweep, closed
        self._wake: asyncio.Event | None = None
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchEvent]:
        """Yield changes under ``prefix`` made after ``revision``, in revision order."""
        await self._ready()
        clause, params = prefix_clause(prefix)
        path = self.path

        def fetch(conn: sqlite3.Connection, now: float, after: int) -> tuple[list[WatchEvent], int, int]:
            conn.execute("BEGIN")
            try:
                compacted = meta(conn, "compacted")
                head = meta(conn, "revision")
                if after < compacted:
                    return [], compacted, head
                rows = conn.execute(
                    f"SELECT revision, key, CAST(value AS BLOB) FROM calico_events WHERE revision > ? AND {clause}"
                    " ORDER BY revision LIMIT ?", (after, *params, _BATCH)).fetchall()
            finally:
                conn.execute("COMMIT")
            events = [WatchEvent(EventType.DELETE, k, None, r) if v is None
                      else WatchEvent(EventType.PUT, k, decode(path, k, v), r) for r, k, v in rows]
            return events, compacted, head if len(rows) < _BATCH else rows[-1][0]

        self._watchers += 1
        self._start_poller()
        try:
            last = revision
            while not self._closed():
                wake = self._wake_event()
                try:
                    events, compacted, scanned = await self._read(functools.partial(fetch, after=last))
                except Unavailable:
                    if self._closed():
                        return  # closed under the watch: it ends, as after close() while waiting
                    raise
                if last < compacted:
                    raise ResyncRequired(last, compacted)
                for event in events:
                    yield event
                last = max(last, scanned)
                if not events:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await wake.wait()
        finally:
            self._watchers -= 1

    def notify(self) -> None:
        """Wake every watcher (they re-read the event log)."""
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def kick_sweep(self) -> None:
        """Delete the expired entries a read noticed, in the background."""

        async def root() -> None:
            try:
                await self._sweep()
            except Exception as exc:  # task root: a later writer or poller sweeps instead
                log.warning("sqlite sweep failed", path=self.path, error=str(exc))

        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(root(), name="sqlite-sweep")

    async def stop(self) -> None:
        """Wake the watchers (to end) and stop the poller and the sweeper."""
        self.notify()
        for task in (self._poller, self._sweeper):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _wake_event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def _start_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name=f"sqlite-poll {self.path}")

    async def _poll(self) -> None:
        """Wake watchers when another connection commits; sweep expired entries when one is due."""

        def probe(conn: sqlite3.Connection, now: float) -> tuple[int, float | None]:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            soonest = conn.execute("SELECT min(expires) FROM calico_kv WHERE expires IS NOT NULL").fetchone()[0]
            return int(version), soonest

        seen: int | None = None
        while self._watchers > 0 and not self._closed():
            try:
                version, soonest = await self._read(probe)
                if version != seen:
                    seen = version
                    self.notify()
                if soonest is not None and soonest <= time.time():
                    await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # task root: keep polling; the watchers' own reads report failures
                log.warning("sqlite poll failed", path=self.path, error=str(exc))
                self.notify()
                await asyncio.sleep(min(1.0, self.poll_interval * 20))
            await asyncio.sleep(self.poll_interval)
