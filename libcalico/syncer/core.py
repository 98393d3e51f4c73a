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

Per entry of a listing the core does as little as it can (a snapshot of
100,000 entries passes through here): the key's type is found by its parent
path (memoised per watcher where the type's key pattern makes that exact),
a first listing keeps no "seen" set (everything it emits is what it saw), and
updates are built without re-checking what the core already guarantees.
"""

from __future__ import annotations

import enum
import gc
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from operator import attrgetter

from libcalico.datastore.backend import KV, EventType, WatchEvent
from libcalico.syncer.callbacks import JSONMap, SyncStatus, Update, UpdateType, trusted_update
from libcalico.syncer.catalog import ResourceType, SyncerSpec
from libcalico.syncer.validation import ValidationFilter

Output = SyncStatus | Update
Row = tuple[str, JSONMap, int]  # key, value, revision: a listed entry without its KV wrapper

_NEW, _UPDATED = UpdateType.NEW, UpdateType.UPDATED
_KV_FIELDS = attrgetter("key", "value", "revision")
_SEGMENT = "[^/]+"
_ROUTE_LIMIT = 4096


class Loss(enum.Enum):
    """Why a watcher stopped: the store is unreachable, or its history is gone."""

    UNAVAILABLE = "unavailable"
    RESYNC = "resync"


def _by_parent(rtype: ResourceType) -> bool:
    """Whether every key ``<parent>/<name>`` (any non-empty name) matches ``rtype`` once one does."""
    head = re.escape(rtype.prefix)
    return rtype.pattern.flags == re.UNICODE and rtype.pattern.pattern in (
        head + _SEGMENT, f"{head}{_SEGMENT}/{_SEGMENT}")


@dataclass(slots=True)
class _Watcher:
    types: tuple[ResourceType, ...]
    synced: bool = False
    down: bool = True  # has not reached the store since it last lost it
    emitted: dict[str, JSONMap] = field(default_factory=dict)
    seen: set[str] | None = None  # keys present in the resync in progress, None when not resyncing (or fresh)
    fresh: bool = False  # resyncing with nothing emitted before: the resync deletes nothing
    routes: dict[str, ResourceType] = field(default_factory=dict)  # parent path -> the only type it can hold

    def type_of(self, key: str) -> ResourceType | None:
        for rtype in self.types:
            if rtype.matches(key):
                return rtype
        return None

    def route(self, key: str, parent: str, name: str) -> ResourceType | None:
        """The type of ``key`` (first match, as ``type_of``), remembering its parent path when that is exact."""
        rtype = self.type_of(key)
        if rtype is not None and name and _by_parent(rtype):
            below = parent + "/"
            if not any(t is not rtype and (below.startswith(t.prefix) or t.prefix.startswith(below))
                       for t in self.types):  # no other type can hold a key under this parent
                if len(self.routes) >= _ROUTE_LIMIT:
                    self.routes.clear()
                self.routes[parent] = rtype
        return rtype

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
        w.fresh = not w.emitted
        w.seen = None if w.fresh else set()
        self._set(SyncStatus.RESYNC_IN_PROGRESS, out)
        return out

    def put(self, wid: int, key: str, value: JSONMap, revision: int) -> list[Output]:
        """One key's current value, from a listing or a watch event."""
        out: list[Output] = []
        self._rows(self._watchers[wid], ((key, value, revision),), out)
        return out

    def page(self, wid: int, items: Iterable[KV]) -> list[Output]:
        """Several keys' current values (one page of a listing), in order."""
        return self.rows(wid, map(_KV_FIELDS, items))

    def rows(self, wid: int, rows: Iterable[Row]) -> list[Output]:
        """Several keys' current values as ``(key, value, revision)`` rows, in order.

        The cyclic garbage collector is paused meanwhile: every update made here
        survives, and collecting them generation by generation as a snapshot of
        100,000 entries builds up costs more than handling them.
        """
        out: list[Output] = []
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            self._rows(self._watchers[wid], rows, out)
        finally:
            if paused:
                gc.enable()
        return out

    def _rows(self, w: _Watcher, rows: Iterable[Row], out: list[Output]) -> None:
        routes, emitted, seen = w.routes, w.emitted, w.seen
        accepts = self.validation.accepts if self.validation is not None else None
        append = out.append
        for key, value, revision in rows:
            parent, _, name = key.rpartition("/")
            rtype = routes.get(parent)
            if rtype is None or not name:
                rtype = w.route(key, parent, name)
                if rtype is None:
                    continue
            old = emitted.get(key)
            if old is not None and (old is value or old == value):
                # Unchanged: validated and sent already (validation depends on the value alone).
                if seen is not None:
                    seen.add(key)
                continue
            if accepts is not None and not accepts(rtype, key, value, revision):
                if old is not None:
                    del emitted[key]
                    append(trusted_update(key, None, revision, UpdateType.DELETED))
                continue
            if seen is not None:
                seen.add(key)
            emitted[key] = value
            append(trusted_update(key, value, revision, _NEW if old is None else _UPDATED))

    def delete(self, wid: int, key: str, revision: int) -> list[Output]:
        """One key was deleted."""
        out: list[Output] = []
        w = self._watchers[wid]
        parent, _, name = key.rpartition("/")
        if w.routes.get(parent) is None and w.route(key, parent, name) is None:
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
        if not w.fresh:  # a fresh resync emitted exactly what it saw
            seen = w.seen if w.seen is not None else set()
            for key in sorted(set(w.emitted) - seen):
                self._remove(w, key, revision, out)
                if self.validation is not None:
                    self.validation.forget(key)
        w.seen = None
        w.fresh = False
        w.synced = True
        if self.in_sync:
            self._set(SyncStatus.IN_SYNC, out)
        return out

    def listed(self, wid: int, items: Iterable[KV], revision: int) -> list[Output]:
        """A whole listing at once: begin_resync, put each item, end_resync."""
        return self.listed_rows(wid, map(_KV_FIELDS, items), revision)

    def listed_rows(self, wid: int, rows: Iterable[Row], revision: int) -> list[Output]:
        """A whole listing of ``(key, value, revision)`` rows at once: begin_resync, rows, end_resync."""
        out = self.begin_resync(wid)
        out.extend(self.rows(wid, rows))
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
        w.fresh = False
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
