"""Connection limits shared between replicas, as Calico's Typha computes them, and the replica registry.

How it works: every ``K8sServicePollIntervalSecs`` a replica counts the Typha
replicas and the nodes, and sets its own connection limit::

    lone replica:   MaxConnectionsUpperLimit
    otherwise:      syncer types × (1 + nodes × 120 / 100 / (replicas − 1))
                    (20% headroom; one replica's share kept free for rolling upgrades)
                    raised to MaxConnectionsLowerLimit, capped at MaxConnectionsUpperLimit

The server then sheds connections above the limit one at a time, a jittered
``ConnectionDropIntervalSecs`` apart, so the clients spread over the other
replicas without a storm.

Calico counts replicas from the Kubernetes endpoints of its Service. Here each
replica registers itself in the datastore under ``/calico/typha/v1/replicas/``
with a TTL it keeps refreshing (and deletes on a graceful stop), which works on
every backend with TTLs (sqlite, etcd); the nodes are the Node resources of the
felix stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from libcalico.datastore.backend import Backend
from libcalico.errors import DatastoreError

log = structlog.get_logger(__name__)

REPLICA_PREFIX = "/calico/typha/v1/replicas/"
HEADROOM_PERCENT = 20


def calculate_max_conn_limit(
    lower: int, upper: int, replicas: int, nodes: int, syncer_types: int
) -> tuple[int, str]:
    """The connection limit of one replica and the reason, as Calico's ``CalculateMaxConnLimit``."""
    if replicas <= 1:
        return upper, "lone typha"
    target, reason = lower, "configured lower limit"
    candidate = syncer_types * (1 + nodes * (100 + HEADROOM_PERCENT) // (replicas - 1) // 100)
    if candidate > target:
        target, reason = candidate, "fraction+20%"
    if target > upper:
        target, reason = upper, "configured upper limit"
    return target, reason


class ReplicaRegistry:
    """This replica's TTL'd registration in the datastore, and the count of every live one."""

    def __init__(self, backend: Backend, replica: str, *, ttl: float) -> None:
        self.backend = backend
        self.replica = replica
        self.ttl = ttl
        self.key = REPLICA_PREFIX + replica
        self._registered = False

    async def refresh(self) -> None:
        """Write (or rewrite) this replica's registration with a fresh TTL."""
        await self.backend.apply(self.key, {"replica": self.replica, "refreshed": time.time()}, ttl=self.ttl)
        self._registered = True

    async def count(self) -> int:
        """How many replicas are registered and not expired (this one included)."""
        listing = await self.backend.list(REPLICA_PREFIX)
        return len(listing.items)

    async def deregister(self) -> None:
        """Remove this replica's registration (graceful stop): the others' limits go up first."""
        if not self._registered:
            return
        self._registered = False
        with contextlib.suppress(DatastoreError):
            await self.backend.delete(self.key)


async def poll_limits(
    registry: ReplicaRegistry | None,
    count_nodes: Callable[[], int],
    set_limit: Callable[[int], None],
    *,
    lower: int,
    upper: int,
    syncer_types: int,
    interval: float,
    stopping: asyncio.Event,
) -> None:
    """Refresh the registration and recompute the limit every ``interval`` until ``stopping`` is set."""
    active: int | None = None
    while not stopping.is_set():
        replicas = 1
        if registry is not None:
            try:
                await registry.refresh()
                replicas = await registry.count()
            except DatastoreError as exc:
                log.warning("replica_count_failed", error=str(exc))
                replicas = 0
        if replicas > 0:
            nodes = count_nodes()
            target, reason = calculate_max_conn_limit(lower, upper, replicas, nodes, syncer_types)
            if target != active:
                log.info("connection_limit", limit=target, reason=reason, replicas=replicas, nodes=nodes)
                set_limit(target)
                active = target
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
