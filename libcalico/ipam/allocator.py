"""Calico IPAM: assign and release addresses from IP pools, in blocks affine to hosts.

How auto-assignment picks addresses for host H (Calico's ``autoAssign``)::

    qualifying pools (enabled, selectors, allowedUses, or the ones asked for)
      1. H's affine blocks in those pools, in CIDR order
      2. new blocks claimed for H            unless autoAllocateBlocks is false
                                             or H already has maxBlocksPerHost blocks
      3. borrow from other hosts' blocks     unless strictAffinity
    never an address an IPReservation holds; never from a disabled pool

If fewer addresses than asked for can be found, the ones already taken are
released again and NoFreeAddresses is raised: a caller never keeps a partial
assignment. Every datastore write is a compare-and-swap (see
:mod:`libcalico.ipam.store`).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import structlog

from libcalico.datastore.backend import Backend, ListResult
from libcalico.datastore.client import Client
from libcalico.errors import NotFound
from libcalico.ipam.config import read_settings, write_settings
from libcalico.ipam.errors import (
    AddressInUse,
    AddressNotInPool,
    AddressReserved,
    BlockNotEmpty,
    ContentionExceeded,
    NoFreeAddresses,
)
from libcalico.ipam.keys import (
    IPAddress,
    IPNetwork,
    affinity_prefix,
    block_prefix,
    parse_affinity_key,
    parse_block_key,
)
from libcalico.ipam.model import Affinity, AffinityState, Attribute, Block, IPAMSettings
from libcalico.ipam.pools import PoolInfo, Reservations, enabled_pools, host_order, pool_of, qualify
from libcalico.ipam.store import FaultHook, IPAMStore, backoff
from libcalico.resources.ippool import IPPool, IPReservation
from libcalico.resources.node import Node

log = structlog.get_logger(__name__)


@dataclass
class AssignRequest:
    """What an automatic assignment asks for."""

    host: str
    num4: int = 0
    num6: int = 0
    handle: str | None = None
    attrs: Mapping[str, str] = field(default_factory=dict)
    ipv4_pools: Sequence[str] = ()
    ipv6_pools: Sequence[str] = ()
    namespace_labels: Mapping[str, str] | None = None
    node_labels: Mapping[str, str] | None = None
    use: str = "Workload"
    max_blocks_per_host: int = 0


@dataclass
class Assignment:
    """The addresses handed out, each with its block's prefix length (``10.0.0.5/26``)."""

    ipv4: list[ipaddress.IPv4Interface] = field(default_factory=list)
    ipv6: list[ipaddress.IPv6Interface] = field(default_factory=list)

    @property
    def addresses(self) -> list[IPAddress]:
        return [i.ip for i in self.ipv4] + [i.ip for i in self.ipv6]


@dataclass(frozen=True)
class ReleaseRequest:
    """An address to release; with a handle or sequence number, only if the allocation still matches."""

    ip: IPAddress
    handle: str | None = None
    sequence: int | None = None


@dataclass(frozen=True)
class AllocationInfo:
    """What the datastore says about one allocated address."""

    ip: IPAddress
    block: IPNetwork
    block_host: str | None
    handle: str | None
    attrs: dict[str, str]
    sequence: int


@dataclass
class _Context:
    settings: IPAMSettings
    pools: list[PoolInfo]
    reservations: Reservations
    node_labels: Mapping[str, str]


class IPAM:
    """The IPAM client: one per datastore connection."""

    def __init__(self, backend: Backend, *, retries: int | None = None, fault: FaultHook | None = None) -> None:
        self.backend = backend
        self.client = Client(backend)
        self.store = IPAMStore(backend, fault=fault) if retries is None else \
            IPAMStore(backend, retries=retries, fault=fault)

    # ------------------------------------------------------------ context

    async def _node_labels(self, host: str) -> dict[str, str]:
        try:
            node = await self.client.get(Node, host)
        except NotFound:
            return {}
        return dict(node.metadata.labels or {})

    async def _context(self, host: str, node_labels: Mapping[str, str] | None) -> _Context:
        async def labels() -> Mapping[str, str]:
            return node_labels if node_labels is not None else await self._node_labels(host)

        settings, (pools, _), (reservations, _), labels_now = await asyncio.gather(
            read_settings(self.backend), self.client.list(IPPool), self.client.list(IPReservation), labels())
        return _Context(settings, enabled_pools(p for p in pools if isinstance(p, IPPool)),
                        Reservations(r for r in reservations if isinstance(r, IPReservation)), labels_now)

    async def settings(self) -> IPAMSettings:
        """The IPAM configuration in force."""
        return await read_settings(self.backend)

    async def configure(self, settings: IPAMSettings) -> IPAMSettings:
        """Store a new IPAM configuration; raise InvalidIPAMConfig."""
        return await write_settings(self.backend, settings, self.store)

    # ------------------------------------------------------------ auto-assign

    async def auto_assign(self, req: AssignRequest) -> Assignment:
        """Assign ``num4``/``num6`` addresses to a handle; raise NoQualifiedPool or NoFreeAddresses."""
        versions = [v for v, n in ((4, req.num4), (6, req.num6)) if n > 0]
        context = asyncio.ensure_future(self._context(req.host, req.node_labels))
        try:
            listings = await asyncio.gather(*(self.backend.list(affinity_prefix(req.host, v)) for v in versions))
        finally:
            ctx = await context
        affinities: dict[int, ListResult] = dict(zip(versions, listings, strict=True))
        out = Assignment()
        try:
            for version, num, requested in ((4, req.num4, req.ipv4_pools), (6, req.num6, req.ipv6_pools)):
                if num <= 0:
                    continue
                pools = qualify(ctx.pools, version, req.use, ctx.node_labels, req.namespace_labels,
                                requested, req.host)
                got = await self._assign_version(req, version, num, pools, ctx, affinities[version])
                for ip, prefix in got:
                    iface = ipaddress.ip_interface(f"{ip}/{prefix}")
                    (out.ipv4 if version == 4 else out.ipv6).append(iface)  # type: ignore[arg-type]
        except BaseException:
            if out.addresses:
                await asyncio.shield(self.release_ips([ReleaseRequest(ip, req.handle) for ip in out.addresses]))
            raise
        log.info("ipam_assigned", host=req.host, handle=req.handle,
                 addresses=[str(i) for i in out.addresses])
        return out

    async def _assign_version(self, req: AssignRequest, version: int, num: int, pools: list[PoolInfo],
                              ctx: _Context, listing: ListResult) -> list[tuple[IPAddress, int]]:
        attribute = Attribute.of(req.handle, req.attrs)
        got: list[tuple[IPAddress, int]] = []
        try:
            await self._fill(req, version, num, pools, ctx, attribute, listing, got)
        except BaseException:
            if got:
                await asyncio.shield(self.release_ips([ReleaseRequest(ip, req.handle) for ip, _ in got]))
            raise
        return got

    async def _fill(self, req: AssignRequest, version: int, num: int, pools: list[PoolInfo], ctx: _Context,
                    attribute: Attribute, listing: ListResult, got: list[tuple[IPAddress, int]]) -> None:
        host = req.host
        owned = len(listing.items)
        tried: set[IPNetwork] = set()
        affine: list[tuple[PoolInfo, IPNetwork, AffinityState]] = []
        for kv in listing.items:
            _, cidr = parse_affinity_key(kv.key)
            pool = _pool_for_block(pools, cidr)
            if pool is not None:
                affine.append((pool, cidr, Affinity.state_of(kv.key, kv.value)))
        affine.sort(key=lambda item: (pools.index(item[0]), int(item[1].network_address)))
        for _pool, cidr, state in affine:
            if len(got) >= num:
                return
            if state is AffinityState.PENDING_DELETION:
                continue
            tried.add(cidr)
            await self._take(cidr, num - len(got), attribute, host, ctx.reservations, True, got)
        limit = req.max_blocks_per_host or ctx.settings.block_limit
        if len(got) < num and ctx.settings.auto_allocate_blocks:
            while len(got) < num and owned < limit:
                claimed = await self._claim_new_block(host, version, pools, ctx.reservations)
                if claimed is None:
                    break
                owned += 1
                tried.add(claimed)
                await self._take(claimed, num - len(got), attribute, host, ctx.reservations, True, got)
        if len(got) < num and not ctx.settings.strict_affinity:
            blocks = await self.backend.list(block_prefix(version))
            cidrs = [parse_block_key(kv.key) for kv in blocks.items
                     if kv.value.get("unallocated") and parse_block_key(kv.key) not in tried]
            for pool in pools:
                in_pool = [c for c in cidrs if c.prefixlen == pool.block_size and c.subnet_of(pool.network)]  # type: ignore[arg-type]
                for i in host_order(host, len(in_pool)):
                    if len(got) >= num:
                        break
                    await self._take(in_pool[i], num - len(got), attribute, host, ctx.reservations, False, got)
        if len(got) < num:
            why = "strict affinity forbids borrowing" if ctx.settings.strict_affinity else "pools are exhausted"
            if owned >= limit and ctx.settings.strict_affinity:
                why = f"host {host} has its maximum of {limit} blocks and strict affinity forbids borrowing"
            raise NoFreeAddresses(num, len(got), version, why)

    async def _take(self, cidr: IPNetwork, need: int, attribute: Attribute, host: str,
                    reservations: Reservations, affine: bool, got: list[tuple[IPAddress, int]]) -> None:
        """Allocate up to ``need`` addresses from one block into ``got`` (nothing if it is not usable)."""
        handle = attribute.handle
        held = 0  # count already added to the handle for this block
        touching = reservations.touching(cidr)
        try:
            for attempt in range(self.store.retries):
                found = await self.store.read_block(cidr)
                if found is None:
                    if affine and await self.store.claim(host, cidr):
                        continue
                    return
                block, revision = found
                if affine and block.host != host:
                    await self.store.drop_affinity(host, cidr)
                    return
                if block.deleted:
                    return

                def reserved(ordinal: int, block: Block = block) -> bool:
                    ip = block.ip(ordinal)
                    return any(ip in n for n in touching)

                ordinals = block.allocate(need, attribute, reserved if touching else None)
                if not ordinals:
                    return
                if handle and len(ordinals) != held:
                    await self.store.handle_add(handle, cidr, len(ordinals) - held)
                    held = len(ordinals)
                self.store.fault("handle-updated")
                if await self.store.write_block(block, revision):
                    held = 0
                    self.store.fault("block-written")
                    got.extend((block.ip(o), cidr.prefixlen) for o in ordinals)
                    return
                await backoff(attempt)
            raise ContentionExceeded(f"allocate from block {cidr}", self.store.retries)
        finally:
            if held and handle:
                await asyncio.shield(self.store.handle_add(handle, cidr, -held))

    async def _claim_new_block(self, host: str, version: int, pools: list[PoolInfo],
                               reservations: Reservations) -> IPNetwork | None:
        listing = await self.backend.list(block_prefix(version))
        existing = {parse_block_key(kv.key) for kv in listing.items}
        for pool in pools:
            for n in host_order(host, pool.block_count()):
                cidr = pool.nth_block(n)
                if cidr in existing or reservations.covers(cidr):
                    continue
                if await self.store.claim(host, cidr):
                    return cidr
                existing.add(cidr)
        return None

    # ------------------------------------------------------------ specific addresses

    async def assign_ip(self, ip: IPAddress | str, handle: str | None, attrs: Mapping[str, str] | None,
                        host: str, use: str | None = None) -> IPNetwork:
        """Assign one given address; raise AddressNotInPool, AddressReserved or AddressInUse."""
        ip = ipaddress.ip_address(ip)
        ctx = await self._context(host, {})
        pool = pool_of(ctx.pools, ip)
        if pool is None:
            raise AddressNotInPool(f"{ip} is not in any enabled IP pool")
        if use and use not in (pool.pool.spec.allowedUses or []):
            raise AddressNotInPool(f"IP address {ip} is in IP pool {pool.name!r}, which is not allowed for use "
                                   f"{use!r} (allowedUses: {pool.pool.spec.allowedUses})")
        if ctx.reservations.holds(ip):
            raise AddressReserved(f"{ip} is reserved by an IPReservation")
        cidr = pool.block_of(ip)
        attribute = Attribute.of(handle, attrs)
        for attempt in range(self.store.retries):
            found = await self.store.read_block(cidr)
            if found is None:
                await self.store.claim(host, cidr)
                continue
            block, revision = found
            ordinal = block.ordinal(ip)
            current = block.attribute_of(ordinal)
            if current is not None:
                raise AddressInUse(str(ip), current.handle)
            block.assign(ordinal, attribute)
            if handle:
                await self.store.handle_add(handle, cidr, 1)
            if await self.store.write_block(block, revision):
                return cidr
            if handle:
                await self.store.handle_add(handle, cidr, -1)
            await backoff(attempt)
        raise ContentionExceeded(f"assign {ip}", self.store.retries)

    # ------------------------------------------------------------ release

    async def _blocks_holding(self, ips: Iterable[IPAddress]) -> dict[IPNetwork, list[IPAddress]]:
        wanted = list(ips)
        out: dict[IPNetwork, list[IPAddress]] = {}
        for version in sorted({ip.version for ip in wanted}):
            listing = await self.backend.list(block_prefix(version))
            cidrs = [parse_block_key(kv.key) for kv in listing.items]
            for ip in wanted:
                if ip.version != version:
                    continue
                for cidr in cidrs:
                    if ip in cidr:
                        out.setdefault(cidr, []).append(ip)
                        break
        return out

    async def release_ips(self, requests: Sequence[ReleaseRequest]) -> list[IPAddress]:
        """Release addresses (checking handle and sequence number when given); return those released."""
        by_ip = {r.ip: r for r in requests}
        released: list[IPAddress] = []
        for cidr, ips in (await self._blocks_holding(by_ip)).items():
            released.extend(await self._release_in_block(cidr, [by_ip[ip] for ip in ips], None))
        if released:
            log.info("ipam_released", addresses=[str(ip) for ip in released])
        return released

    async def release_by_handle(self, handle: str) -> list[IPAddress]:
        """Release every address of a handle and delete the handle; return the addresses (none: no-op)."""
        found = await self.store.read_handle(handle)
        if found is None:
            return []
        released: list[IPAddress] = []
        for block in list(found[0].blocks):
            cidr = ipaddress.ip_network(block)
            released.extend(await self._release_in_block(cidr, [], handle))
        log.info("ipam_released_handle", handle=handle, addresses=[str(ip) for ip in released])
        return released

    async def _release_in_block(self, cidr: IPNetwork, requests: list[ReleaseRequest],
                                whole_handle: str | None) -> list[IPAddress]:
        for attempt in range(self.store.retries):
            found = await self.store.read_block(cidr)
            if found is None:
                if whole_handle:
                    await self.store.handle_drop(whole_handle, cidr, 0, 0)
                return []
            block, revision = found
            if whole_handle is not None:
                ordinals = block.ordinals_of_handle(whole_handle)
            else:
                ordinals = []
                for r in requests:
                    ordinal = block.ordinal(r.ip)
                    attr = block.attribute_of(ordinal)
                    if attr is None or (r.handle is not None and attr.handle != r.handle):
                        continue
                    if r.sequence is not None and block.sequence_of(ordinal) != r.sequence:
                        continue
                    ordinals.append(ordinal)
            freed = block.release(ordinals)
            if not freed:
                if whole_handle:
                    await self.store.handle_drop(whole_handle, cidr, 0, 0)
                return []
            if block.is_empty() and block.host is None:
                ok = await self.store.delete_block(cidr, revision)
            else:
                ok = await self.store.write_block(block, revision)
            if not ok:
                await backoff(attempt)
                continue
            self.store.fault("block-released")
            counts: dict[str, int] = {}
            for h in freed.values():
                if h:
                    counts[h] = counts.get(h, 0) + 1
            for h, n in counts.items():
                await self.store.handle_drop(h, cidr, n, len(block.ordinals_of_handle(h)))
            return [block.ip(o) for o in freed]
        raise ContentionExceeded(f"release from block {cidr}", self.store.retries)

    # ------------------------------------------------------------ queries and affinities

    async def ips_by_handle(self, handle: str) -> list[IPAddress]:
        """Every address a handle holds now."""
        found = await self.store.read_handle(handle)
        if found is None:
            return []
        out: list[IPAddress] = []
        for block in found[0].blocks:
            got = await self.store.read_block(ipaddress.ip_network(block))
            if got is not None:
                out.extend(got[0].ip(o) for o in got[0].ordinals_of_handle(handle))
        return out

    async def allocation(self, ip: IPAddress | str) -> AllocationInfo | None:
        """What is recorded about an address, or None when it is not assigned."""
        ip = ipaddress.ip_address(ip)
        for cidr in await self._blocks_holding([ip]):
            got = await self.store.read_block(cidr)
            if got is None:
                return None
            block = got[0]
            attr = block.attribute_of(block.ordinal(ip))
            if attr is None:
                return None
            return AllocationInfo(ip, cidr, block.host, attr.handle, attr.attrs,
                                  block.sequence_of(block.ordinal(ip)))
        return None

    async def release_affinity(self, host: str, cidr: IPNetwork | str, must_be_empty: bool = True) -> bool:
        """Release a host's affinity to one block; raise BlockNotEmpty when it must be empty and is not."""
        return await self.store.release_affinity(host, ipaddress.ip_network(cidr), must_be_empty)

    async def release_host_affinities(self, host: str, must_be_empty: bool = True) -> list[IPNetwork]:
        """Release every block affinity of a host whose block is empty; return the blocks released."""
        listing = await self.backend.list(affinity_prefix(host))
        out: list[IPNetwork] = []
        for kv in listing.items:
            _, cidr = parse_affinity_key(kv.key)
            try:
                if await self.store.release_affinity(host, cidr, must_be_empty):
                    out.append(cidr)
            except BlockNotEmpty:
                continue
        return out


def _pool_for_block(pools: Sequence[PoolInfo], cidr: IPNetwork) -> PoolInfo | None:
    for pool in pools:
        if cidr.version == pool.version and cidr.prefixlen == pool.block_size \
                and cidr.subnet_of(pool.network):  # type: ignore[arg-type]
            return pool
    return None
