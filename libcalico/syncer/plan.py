"""How a syncer type's resource types map onto datastore watches.

``PER_TYPE`` opens one list+watch per resource type (like Calico's
watchersyncer); ``SHARED`` opens a single list+watch on the types' longest
common path prefix and routes each key to its type (events then come in the
store's global revision order, and unrelated keys under the prefix are
filtered out).

The default depends on the backend (measured, see the package docstring):
every sqlite watch re-reads the shared event log on every write, so one shared
watch costs about half the CPU per delta there; etcd filters by prefix on the
server (same CPU either way here, and other keys' churn never reaches the
client) and the Kubernetes backend watches one kind per watch, so they get one
watch per type.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from libcalico.syncer.catalog import ResourceType, SyncerSpec


class WatchMode(enum.Enum):
    PER_TYPE = "per-type"
    SHARED = "shared"


@dataclass(frozen=True, slots=True)
class WatchPlan:
    """One list+watch: the prefix it covers and the resource types routed to it."""

    prefix: str
    types: tuple[ResourceType, ...]


def common_prefix(prefixes: list[str]) -> str:
    """The longest prefix shared by every path, cut back to a whole ``/``-ended segment."""
    if not prefixes:
        raise ValueError("common prefix of no paths")
    first, last = min(prefixes), max(prefixes)
    n = 0
    while n < len(first) and n < len(last) and first[n] == last[n]:
        n += 1
    shared = first[:n]
    if shared in prefixes and (shared.endswith("/") or len(prefixes) == 1):
        return shared
    return shared[: shared.rfind("/") + 1]


def plan_watches(spec: SyncerSpec, mode: WatchMode) -> list[WatchPlan]:
    """The watches that cover ``spec`` in ``mode``."""
    if mode is WatchMode.PER_TYPE:
        return [WatchPlan(t.prefix, (t,)) for t in spec.types]
    return [WatchPlan(common_prefix([t.prefix for t in spec.types]), spec.types)]


def default_watch_mode(backend_name: str) -> WatchMode:
    """SHARED for the embedded sqlite store, PER_TYPE for etcd, Kubernetes and anything else."""
    return WatchMode.SHARED if backend_name == "sqlite" else WatchMode.PER_TYPE
