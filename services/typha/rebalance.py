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

Replicas are counted one of two ways (``ConnectionRebalancingMode``):

- ``kubernetes`` (Calico's way): the distinct ready IPs behind the Typha
  Service's endpoints (``K8sNamespace``/``K8sServiceName``, port ``K8sPortName``),
  read through the Kubernetes API whatever the datastore is;
- ``datastore`` (an extension for clusters without Kubernetes): each replica
  registers itself under ``/calico/typha/v1/replicas/`` with a TTL it keeps
  refreshing (and deletes on a graceful stop); works on the backends with TTLs
  (sqlite, etcd).

When the count fails the limit goes back to the upper limit, as in Calico. The
nodes are the Node resources of the felix stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

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


class ReplicaCounter(Protocol):
    """Counts the live Typha replicas (this one included)."""

    async def count(self) -> int:
        """The number of replicas; raises DatastoreError or OSError when it cannot tell."""

    async def deregister(self) -> None:
        """This replica is stopping gracefully."""


class ServiceReplicas:
    """Replicas counted as Calico does: the ready IPs behind the Typha Kubernetes Service.

    ``count_replicas`` is :meth:`libcalico.typha.discovery.ServiceEndpoints.count_replicas`
    (imported only in that mode: the Kubernetes client is slow to import).
    """

    def __init__(self, count_replicas: Callable[[], Awaitable[int]]) -> None:
        self._count = count_replicas

    async def count(self) -> int:
        """Distinct ready replica IPs on the Typha port; DiscoveryError (an OSError) when unknown."""
        return await self._count()

    async def deregister(self) -> None:
        """Nothing to do: Kubernetes takes a stopping pod out of the endpoints."""


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
        """Refresh this replica's registration; return how many are registered and not expired."""
        await self.refresh()
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
    counter: ReplicaCounter | None,
    count_nodes: Callable[[], int],
    set_limit: Callable[[int], None],
    *,
    lower: int,
    upper: int,
    syncer_types: int,
    interval: float,
    stopping: asyncio.Event,
) -> None:
    """Count replicas and recompute the limit every ``interval`` until ``stopping`` is set.

    A failed count sets the upper limit (reason ``error``), as Calico does.
    """
    active: int | None = None
    while not stopping.is_set():
        replicas = 1
        error = None
        if counter is not None:
            try:
                replicas = await counter.count()
            except (DatastoreError, OSError) as exc:  # discovery errors are OSErrors
                error = str(exc)
        nodes = count_nodes()
        if error is not None or replicas <= 0:
            log.warning("replica_count_failed", error=error or "no replicas found")
            target, reason = upper, "error"
        else:
            target, reason = calculate_max_conn_limit(lower, upper, replicas, nodes, syncer_types)
        if target != active:
            log.info("connection_limit", limit=target, reason=reason, replicas=replicas, nodes=nodes)
            set_limit(target)
            active = target
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(interval):
                await stopping.wait()
