"""The transport-neutral syncer callback API: statuses and key/value updates.

A syncer (straight from the datastore, or the Typha client) drives an object
that has ``on_status`` and ``on_updates``. The values are the stored JSON maps
and are shared with the syncer's own cache: consumers must treat them as
read-only.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

JSONMap = dict[str, Any]


class SyncStatus(enum.Enum):
    """Where a stream stands: Calico's three sync states, by their wire names."""

    WAIT_FOR_DATASTORE = "wait-for-datastore"
    RESYNC_IN_PROGRESS = "resync-in-progress"
    IN_SYNC = "in-sync"


class UpdateType(enum.Enum):
    """Whether the key is new to the consumer, changed, or gone."""

    NEW = "new"
    UPDATED = "updated"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class Update:
    """One key's change. ``value`` is None exactly when ``update_type`` is DELETED."""

    key: str
    value: JSONMap | None
    revision: int
    update_type: UpdateType

    def __post_init__(self) -> None:
        if (self.value is None) != (self.update_type is UpdateType.DELETED):
            raise ValueError(
                f"update of {self.key!r}: value must be None exactly for a deletion "
                f"(type {self.update_type.value}, value {'None' if self.value is None else 'set'})"
            )


_new = object.__new__
_slot: Any = Update.__dict__  # the slot descriptors: they set a field of a frozen instance directly
_set_key, _set_value = _slot["key"].__set__, _slot["value"].__set__
_set_revision, _set_type = _slot["revision"].__set__, _slot["update_type"].__set__


def trusted_update(key: str, value: JSONMap | None, revision: int, update_type: UpdateType) -> Update:
    """An Update built without ``__post_init__``'s check: for callers that guarantee it (half the cost)."""
    update: Update = _new(Update)
    _set_key(update, key)
    _set_value(update, value)
    _set_revision(update, revision)
    _set_type(update, update_type)
    return update


@runtime_checkable
class SyncerCallbacks(Protocol):
    """What a syncer drives. Either method may be a coroutine function; it is then awaited."""

    def on_status(self, status: SyncStatus) -> Awaitable[None] | None:
        """The stream's sync status changed."""

    def on_updates(self, updates: list[Update]) -> Awaitable[None] | None:
        """A non-empty batch of updates, in order."""


async def deliver_status(callbacks: SyncerCallbacks, status: SyncStatus) -> None:
    """Call ``on_status`` and await it when it returns an awaitable."""
    result = callbacks.on_status(status)
    if inspect.isawaitable(result):
        await result


async def deliver_updates(callbacks: SyncerCallbacks, updates: list[Update]) -> None:
    """Call ``on_updates`` (when there is anything to say) and await it when it returns an awaitable."""
    if not updates:
        return
    result = callbacks.on_updates(updates)
    if inspect.isawaitable(result):
        await result
