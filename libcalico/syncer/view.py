"""A consumer that keeps the stream's current view as a dict: for tests, tools and the Typha client.

``ViewCallbacks`` applies every update to ``view`` (key → value) and records
the statuses in order, every batch, and anything that breaks the stream's
rules (an update of an unknown key, a new key already present, a deletion of
an absent key). ``wait_for`` waits on a condition with a deadline, woken by
each callback rather than by sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from libcalico.syncer.callbacks import JSONMap, SyncStatus, Update, UpdateType


class ViewCallbacks:
    """Syncer callbacks that keep a key → value view and check the stream's rules."""

    def __init__(self) -> None:
        self.view: dict[str, JSONMap] = {}
        self.revisions: dict[str, int] = {}
        self.statuses: list[SyncStatus] = []
        self.batches: list[list[Update]] = []
        self.anomalies: list[str] = []
        self.events: list[SyncStatus | Update] = []  # statuses and updates, in arrival order
        self._changed = asyncio.Event()

    @property
    def status(self) -> SyncStatus | None:
        """The last status received, or None before the first."""
        return self.statuses[-1] if self.statuses else None

    @property
    def updates(self) -> list[Update]:
        """Every update received, in order."""
        return [u for batch in self.batches for u in batch]

    def on_status(self, status: SyncStatus) -> None:
        """Record a status."""
        self.statuses.append(status)
        self.events.append(status)
        self._changed.set()

    def on_updates(self, updates: list[Update]) -> None:
        """Apply a batch to the view, noting any update that breaks the stream's rules."""
        if not updates:
            self.anomalies.append("empty batch")
        self.batches.append(list(updates))
        self.events.extend(updates)
        for u in updates:
            present = u.key in self.view
            if u.update_type is UpdateType.NEW and present:
                self.anomalies.append(f"new for present key {u.key}")
            elif u.update_type is UpdateType.UPDATED and not present:
                self.anomalies.append(f"updated for absent key {u.key}")
            elif u.update_type is UpdateType.DELETED and not present:
                self.anomalies.append(f"deleted for absent key {u.key}")
            elif u.update_type is UpdateType.UPDATED and self.view[u.key] == u.value:
                self.anomalies.append(f"unchanged value re-sent for {u.key}")
            if u.value is None:
                self.view.pop(u.key, None)
                self.revisions.pop(u.key, None)
            else:
                self.view[u.key] = u.value
                self.revisions[u.key] = u.revision
        self._changed.set()

    def updates_since(self, status: SyncStatus, count: int = 1) -> list[Update]:
        """The updates received after the ``count``-th time ``status`` was received."""
        seen = 0
        for i, item in enumerate(self.events):
            if item is status:
                seen += 1
                if seen == count:
                    return [u for u in self.events[i + 1:] if isinstance(u, Update)]
        return []

    def updates_for(self, key: str) -> list[Update]:
        """Every update received for one key, in order."""
        return [u for u in self.updates if u.key == key]

    async def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
        """Return once ``condition()`` holds; raise TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"condition not met within {timeout}s: {what or condition!r}; "
                    f"statuses={[s.value for s in self.statuses]} keys={sorted(self.view)}"
                )
            self._changed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._changed.wait()
            except TimeoutError:
                continue

    async def wait_for_status(self, status: SyncStatus, count: int = 1, timeout: float = 10.0) -> None:
        """Return once ``status`` has been received ``count`` times and is the current status."""
        await self.wait_for(
            lambda: self.statuses.count(status) >= count and self.status is status,
            timeout,
            f"status {status.value} x{count}",
        )
