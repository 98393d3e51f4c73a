"""Syncers: one syncer type's filtered, ordered stream of statuses and key/value updates.

The callback API (transport-neutral: the direct datastore syncer here and the
Typha client drive the very same one)::

    class SyncerCallbacks(Protocol):
        def on_status(self, status: SyncStatus) -> Awaitable[None] | None: ...
        def on_updates(self, updates: list[Update]) -> Awaitable[None] | None: ...

    SyncStatus:  WAIT_FOR_DATASTORE "wait-for-datastore" → RESYNC_IN_PROGRESS
                 "resync-in-progress" → IN_SYNC "in-sync"
    Update(key, value, revision, update_type)
        key          Calico's datastore path, e.g.
                     /calico/resources/v3/projectcalico.org/networkpolicies/ns1/p1,
                     /calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26
        value        the stored JSON map (read-only, shared with the syncer's cache), None for a deletion
        revision     the store revision of the change (for a deletion found by a re-list: the list's)
        update_type  UpdateType.NEW | UPDATED | DELETED

Either callback may be a coroutine function; the syncer awaits it, which is
the stream's backpressure. Guarantees a consumer can rely on:

- ``wait-for-datastore`` first; ``resync-in-progress`` before the first update
  of a snapshot; ``in-sync`` after the last update of the snapshot. After a
  datastore loss (``Unavailable``) the status goes back to
  ``wait-for-datastore``, after lost history (``ResyncRequired``) to
  ``resync-in-progress``, then to ``in-sync`` again once re-listed.
- After each re-list, keys that vanished in the gap are sent as DELETED and
  only keys whose value changed are sent; applying every update in order
  gives a view equal to the datastore, key by key (``ViewCallbacks`` does
  exactly that).
- NEW only for a key the consumer does not have, UPDATED/DELETED only for one
  it has; a value equal to the last one sent is never sent again.
- Updates of one key come in revision order. With the ``shared`` watch mode
  (one watch of the common prefix) all updates come in store revision order;
  with ``per-type`` only per key.
- A value that fails validation (``libcalico.resources.parse_resource`` plus
  key/kind/name checks for resources, shape checks for IPAM entries) is
  treated as deleted and logged once per key and revision; the stream never
  stops on bad data.

Types (:mod:`.catalog`), as Calico's syncers carry them:

- ``felix``: ClusterInformation, FelixConfiguration, Tier, (Staged)(Global)NetworkPolicy,
  StagedKubernetesNetworkPolicy, (Global)NetworkSet, IPPool, Node, Profile,
  WorkloadEndpoint, HostEndpoint, BGPConfiguration, BGPPeer, IPAM blocks.
- ``bgp``: IPPool, BGPConfiguration, Node, BGPPeer, BGPFilter, block affinities
  (of one node when given).
- ``tunnel-ip-allocation``: IPPool, Node (one node when given).

Use::

    syncer = new_syncer("felix", backend, callbacks)
    async with syncer:          # or: await syncer.run() inside a TaskGroup
        ...

Watch mode, measured with ``.venv/bin/python -m benchmarks.syncer_watch_modes
--count 1000`` (felix syncer; 1000 creates, each followed by a felix-status
write it does not carry; 2 shared cores, so wall time is noisy and process CPU
is the figure to compare): sqlite ``shared`` 1.6-2.1 s CPU versus ``per-type``
3.7-4.0 s (every sqlite watch re-reads the event log on each write); etcd
1.4-1.5 s CPU either way. So ``shared`` is the default for sqlite and
``per-type`` for etcd (the server filters by prefix, so other keys' churn never
reaches the client) and for Kubernetes (one watch per kind). See :mod:`.plan`.

Listing: a backend with ``list_pages`` (etcd) is listed page by page, each page
validated while the next is read; values equal to the ones already sent skip
validation. Common WorkloadEndpoints are validated by :mod:`.fastpath`. Numbers
and commands: docs/datastores.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from libcalico.syncer.backoff import RetryPolicy
    from libcalico.syncer.callbacks import SyncerCallbacks, SyncStatus, Update, UpdateType
    from libcalico.syncer.catalog import (
        BGP,
        FELIX,
        SYNCER_TYPES,
        TUNNEL_IP_ALLOCATION,
        ResourceType,
        SyncerSpec,
        syncer_spec,
    )
    from libcalico.syncer.core import Loss, SyncerCore
    from libcalico.syncer.plan import WatchMode
    from libcalico.syncer.syncer import Syncer, new_syncer
    from libcalico.syncer.validation import ValidationFilter
    from libcalico.syncer.view import ViewCallbacks

# Public name -> the submodule defining it. Imported on first use, so that a consumer of the callback
# types (``SyncStatus``, ``Update``) does not pay for the syncer, its validation or the datastore.
_LAZY: dict[str, str] = {
    "RetryPolicy": "backoff",
    "SyncerCallbacks": "callbacks", "SyncStatus": "callbacks", "Update": "callbacks", "UpdateType": "callbacks",
    "BGP": "catalog", "FELIX": "catalog", "SYNCER_TYPES": "catalog", "TUNNEL_IP_ALLOCATION": "catalog",
    "ResourceType": "catalog", "SyncerSpec": "catalog", "syncer_spec": "catalog",
    "Loss": "core", "SyncerCore": "core",
    "WatchMode": "plan",
    "Syncer": "syncer", "new_syncer": "syncer",
    "ValidationFilter": "validation",
    "ViewCallbacks": "view",
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its submodule on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "BGP",
    "FELIX",
    "SYNCER_TYPES",
    "TUNNEL_IP_ALLOCATION",
    "Loss",
    "ResourceType",
    "RetryPolicy",
    "SyncStatus",
    "Syncer",
    "SyncerCallbacks",
    "SyncerCore",
    "SyncerSpec",
    "Update",
    "UpdateType",
    "ValidationFilter",
    "ViewCallbacks",
    "WatchMode",
    "new_syncer",
    "syncer_spec",
]
