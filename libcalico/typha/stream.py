"""Turning Typha's snapshot + deltas into the syncer callback stream, across reconnects, without I/O.

How it works::

    connected()        ──► RESYNC_IN_PROGRESS; start buffering the snapshot
    kvs (snapshot)     ──► buffered (a node's own full forms replace the trimmed ones)
    first status       ──► the snapshot is complete: emit only what changed against what
                           the consumer already has; remember which keys the server has
    kvs (deltas)       ──► NEW / UPDATED / DELETED against what the consumer has
    status in-sync     ──► first DELETED for every key the consumer still has but the
                           server no longer does (it vanished while we were away), then IN_SYNC
    disconnected()     ──► a half-received snapshot is dropped; the next connection starts over

The output is exactly what a direct datastore syncer gives the same consumer:
``wait-for-datastore`` first, ``resync-in-progress`` before a snapshot's first
update, NEW only for unknown keys, UPDATED/DELETED only for known ones, never
an unchanged value twice.
"""

from __future__ import annotations

from typing import Any

from libcalico.syncer.callbacks import SyncStatus, Update, UpdateType
from libcalico.typha.protocol import KVs, Message, Status

Output = SyncStatus | Update


class StreamAssembler:
    """The consumer-facing state of one Typha client: what it was told, and the resync in progress."""

    def __init__(self) -> None:
        self.emitted: dict[str, dict[str, Any]] = {}
        self.status: SyncStatus | None = None
        self._snapshot: dict[str, tuple[dict[str, Any] | None, int]] | None = None
        self._seen: set[str] | None = None
        self._revision = 0

    @property
    def resyncing(self) -> bool:
        """Whether a snapshot is being received or its deletions are still pending."""
        return self._snapshot is not None or self._seen is not None

    def start(self) -> list[Output]:
        """The first output, before any connection: waiting for the datastore."""
        out: list[Output] = []
        self._set(SyncStatus.WAIT_FOR_DATASTORE, out)
        return out

    def connected(self) -> list[Output]:
        """A server accepted our hello: its snapshot follows."""
        out: list[Output] = []
        self._snapshot = {}
        self._seen = None
        self._set(SyncStatus.RESYNC_IN_PROGRESS, out)
        return out

    def disconnected(self) -> None:
        """The connection ended; anything half-received is forgotten."""
        self._snapshot = None
        self._seen = None

    def on_message(self, msg: Message) -> list[Output]:
        """Apply one server message; return the statuses and updates to deliver, in order."""
        out: list[Output] = []
        if isinstance(msg, KVs):
            if self._snapshot is not None:
                for u in msg.kvs:
                    self._snapshot[u.key] = (u.value, u.revision)
                    self._revision = max(self._revision, u.revision)
            else:
                for u in msg.kvs:
                    self._apply(u.key, u.value, u.revision, out)
        elif isinstance(msg, Status):
            if self._snapshot is not None:
                snapshot, self._snapshot = self._snapshot, None
                self._seen = set()
                for key, (value, revision) in snapshot.items():
                    self._apply(key, value, revision, out)
            if msg.status is SyncStatus.IN_SYNC and self._seen is not None:
                seen, self._seen = self._seen, None
                for key in sorted(set(self.emitted) - seen):
                    del self.emitted[key]
                    out.append(Update(key, None, self._revision, UpdateType.DELETED))
            self._set(msg.status, out)
        return out

    def _apply(self, key: str, value: dict[str, Any] | None, revision: int, out: list[Output]) -> None:
        self._revision = max(self._revision, revision)
        if value is None:
            if self._seen is not None:
                self._seen.discard(key)
            if self.emitted.pop(key, None) is not None:
                out.append(Update(key, None, revision, UpdateType.DELETED))
            return
        if self._seen is not None:
            self._seen.add(key)
        old = self.emitted.get(key)
        if old is None:
            self.emitted[key] = value
            out.append(Update(key, value, revision, UpdateType.NEW))
        elif old != value:
            self.emitted[key] = value
            out.append(Update(key, value, revision, UpdateType.UPDATED))

    def _set(self, status: SyncStatus, out: list[Output]) -> None:
        if self.status is not status:
            self.status = status
            out.append(status)
