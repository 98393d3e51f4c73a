"""The key/value backend interface every datastore implements.

How it works::

    calicoctl / services ──► Client (typed resources, validation, metadata)
                                 │
                                 ▼
                             Backend  (this interface: keys → JSON maps)
                       ┌─────────┼──────────┐
                    sqlite     etcdv3    kubernetes

A backend stores JSON maps under Calico's datastore paths
(``/calico/resources/v3/projectcalico.org/<plural>/[<ns>/]<name>``,
``/calico/ipam/v2/...``, ``/calico/felix/v2/...``). Every stored value carries
the store-wide revision of its last modification; writes compare-and-swap on
it. ``watch`` streams changes strictly after a revision, in revision order, and
raises :class:`~libcalico.errors.ResyncRequired` when that history is gone.

Backends translate their native errors into :mod:`libcalico.errors` at the edge.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

JSONMap = dict[str, Any]


@dataclass(frozen=True, slots=True)
class KV:
    """One stored entry: its key, its decoded value and the revision of its last change."""

    key: str
    value: JSONMap
    revision: int


class EventType(enum.Enum):
    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """A change seen by a watch. ``value`` is None for a deletion; ``revision`` is the change's."""

    type: EventType
    key: str
    value: JSONMap | None
    revision: int


@dataclass(frozen=True, slots=True)
class ListResult:
    """Entries under a prefix, and the store revision the listing is consistent with.

    A watch started from ``revision`` sees every change made after the listing.
    """

    items: list[KV]
    revision: int


class Backend(abc.ABC):
    """Keys to JSON maps with revision compare-and-swap, TTLs and watches."""

    name: str = "abstract"

    @abc.abstractmethod
    async def get(self, key: str) -> KV:
        """Return the entry at ``key``; raise NotFound."""

    @abc.abstractmethod
    async def list(self, prefix: str) -> ListResult:
        """Return every entry whose key starts with ``prefix``, in key order."""

    @abc.abstractmethod
    async def create(self, key: str, value: JSONMap, *, ttl: float | None = None) -> KV:
        """Store a new entry; raise AlreadyExists. ``ttl`` seconds makes it expire."""

    @abc.abstractmethod
    async def update(
        self, key: str, value: JSONMap, *, revision: int | None = None, ttl: float | None = None
    ) -> KV:
        """Replace an entry; raise NotFound, or RevisionConflict when ``revision`` is given and stale."""

    @abc.abstractmethod
    async def delete(self, key: str, *, revision: int | None = None) -> KV:
        """Remove an entry and return what it held; raise NotFound or RevisionConflict."""

    async def apply(self, key: str, value: JSONMap, *, ttl: float | None = None) -> KV:
        """Create or unconditionally replace an entry."""
        from libcalico.errors import AlreadyExists, NotFound

        for _ in range(16):
            try:
                return await self.update(key, value, ttl=ttl)
            except NotFound:
                pass
            try:
                return await self.create(key, value, ttl=ttl)
            except AlreadyExists:
                continue
        raise AlreadyExists(key)

    @abc.abstractmethod
    def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchEvent]:
        """Yield changes under ``prefix`` made after ``revision``, in revision order.

        Raises ResyncRequired (on the first iteration or later) when changes after
        ``revision`` can no longer be replayed; Unavailable when the store is lost.
        """

    @abc.abstractmethod
    async def current_revision(self) -> int:
        """The store-wide revision now."""

    async def close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections and background tasks."""

    async def __aenter__(self) -> Backend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
