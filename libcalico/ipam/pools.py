"""Which IP pools a request may use, which blocks they hold, and which addresses are reserved.

Pure functions over already-read resources (Calico's ``pool_qualification.go``):

- a pool is *enabled* unless ``disabled``; only enabled pools are ever used;
- pools named in the request (by name or CIDR) skip the node and namespace
  selectors and the assignment mode, but not the allowed uses;
- otherwise a pool qualifies when its ``assignmentMode`` is Automatic, its
  ``nodeSelector`` matches the node's labels, its ``namespaceSelector`` matches
  the namespace's labels (an absent namespace has no labels), and its
  ``allowedUses`` include the request's use.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from libcalico.ipam.errors import NoQualifiedPool
from libcalico.ipam.keys import IPAddress, IPNetwork
from libcalico.resources.ippool import IPPool, IPReservation
from libcalico.selector import parse


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """An enabled pool as IPAM sees it."""

    name: str
    network: IPNetwork
    block_size: int
    pool: IPPool

    @property
    def version(self) -> int:
        return self.network.version

    def block_of(self, ip: IPAddress) -> IPNetwork:
        """The block of this pool that holds ``ip``."""
        return ipaddress.ip_network(f"{ip}/{self.block_size}", strict=False)

    def block_count(self) -> int:
        """How many blocks the pool is cut into."""
        return 1 << (self.block_size - self.network.prefixlen)

    def nth_block(self, n: int) -> IPNetwork:
        """The n-th block of the pool."""
        step = 1 << (self.network.max_prefixlen - self.block_size)
        base = self.network.network_address + n * step
        return ipaddress.ip_network(f"{base}/{self.block_size}")


def enabled_pools(pools: Iterable[IPPool]) -> list[PoolInfo]:
    """Every pool that is not disabled, in name order."""
    out = []
    for pool in sorted(pools, key=lambda p: p.name):
        if pool.spec.disabled:
            continue
        assert pool.spec.blockSize is not None
        out.append(PoolInfo(pool.name, pool.spec.network, pool.spec.blockSize, pool))
    return out


def _selects(selector: str | None, labels: Mapping[str, str]) -> bool:
    if not selector:
        return True
    return parse(selector).evaluate(dict(labels))


def qualify(
    pools: Sequence[PoolInfo],
    version: int,
    use: str,
    node_labels: Mapping[str, str],
    namespace_labels: Mapping[str, str] | None,
    requested: Sequence[str] = (),
    host: str = "",
) -> list[PoolInfo]:
    """The pools this request may allocate from, in preference order; raise NoQualifiedPool."""
    fitting = [p for p in pools if p.version == version]
    if requested:
        chosen: list[PoolInfo] = []
        for want in requested:
            match = _find_pool(fitting, want)
            if match is None:
                raise NoQualifiedPool(f"the given pool ({want}) does not exist, or is not enabled")
            if match not in chosen:
                chosen.append(match)
        usable = [p for p in chosen if use in (p.pool.spec.allowedUses or [])]
        if not usable:
            raise NoQualifiedPool(f"no requested IPv{version} pool allows use {use}")
        return usable
    selecting = [p for p in fitting
                 if p.pool.spec.assignmentMode == "Automatic"
                 and _selects(p.pool.spec.nodeSelector, node_labels)
                 and _selects(p.pool.spec.namespaceSelector, namespace_labels or {})]
    if not selecting:
        raise NoQualifiedPool(f"no configured Calico IPv{version} pools for node {host or '<unknown>'}")
    usable = [p for p in selecting if use in (p.pool.spec.allowedUses or [])]
    if not usable:
        raise NoQualifiedPool(f"no IPv{version} pools match the required use ({use})")
    return usable


def _find_pool(pools: Sequence[PoolInfo], want: str) -> PoolInfo | None:
    for p in pools:
        if p.name == want:
            return p
    try:
        net = ipaddress.ip_network(want, strict=False)
    except ValueError:
        return None
    for p in pools:
        if p.network == net:
            return p
    return None


def pool_of(pools: Iterable[PoolInfo], ip: IPAddress) -> PoolInfo | None:
    """The enabled pool holding an address, if any."""
    for p in pools:
        if ip.version == p.version and ip in p.network:
            return p
    return None


def host_order(host: str, count: int) -> Iterator[int]:
    """0..count-1 starting at a point fixed by the host's name, so hosts spread out and retries repeat."""
    if count <= 0:
        return
    start = int.from_bytes(hashlib.sha256(host.encode()).digest()[:8], "big") % count
    for i in range(count):
        yield (start + i) % count


class Reservations:
    """The addresses that IPReservations hold back from automatic assignment."""

    def __init__(self, reservations: Iterable[IPReservation]) -> None:
        nets: list[IPNetwork] = []
        for res in reservations:
            for cidr in res.spec.reservedCIDRs or []:
                nets.append(ipaddress.ip_network(cidr, strict=False))
        self.networks = nets

    def __bool__(self) -> bool:
        return bool(self.networks)

    def holds(self, ip: IPAddress) -> bool:
        """True when the address is reserved."""
        return any(ip.version == n.version and ip in n for n in self.networks)

    def touching(self, block: IPNetwork) -> list[IPNetwork]:
        """The reservations that overlap a block."""
        return [n for n in self.networks if n.version == block.version and n.overlaps(block)]

    def covers(self, block: IPNetwork) -> bool:
        """True when every address of the block is reserved."""
        nets = self.touching(block)
        if any(block.subnet_of(n) for n in nets):  # type: ignore[arg-type]
            return True
        inner: list[Any] = [n for n in nets if n.subnet_of(block)]  # type: ignore[arg-type]
        covered: int = sum(n.num_addresses for n in ipaddress.collapse_addresses(inner))
        return covered >= block.num_addresses
