"""What IPAM holds, checked against what uses it: the data behind ``calicoctl ipam check`` and ``show``.

``scan`` reads every block once; ``Owners`` reads every WorkloadEndpoint and
Node once; ``check`` compares the two the way Calico's ``ipam check`` does
(allocated but unused, used but unallocated, handles without addresses,
addresses whose handle is missing) and adds one check of its own: handle
counts that disagree with the blocks.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from libcalico.datastore.backend import Backend
from libcalico.datastore.client import Client
from libcalico.errors import NotFound
from libcalico.ipam.keys import (
    HANDLE_PREFIX,
    IPNetwork,
    block_prefix,
    parse_block_key,
    parse_handle_key,
)
from libcalico.ipam.model import Block, Handle
from libcalico.resources.base import kind_class
from libcalico.resources.endpoint import WorkloadEndpoint
from libcalico.resources.ippool import IPPool
from libcalico.resources.node import Node

TUNNEL_TYPES = frozenset({"ipipTunnelAddress", "vxlanTunnelAddress", "vxlanV6TunnelAddress",
                          "wireguardTunnelAddress", "wireguardV6TunnelAddress"})
TUNNEL_HANDLE_PREFIXES = ("ipip-tunnel-addr-", "vxlan-tunnel-addr-", "vxlan-v6-tunnel-addr-",
                          "wireguard-tunnel-addr-", "wireguard-v6-tunnel-addr-")
WINDOWS_RESERVED_HANDLE = "windows-reserved-ipam-handle"


@dataclass
class Allocation:
    """One allocated address, as a block records it."""

    ip: str
    block: IPNetwork
    block_host: str | None
    handle: str | None
    sequence: int
    attrs: dict[str, str]
    in_use: bool = False
    owners: list[str] = field(default_factory=list)

    @property
    def node(self) -> str:
        return self.attrs.get("node") or self.block_host or ""

    @property
    def borrowed(self) -> bool:
        return bool(self.attrs.get("node")) and self.attrs.get("node") != (self.block_host or "")

    def to_json(self) -> dict[str, Any]:
        """Calico's report form of an allocation."""
        out: dict[str, Any] = {"ip": self.ip}
        if self.handle:
            out["handle"] = self.handle
        out["sequenceNumber"] = self.sequence
        for key, name in (("pod", "pod"), ("namespace", "namespace"), ("type", "type"),
                          ("timestamp", "creationTimestamp")):
            if self.attrs.get(key):
                out[name] = self.attrs[key]
        if self.node:
            out["node"] = self.node
        out["inUse"] = self.in_use
        if self.borrowed:
            out["borrowed"] = True
        out["owners"] = list(self.owners) or None
        return out


@dataclass
class Scan:
    """Every block and allocation, and every handle record, read from the datastore."""

    blocks: dict[IPNetwork, Block]
    allocations: list[Allocation]
    handles: dict[str, tuple[Handle, int]]


async def scan(backend: Backend) -> Scan:
    """Read every block (IPv4 and IPv6) and every handle."""
    listings = await asyncio.gather(backend.list(block_prefix(4)), backend.list(block_prefix(6)),
                                    backend.list(HANDLE_PREFIX))
    blocks: dict[IPNetwork, Block] = {}
    allocations: list[Allocation] = []
    for kv in listings[0].items + listings[1].items:
        block = Block.from_value(kv.key, kv.value)
        blocks[parse_block_key(kv.key)] = block
        for ordinal, attr in block.allocated():
            allocations.append(Allocation(str(block.ip(ordinal)), block.cidr, block.host, attr.handle,
                                          block.sequence_of(ordinal), attr.attrs))
    handles = {}
    for kv in listings[2].items:
        name = parse_handle_key(kv.key)
        handles[name] = (Handle.from_value(kv.key, name, kv.value), kv.revision)
    return Scan(blocks, allocations, handles)


def normalise_ip(text: str) -> str:
    """An address written as ``a.b.c.d`` or ``a.b.c.d/32``, as a bare address."""
    return str(ipaddress.ip_interface(text).ip)


@dataclass
class Owners:
    """Who uses which addresses: workload endpoints and node tunnel addresses."""

    by_ip: dict[str, list[str]] = field(default_factory=dict)
    pods: set[tuple[str, str]] = field(default_factory=set)
    container_ids: set[str] = field(default_factory=set)
    nodes: set[str] = field(default_factory=set)

    def add(self, ip: str, owner: str) -> None:
        """Record that ``owner`` uses ``ip``."""
        self.by_ip.setdefault(normalise_ip(ip), []).append(owner)

    @classmethod
    async def load(cls, client: Client) -> Owners:
        """Read every WorkloadEndpoint and Node."""
        (weps, _), (nodes, _) = await asyncio.gather(client.list(WorkloadEndpoint), client.list(Node))
        owners = cls()
        for wep in weps:
            assert isinstance(wep, WorkloadEndpoint)
            spec = wep.spec
            for net in spec.ipNetworks or []:
                owners.add(net, f"Workload({wep.namespace}/{wep.name})")
            if spec.pod:
                owners.pods.add((wep.namespace or "default", spec.pod))
            if spec.containerID:
                owners.container_ids.add(spec.containerID)
        for node in nodes:
            assert isinstance(node, Node)
            owners.nodes.add(node.name)
            nspec = node.spec
            addrs = [nspec.ipv4VXLANTunnelAddr, nspec.ipv6VXLANTunnelAddr,
                     nspec.wireguard.interfaceIPv4Address if nspec.wireguard else None,
                     nspec.wireguard.interfaceIPv6Address if nspec.wireguard else None,
                     nspec.bgp.ipv4IPIPTunnelAddr if nspec.bgp else None]
            for addr in addrs:
                if addr:
                    owners.add(addr, f"Node({node.name})")
        return owners


@dataclass
class CheckReport:
    """The result of comparing IPAM with its users."""

    scan: Scan
    owners: Owners
    active_pools: list[str]
    leaked_ips: list[str]
    unallocated_in_use: list[str]
    non_calico_ips: list[str]
    leaked_handles: list[str]
    missing_handles: list[str]
    miscounted_handles: list[tuple[str, str, int, int]]
    cluster: dict[str, Any]

    @property
    def problems(self) -> int:
        """How many problems were found (0: IPAM is consistent and nothing leaked)."""
        return (len(self.leaked_ips) + len(self.unallocated_in_use) + len(self.non_calico_ips)
                + len(self.leaked_handles) + len(self.missing_handles) + len(self.miscounted_handles))

    def to_json(self, version: str) -> dict[str, Any]:
        """Calico's machine-readable report (``ipam check -o``), which ``ipam release --from-report`` reads."""
        allocations: dict[str, list[dict[str, Any]]] = {}
        for a in self.scan.allocations:
            allocations.setdefault(a.ip, []).append(a.to_json())
        return {
            "version": version,
            "clusterGUID": self.cluster.get("clusterGUID", ""),
            "datastoreLocked": self.cluster.get("datastoreLocked", False),
            "clusterInformationRevision": self.cluster.get("revision", ""),
            "clusterType": self.cluster.get("clusterType", ""),
            "allocations": allocations,
            "leakedHandles": [{"ID": h, "UID": None, "Revision": str(self.scan.handles[h][1])}
                              for h in self.leaked_handles] or None,
        }


async def cluster_info(client: Client) -> dict[str, Any]:
    """The ClusterInformation facts a report records (empty when there is none)."""
    try:
        info = await client.get(kind_class("ClusterInformation"), "default")
    except NotFound:
        return {}
    spec = info.to_dict().get("spec", {})
    ready = spec.get("datastoreReady")
    return {"clusterGUID": spec.get("clusterGUID", ""), "clusterType": spec.get("clusterType", ""),
            "datastoreLocked": ready is False, "revision": info.metadata.resourceVersion or ""}


async def check(backend: Backend, extra_owners: Mapping[str, list[str]] | None = None) -> CheckReport:
    """Compare every allocation with the endpoints and nodes that use addresses."""
    client = Client(backend)
    found, owners, (pools, _), cluster = await asyncio.gather(
        scan(backend), Owners.load(client), client.list(IPPool), cluster_info(client))
    for ip, names in (extra_owners or {}).items():
        for name in names:
            owners.add(ip, name)
    active = [ipaddress.ip_network(p.spec.cidr) for p in pools if isinstance(p, IPPool) and not p.spec.disabled]
    allocated: dict[str, list[Allocation]] = {}
    in_use_handles: dict[str, dict[str, int]] = {}
    for a in found.allocations:
        allocated.setdefault(a.ip, []).append(a)
        if a.handle == WINDOWS_RESERVED_HANDLE:
            owners.add(a.ip, "Reserved for Windows")
        if a.handle:
            per_block = in_use_handles.setdefault(a.handle, {})
            per_block[str(a.block)] = per_block.get(str(a.block), 0) + 1
    for ip, names in owners.by_ip.items():
        for a in allocated.get(ip, []):
            a.in_use = True
            a.owners.extend(names)
    leaked = sorted((ip for ip, allocs in allocated.items() if not any(a.in_use for a in allocs)), key=_ip_key)
    unallocated: list[str] = []
    non_calico: list[str] = []
    for ip in sorted(owners.by_ip, key=_ip_key):
        if ip in allocated:
            continue
        addr = ipaddress.ip_address(ip)
        (unallocated if any(addr in net for net in active) else non_calico).append(ip)
    leaked_handles = sorted(h for h in found.handles if h not in in_use_handles)
    missing = sorted(h for h in in_use_handles if h not in found.handles)
    miscounted = []
    for h, per_block in sorted(in_use_handles.items()):
        record = found.handles.get(h)
        if record is None:
            continue
        for block, actual in sorted(per_block.items()):
            recorded = record[0].blocks.get(block, 0)
            if recorded != actual:
                miscounted.append((h, block, recorded, actual))
    return CheckReport(found, owners, [str(n) for n in active], leaked, unallocated, non_calico,
                       leaked_handles, missing, miscounted, cluster)


def _ip_key(ip: str) -> tuple[int, int]:
    addr = ipaddress.ip_address(ip)
    return addr.version, int(addr)


@dataclass(frozen=True)
class Usage:
    """Capacity and use of one pool or block."""

    kind: str
    cidr: str
    total: int
    in_use: int

    @property
    def free(self) -> int:
        return self.total - self.in_use


async def utilization(backend: Backend) -> list[tuple[Usage, list[Usage]]]:
    """Per pool (and for blocks outside every pool): its use, and the use of each of its blocks."""
    found, (pools, _) = await asyncio.gather(scan(backend), Client(backend).list(IPPool))
    out: list[tuple[Usage, list[Usage]]] = []
    seen: set[IPNetwork] = set()
    for pool in sorted((p for p in pools if isinstance(p, IPPool)), key=lambda p: p.name):
        net = ipaddress.ip_network(pool.spec.cidr)
        rows = []
        for cidr in sorted((c for c in found.blocks if c.version == net.version and c.subnet_of(net)),  # type: ignore[arg-type]
                           key=lambda c: int(c.network_address)):
            seen.add(cidr)
            rows.append(Usage("Block", str(cidr), cidr.num_addresses, found.blocks[cidr].in_use()))
        out.append((Usage("IP Pool", str(net), net.num_addresses, sum(r.in_use for r in rows)), rows))
    orphans = [Usage("Block", str(c), c.num_addresses, b.in_use()) for c, b in sorted(
        found.blocks.items(), key=lambda kv: (kv[0].version, int(kv[0].network_address))) if c not in seen]
    if orphans:
        out.append((Usage("", "", sum(r.total for r in orphans), sum(r.in_use for r in orphans)), orphans))
    return out
