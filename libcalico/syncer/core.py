"""The syncer's I/O-free core: listings and watch events in, statuses and updates out.

How it works::

    watcher 0 ──listed/events/lost──┐
    watcher 1 ──listed/events/lost──┼──► SyncerCore ──► [status | update, …] ──► callbacks
    watcher n ──listed/events/lost──┘     │
                                          ├─ filter: the key's ResourceType in the SyncerSpec
                                          ├─ validation: invalid value ⇒ treated as deleted
                                          └─ per-watcher cache of emitted values:
                                             unchanged value ⇒ nothing; resync ⇒ deletions
                                             for keys the new listing no longer has

Status: ``wait-for-datastore`` at start and whenever a watcher that had
reached the store loses it (its failed retries are not news);
``resync-in-progress`` before the first update of any (re)listing and
when a watcher must resync; ``in-sync`` once every watcher has listed and its
updates have been emitted. A resync is streamable (``begin_resync`` → ``put``
… → ``end_resync``) so a client that receives a snapshot in pieces (Typha's)
gets the same deletions as one that lists.
"""

from __future__ import annotations

import enum
import gc
from collections.abc import Iterable
from dataclasses import dataclass, field

from libcalico.datastore.backend import KV, EventType, WatchEvent
from libcalico.syncer.callbacks import JSONMap, SyncStatus, Update, UpdateType
from libcalico.syncer.catalog import ResourceType, SyncerSpec
from libcalico.syncer.validation import ValidationFilter

Output = SyncStatus | Update


class Loss(enum.Enum):
    """Why a watcher stopped: the store is unreachable, or its history is gone."""

    UNAVAILABLE = "unavailable"
    RESYNC = "resync"


@dataclass(slots=True)
class _Watcher:
    types: tuple[ResourceType, ...]
    synced: bool = False
    down: bool = True  # has not reached the store since it last lost it
    emitted: dict[str, JSONMap] = field(default_factory=dict)
    seen: set[str] | None = None  # keys present in the resync in progress, None when not resyncing

    def type_of(self, key: str) -> ResourceType | None:
        for rtype in self.types:
            if rtype.matches(key):
                return rtype
        return None


class SyncerCore:
    """Turns listings and watch events of several watchers into one deduplicated, validated stream."""

    def __init__(
        self,
        spec: SyncerSpec,
        watcher_types: Iterable[Iterable[ResourceType]],
        validation: ValidationFilter | None = None,
    ) -> None:
        self.spec = spec
        self._watchers = [_Watcher(tuple(types)) for types in watcher_types]
        if not self._watchers:
            raise ValueError(f"syncer {spec.name}: at least one watcher is needed")
        self.validation = validation
        self.status: SyncStatus | None = None

    def _set(self, status: SyncStatus, out: list[Output]) -> None:
        if self.status is not status:
            self.status = status
            out.append(status)

    def start(self) -> list[Output]:
        """The first output: waiting for the datastore."""
        out: list[Output] = []
        self._set(SyncStatus.WAIT_FOR_DATASTORE, out)
        return out

    @property
    def watches_down(self) -> int:
        """How many watchers have lost the store (or never reached it) and not listed since."""
        return sum(w.down for w in self._watchers)

    @property
    def in_sync(self) -> bool:
        """Whether every watcher has listed since it last lost the store."""
        return all(w.synced for w in self._watchers)

    def begin_resync(self, wid: int) -> list[Output]:
        """A watcher starts delivering a complete listing of its keys."""
        out: list[Output] = []
        w = self._watchers[wid]
        w.synced = False
        w.down = False
        w.seen = set()
        self._set(SyncStatus.RESYNC_IN_PROGRESS, out)
        return out

    def put(self, wid: int, key: str, value: JSONMap, revision: int) -> list[Output]:
        """One key's current value, from a listing or a watch event."""
        out: list[Output] = []
        self._put(self._watchers[wid], key, value, revision, out)
        return out

    def page(self, wid: int, items: Iterable[KV]) -> list[Output]:
        """Several keys' current values (one page of a listing), in order.

        The cyclic garbage collector is paused meanwhile: every update made here
        survives, and collecting them generation by generation as a snapshot of
        100,000 entries builds up costs more than handling them.
        """
        out: list[Output] = []
        w = self._watchers[wid]
        put = self._put
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            for kv in items:
                put(w, kv.key, kv.value, kv.revision, out)
        finally:
            if paused:
                gc.enable()
        return out

    def _put(self, w: _Watcher, key: str, value: JSONMap, revision: int, out: list[Output]) -> None:
        rtype = w.type_of(key)
        if rtype is None:
            return
        old = w.emitted.get(key)
        if old is not None and (old is value or old == value):
            # Unchanged: validated and sent already (validation depends on the value alone).
            if w.seen is not None:
                w.seen.add(key)
            return
        if self.validation is not None and not self.validation.accepts(rtype, key, value, revision):
            self._remove(w, key, revision, out)
            return
        if w.seen is not None:
            w.seen.add(key)
        w.emitted[key] = value
        out.append(Update(key, value, revision, UpdateType.NEW if old is None else UpdateType.UPDATED))

    def delete(self, wid: int, key: str, revision: int) -> list[Output]:
        """One key was deleted."""
        out: list[Output] = []
        w = self._watchers[wid]
        if w.type_of(key) is None:
            return out
        if w.seen is not None:
            w.seen.discard(key)
        self._remove(w, key, revision, out)
        if self.validation is not None:
            self.validation.forget(key)
        return out

    def end_resync(self, wid: int, revision: int) -> list[Output]:
        """The listing is complete at ``revision``: delete what it no longer has; maybe in sync."""
        out: list[Output] = []
        w = self._watchers[wid]
        seen = w.seen if w.seen is not None else set()
        for key in sorted(set(w.emitted) - seen):
            self._remove(w, key, revision, out)
            if self.validation is not None:
                self.validation.forget(key)
        w.seen = None
        w.synced = True
        if self.in_sync:
            self._set(SyncStatus.IN_SYNC, out)
        return out

    def listed(self, wid: int, items: Iterable[KV], revision: int) -> list[Output]:
        """A whole listing at once: begin_resync, put each item, end_resync."""
        out = self.begin_resync(wid)
        out.extend(self.page(wid, items))
        out.extend(self.end_resync(wid, revision))
        return out

    def events(self, wid: int, events: Iterable[WatchEvent]) -> list[Output]:
        """Watch events, in revision order."""
        out: list[Output] = []
        for ev in events:
            if ev.type is EventType.DELETE or ev.value is None:
                out.extend(self.delete(wid, ev.key, ev.revision))
            else:
                out.extend(self.put(wid, ev.key, ev.value, ev.revision))
        return out

    def lost(self, wid: int, why: Loss) -> list[Output]:
        """A watcher lost the store or its history; it will list again."""
        out: list[Output] = []
        w = self._watchers[wid]
        w.synced = False
        w.seen = None
        if why is Loss.UNAVAILABLE:
            if not w.down:  # news only when it had reached the store: retries do not flap the status
                w.down = True
                self._set(SyncStatus.WAIT_FOR_DATASTORE, out)
        elif self.status is SyncStatus.IN_SYNC:
            self._set(SyncStatus.RESYNC_IN_PROGRESS, out)
        return out

    def view(self) -> dict[str, JSONMap]:
        """Every key currently emitted, merged over the watchers."""
        merged: dict[str, JSONMap] = {}
        for w in self._watchers:
            merged.update(w.emitted)
        return merged

    @staticmethod
    def _remove(w: _Watcher, key: str, revision: int, out: list[Output]) -> None:
        if w.emitted.pop(key, None) is not None:
            out.append(Update(key, None, revision, UpdateType.DELETED))
