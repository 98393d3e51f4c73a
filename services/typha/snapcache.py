"""Typha's snapshot cache: a chain of breadcrumbs, each a snapshot plus the deltas that made it.

How it works::

    syncer ──updates──► pending ──publish()──► crumb N ──next──► crumb N+1 ──next──► ...
                                                 ▲                  ▲
                                   new client joins here    slow client still here

Every update is encoded once, when it enters, into an :class:`Entry`: the
msgpack bytes of ``[key, value, revision]`` for the clients that see it in full
and, for per-node trimming, a second form for everyone else (or nothing, when
other nodes must not see it at all). A breadcrumb holds the entries published
together; clients walk the chain at their own pace, so a slow client never
holds up the rest. A new client joins at the newest breadcrumb and first takes
its snapshot, which is materialised lazily (once per breadcrumb that has
joiners) and encoded once per breadcrumb for every client that joins there.

Unchanged updates (same value as the cached one) are dropped before they reach
the chain. Nothing here does I/O or knows about asyncio: the server wakes its
client tasks when :meth:`SnapshotCache.publish` returns a new breadcrumb.
"""

from __future__ import annotations

import struct
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import msgpack

from libcalico.typha.protocol import Status, SyncStatus, encode

_HEADER = struct.Struct(">I")
_KVS_PREFIX = msgpack.packb({"type": "kvs"})[1:]  # the "type" pair, without the map header
SNAPSHOT_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Entry:
    """One update as it will be sent: to its owner node in full, to the others trimmed or not at all.

    ``owner`` None means every client sees ``full``.
    """

    key: str
    owner: str | None
    full: bytes
    trimmed: bytes | None
    value: Any = field(compare=False)

    @property
    def size(self) -> int:
        return len(self.full) + (len(self.trimmed) if self.trimmed is not None else 0)

    def for_node(self, node: str) -> bytes | None:
        """The bytes this node's client receives, or None when it must not see this entry."""
        if self.owner is None or self.owner == node:
            return self.full
        return self.trimmed


# A shaper decides, for one key/value, who owns it and what others see:
# returns (owner node or None, trimmed value for others or None to hide it).
Shaper = Callable[[str, dict[str, Any] | None], tuple[str | None, dict[str, Any] | None]]


def no_shaping(key: str, value: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """Everyone sees everything (Calico's own Typha)."""
    return None, None


def kvs_frame(elements: list[bytes]) -> bytes:
    """A ``kvs`` frame from already-encoded ``[key, value, revision]`` elements."""
    n = len(elements)
    if n < 16:
        arr = bytes([0x90 | n])
    elif n < 65536:
        arr = b"\xdc" + n.to_bytes(2, "big")
    else:
        arr = b"\xdd" + n.to_bytes(4, "big")
    body = b"\x82" + _KVS_PREFIX + b"\xa3kvs" + arr + b"".join(elements)
    return _HEADER.pack(len(body)) + body


def _chunks(items: list[bytes], size: int) -> Iterator[list[bytes]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class Breadcrumb:
    """One step in the chain: the entries published together, the status, and the way on.

    ``published`` is the time it was published (as passed in) and ``total_bytes`` the
    encoded size of every delta published up to and including it, so a client's
    backlog is ``latest.total_bytes - position.total_bytes``.
    """

    __slots__ = ("seq", "status", "status_changed", "deltas", "next", "published", "total_bytes",
                 "_cache", "_snapshot", "_generic_snapshot", "_owned_frames", "snapshot_keys",
                 "_delta_generic", "_delta_owners", "__weakref__")

    def __init__(
        self, seq: int, status: SyncStatus, status_changed: bool, deltas: list[Entry], cache: SnapshotCache,
        *, published: float = 0.0, total_bytes: int = 0,
    ) -> None:
        self.seq = seq
        self.status = status
        self.status_changed = status_changed
        self.deltas = deltas
        self.next: Breadcrumb | None = None
        self.published = published
        self.total_bytes = total_bytes
        self._cache: SnapshotCache | None = cache
        self._snapshot: dict[str, Entry] | None = None
        self._generic_snapshot: list[bytes] | None = None
        self._owned_frames: dict[str, list[bytes]] | None = None
        self.snapshot_keys = 0
        self._delta_generic: bytes | None = None
        self._delta_owners: set[str] | None = None

    # -- snapshot (for clients that join here)

    @property
    def has_snapshot(self) -> bool:
        """Whether this breadcrumb's snapshot frames are built (clients may still join here)."""
        return self._generic_snapshot is not None

    def snapshot_entries(self) -> dict[str, Entry]:
        """The full state at this breadcrumb; only available while it is the newest."""
        if self._snapshot is None:
            if self._cache is None or self._cache.latest is not self or self._cache._pending:
                raise RuntimeError("snapshot of a breadcrumb that is no longer the newest; use join()")
            self._snapshot = dict(self._cache._current)
        return self._snapshot

    def materialise(self) -> None:
        """Build the shared snapshot frames and every owner's full-form frames, once."""
        if self._generic_snapshot is not None:
            return
        entries = self.snapshot_entries()
        generic: list[bytes] = []
        owned: dict[str, list[bytes]] = {}
        for e in entries.values():
            if e.owner is None:
                generic.append(e.full)
                continue
            if e.trimmed is not None:
                generic.append(e.trimmed)
            owned.setdefault(e.owner, []).append(e.full)
        self._generic_snapshot = [kvs_frame(c) for c in _chunks(generic, SNAPSHOT_CHUNK)]
        self._owned_frames = {node: [kvs_frame(c) for c in _chunks(fulls, SNAPSHOT_CHUNK)]
                              for node, fulls in owned.items()}
        self.snapshot_keys = len(entries)
        self._snapshot = None  # the frames are all a joiner needs

    def snapshot_frames(self, node: str) -> list[bytes]:
        """Frames that give a client of ``node`` the state at this breadcrumb.

        Every client gets the same shared frames (everything in its trimmed or
        common form); a client whose node owns entries then gets their full forms,
        which replace the trimmed ones before the stream reports in-sync.
        """
        self.materialise()
        assert self._generic_snapshot is not None and self._owned_frames is not None
        return self._generic_snapshot + self._owned_frames.get(node, [])

    # -- deltas (for clients walking past)

    def delta_bytes(self, node: str) -> bytes:
        """The bytes of this breadcrumb's deltas (and status change) for a client of ``node``."""
        if self._delta_owners is None:
            self._delta_owners = {e.owner for e in self.deltas if e.owner is not None}
        if node not in self._delta_owners:
            if self._delta_generic is None:
                self._delta_generic = self._encode_for(None)
            return self._delta_generic
        return self._encode_for(node)

    def _encode_for(self, node: str | None) -> bytes:
        elements = []
        for e in self.deltas:
            b = e.full if e.owner is None else (e.full if e.owner == node else e.trimmed)
            if b is not None:
                elements.append(b)
        out = b"".join(kvs_frame(c) for c in _chunks(elements, SNAPSHOT_CHUNK))
        if self.status_changed:
            out += encode(Status(self.status))
        return out

    def release_snapshot(self) -> None:
        """Forget the cache (called when a newer breadcrumb is published); built frames stay."""
        self._cache = None
        self._snapshot = None


class SnapshotCache:
    """The current state of one syncer stream and the chain of breadcrumbs leading to it."""

    def __init__(self, shaper: Shaper = no_shaping) -> None:
        self._shaper = shaper
        self._current: dict[str, Entry] = {}
        self._owned: dict[str, set[str]] = {}
        self._pending: list[Entry] = []
        self._status = SyncStatus.WAIT_FOR_DATASTORE
        self._status_changed = False
        self.latest = Breadcrumb(0, self._status, False, [], self)
        # Weak: a built snapshot nobody walks from must not pin the chain after it.
        self._last_snapshot: weakref.ref[Breadcrumb] | None = None
        self.updates_total = 0
        self.updates_skipped = 0

    @property
    def size(self) -> int:
        """Number of keys in the current state."""
        return len(self._current)

    @property
    def status(self) -> SyncStatus:
        return self._status

    def on_status(self, status: SyncStatus) -> None:
        """Record a new sync status; it goes out with the next breadcrumb."""
        if status is not self._status:
            self._status = status
            self._status_changed = True

    def on_update(self, key: str, value: dict[str, Any] | None, revision: int) -> bool:
        """Queue one update; return False when it changes nothing and was dropped."""
        self.updates_total += 1
        old = self._current.get(key)
        if value is None:
            if old is None:
                self.updates_skipped += 1
                return False
        elif old is not None and old.value == value:
            self.updates_skipped += 1
            return False
        full = msgpack.packb([key, value, revision], use_bin_type=True)
        trimmed_bytes: bytes | None
        if value is None:
            # A deletion goes to whoever saw the key: its owner, and the others if they saw it trimmed.
            assert old is not None
            owner = old.owner
            trimmed_bytes = full if old.trimmed is not None else None
        else:
            owner, trimmed = self._shaper(key, value)
            if owner is None:
                trimmed_bytes = None
            else:
                trimmed_bytes = (msgpack.packb([key, trimmed, revision], use_bin_type=True)
                                 if trimmed is not None else None)
        entry = Entry(key, owner, full, trimmed_bytes, value)
        if old is not None and old.owner is not None and old.owner != owner:
            self._owned.get(old.owner, set()).discard(key)
        if value is None:
            del self._current[key]
            if owner is not None:
                self._owned.get(owner, set()).discard(key)
        else:
            self._current[key] = entry
            if owner is not None:
                self._owned.setdefault(owner, set()).add(key)
        self._pending.append(entry)
        return True

    def on_updates(self, updates: Iterable[tuple[str, dict[str, Any] | None, int]]) -> None:
        """Queue several updates."""
        for key, value, revision in updates:
            self.on_update(key, value, revision)

    def publish(self, now: float = 0.0) -> Breadcrumb | None:
        """Turn what was queued into a new breadcrumb (published at ``now``); None when nothing changed."""
        if not self._pending and not self._status_changed:
            return None
        size = sum(len(e.full) for e in self._pending)
        crumb = Breadcrumb(self.latest.seq + 1, self._status, self._status_changed, self._pending, self,
                           published=now, total_bytes=self.latest.total_bytes + size)
        self._pending = []
        self._status_changed = False
        old = self.latest
        old.next = crumb
        old.release_snapshot()
        self.latest = crumb
        return crumb

    def join(self, now: float = 0.0, *, reuse_within: float = 0.0) -> Breadcrumb:
        """The breadcrumb a new client starts from, its snapshot built.

        Anything queued is published first. With ``reuse_within`` > 0, a client joins
        at the newest breadcrumb whose snapshot is already built when that one was
        published at most ``reuse_within`` seconds ago, and then walks the deltas
        since: many clients arriving together share one snapshot instead of each
        pinning its own.
        """
        self.publish(now)
        reusable = self._last_snapshot() if self._last_snapshot is not None else None
        if reusable is not None and reuse_within > 0 and now - reusable.published <= reuse_within:
            return reusable
        self.latest.materialise()
        self._last_snapshot = weakref.ref(self.latest)
        return self.latest
