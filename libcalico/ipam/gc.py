"""Garbage collection of leaked addresses: allocated, with no workload or node behind them for a grace period.

How a run decides (Calico's kube-controllers IPAM GC, simplified)::

    for each allocation
        owner exists?   -> valid, forget any suspicion
        else            -> suspect since first seen; confirmed once suspected for >= grace
    a handle is released only when *every* one of its allocations is confirmed
    immediately before releasing, owners are read again and each one re-judged
    release by (address, handle, sequence number): an address handed out again
    since the scan has a new sequence number and is left alone

An allocation's owner is, in order: a node for tunnel addresses (type attribute
or tunnel handle prefix); any WorkloadEndpoint listing the address; for pod
attributes, a WorkloadEndpoint of that namespace/pod (or ``pod_exists`` saying
the pod exists, when given); for a ``<network>.<containerID>`` handle, a
WorkloadEndpoint with that container ID. An allocation with none of these clues
is assumed valid, as Calico does: it is never released.

Empty blocks are released from their host after two observations at least a
grace period apart, keeping each host's last block.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from libcalico.ipam.allocator import IPAM, ReleaseRequest
from libcalico.ipam.errors import BlockNotEmpty
from libcalico.ipam.keys import IPNetwork
from libcalico.ipam.model import Block
from libcalico.ipam.report import (
    TUNNEL_HANDLE_PREFIXES,
    TUNNEL_TYPES,
    WINDOWS_RESERVED_HANDLE,
    Allocation,
    Owners,
    scan,
)

log = structlog.get_logger(__name__)

PodOracle = Callable[[str, str], Awaitable[bool | None]]
"""(namespace, pod) -> True when the pod exists, False when it does not, None when unknown."""


@dataclass
class GCResult:
    """What one collection run saw and did."""

    checked: int = 0
    valid: int = 0
    suspected: int = 0
    released: list[str] = field(default_factory=list)
    released_blocks: list[str] = field(default_factory=list)


def _tunnel_node(a: Allocation) -> str | None:
    handle = a.handle or ""
    for prefix in TUNNEL_HANDLE_PREFIXES:
        if handle.startswith(prefix):
            return a.attrs.get("node") or handle[len(prefix):]
    if a.attrs.get("type") in TUNNEL_TYPES:
        return a.attrs.get("node") or ""
    return None


def container_of_handle(handle: str | None) -> str | None:
    """The container ID in a ``<network>.<containerID>`` handle, or None for any other form."""
    if not handle or "." not in handle:
        return None
    network, _, container = handle.partition(".")
    return container if network and container else None


async def owner_exists(a: Allocation, owners: Owners, pod_exists: PodOracle | None = None) -> bool:
    """True unless the allocation's owner can be shown not to exist."""
    if a.handle == WINDOWS_RESERVED_HANDLE:
        return True
    node = _tunnel_node(a)
    if node is not None:
        return node in owners.nodes
    if a.ip in owners.by_ip:
        return True
    pod, namespace = a.attrs.get("pod"), a.attrs.get("namespace")
    if pod and namespace:
        if (namespace, pod) in owners.pods:
            return True
        if pod_exists is not None:
            return (await pod_exists(namespace, pod)) is not False
        return False
    container = container_of_handle(a.handle)
    if container is not None:
        return container in owners.container_ids
    return True


class LeakCollector:
    """Finds and releases leaked addresses; call :meth:`run_once` periodically (state is kept between runs)."""

    def __init__(self, ipam: IPAM, grace_period: float, *, pod_exists: PodOracle | None = None,
                 release_empty_blocks: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.ipam = ipam
        self.grace = grace_period
        self.pod_exists = pod_exists
        self.release_empty_blocks = release_empty_blocks
        self.clock = clock
        self._suspects: dict[tuple[str, str | None, int], float] = {}
        self._empty: dict[tuple[str, str], float] = {}

    async def run_once(self, now: float | None = None) -> GCResult:
        """One scan: suspect, confirm, re-validate and release; release long-empty blocks."""
        now = self.clock() if now is None else now
        result = GCResult()
        found = await scan(self.ipam.backend)
        owners = await Owners.load(self.ipam.client)
        seen: set[tuple[str, str | None, int]] = set()
        confirmed: list[Allocation] = []
        for a in found.allocations:
            key = (a.ip, a.handle, a.sequence)
            seen.add(key)
            result.checked += 1
            if await owner_exists(a, owners, self.pod_exists):
                self._suspects.pop(key, None)
                result.valid += 1
                continue
            first = self._suspects.setdefault(key, now)
            result.suspected += 1
            if now - first >= self.grace:
                confirmed.append(a)
        for key in [k for k in self._suspects if k not in seen]:
            del self._suspects[key]
        ready = self._whole_handles(confirmed, found.allocations)
        if ready:
            fresh = await Owners.load(self.ipam.client)
            ready = [a for a in ready if not await owner_exists(a, fresh, self.pod_exists)]
        if ready:
            released = await self.ipam.release_ips(
                [ReleaseRequest(ipaddress.ip_address(a.ip), a.handle, a.sequence) for a in ready])
            result.released = [str(ip) for ip in released]
            log.info("ipam_gc_released", addresses=result.released)
        if self.release_empty_blocks:
            result.released_blocks = await self._release_empty(found.blocks, now)
        return result

    @staticmethod
    def _whole_handles(confirmed: list[Allocation], everything: list[Allocation]) -> list[Allocation]:
        done = {(a.ip, a.handle, a.sequence) for a in confirmed}
        per_handle: dict[str, list[Allocation]] = {}
        for a in everything:
            if a.handle:
                per_handle.setdefault(a.handle, []).append(a)
        out = []
        for a in confirmed:
            if a.handle and not all((b.ip, b.handle, b.sequence) in done for b in per_handle[a.handle]):
                continue
            out.append(a)
        return out

    async def _release_empty(self, blocks: dict[IPNetwork, Block], now: float) -> list[str]:
        per_host: dict[str, int] = {}
        for block in blocks.values():
            if block.host:
                per_host[block.host] = per_host.get(block.host, 0) + 1
        released: list[str] = []
        current: set[tuple[str, str]] = set()
        for cidr, block in blocks.items():
            if not block.host or not block.is_empty():
                continue
            key = (block.host, str(cidr))
            current.add(key)
            first = self._empty.setdefault(key, now)
            if now - first < self.grace or per_host[block.host] <= 1:
                continue
            try:
                if await self.ipam.release_affinity(block.host, cidr, must_be_empty=True):
                    released.append(str(cidr))
                    per_host[block.host] -= 1
            except BlockNotEmpty:
                pass
            self._empty.pop(key, None)
        for key in [k for k in self._empty if k not in current]:
            del self._empty[key]
        return released
