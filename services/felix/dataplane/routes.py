"""Routes, interface sysctls and tunnel devices, through pyroute2's ``AsyncIPRoute`` and :mod:`rtnl`.

How it works: the driver tells the manager what it wants (workload
interfaces and their nets, remote blocks, VTEPs); :meth:`RouteManager.apply`
reads the links once, then programs only the difference from what it last
programmed: ``/32`` (``/128``) scope-link routes to each workload via its
``cali*`` veth, Felix's per-interface sysctls (:mod:`sysctls`) the first time
it sees an interface (or a new ifindex for it), the ``vxlan.calico`` device with its
neighbour/FDB entries and on-link routes, and IPIP routes when ``tunl0``
exists. A workload whose interface is not there yet stays pending and is
retried. :meth:`resync` compares with a dump of the kernel instead (start-up
sweep of stale routes on our interfaces, periodic repair). Routes (changes in
bulk, dumps) go through :class:`rtnl.RouteSocket`, interface indexes through
``if_nametoindex``; pyroute2 (~100-150 ms of CPU to import) is imported, in a
worker thread, only when a tunnel device, neighbour or FDB entry is involved.
:meth:`RouteManager.prepare` does ahead what lets no traffic through.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import ipaddress
import os
import socket
from types import SimpleNamespace
from typing import Any

import structlog

from services.felix.dataplane.errors import CapabilityMissing, DataplaneError
from services.felix.dataplane.namespace import NamespaceThread
from services.felix.dataplane.netlinkplan import (
    NetlinkRequest,
    RouteTarget,
    fdb_request,
    neigh_request,
    network,
    normalize_cidr,
    route_request,
    send,
)
from services.felix.dataplane.rtnl import RouteSocket
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.dataplane.sysctls import (
    configure_host_forwarding,
    configure_workload_ifaces,
    harden_workload_ifaces,
)
from services.felix.dataplane.tunnels import (
    IPIP_DEVICE,
    IPIP_OVERHEAD,
    VXLAN_DEVICE,
    VXLANDevice,
    ipip_device_plan,
    ipip_supported,
    vtep_mac_for_node,
    vxlan_mtu,
)
from services.felix.messages import (
    RouteRemove,
    RouteType,
    RouteUpdate,
    VXLANTunnelEndpointUpdate,
    WorkloadEndpoint,
)

log = structlog.get_logger("felix.dataplane.routes")
_GONE = (errno.ESRCH, errno.ENODEV, errno.ENOENT)
_pyroute2: SimpleNamespace | None = None


def pyroute2() -> SimpleNamespace:
    """What this module uses of pyroute2, imported on first use."""
    global _pyroute2
    if _pyroute2 is None:
        root = importlib.import_module("pyroute2")
        _pyroute2 = SimpleNamespace(
            AsyncIPRoute=root.AsyncIPRoute,
            NetlinkError=importlib.import_module("pyroute2.netlink.exceptions").NetlinkError,
        )
    return _pyroute2


class RouteManager:
    """Desired versus programmed routes, interface settings and tunnel state."""

    def __init__(self, thread: NamespaceThread, hostname: str, settings: DataplaneSettings) -> None:
        self.thread = thread
        self.hostname = hostname
        self.settings = settings
        self.workloads: dict[str, WorkloadEndpoint] = {}
        self.remote_routes: dict[str, RouteUpdate] = {}
        self.vteps: dict[str, VXLANTunnelEndpointUpdate] = {}
        self.pending: set[str] = set()
        self._ipr: Any = None
        self._route_socket: RouteSocket | None = None
        self._routes: dict[str, tuple[int, str | None]] = {}  # dst -> (oif, gateway) as programmed
        self._configured: dict[str, int] = {}  # iface -> ifindex its sysctls were written for
        self._hardened: dict[str, tuple[int, str]] = {}  # iface -> (ifindex, rp_filter) of its restricting sysctls
        self._neigh: dict[str, str] = {}  # VTEP address -> MAC
        self._fdb: dict[str, str] = {}  # MAC -> underlay address
        self._forwarding_done = False
        self._ipip_warned = False
        self._index: dict[str, int] = {}  # interface name -> ifindex, from dumps and lookups
        self._dirty_ifaces: set[str] = set()
        self._routes_dirty = True
        self._tunnels_dirty = True
        self._fresh_links: dict[str, dict[str, Any]] | None = None

    async def open(self) -> None:
        """Open the route socket in the managed namespace (once; later calls do nothing)."""
        if self._route_socket is None:
            self._route_socket = await self.thread.run(RouteSocket)

    async def _open_ipr(self) -> Any:
        """pyroute2's socket, for tunnel devices, neighbours and FDB (imported on first use)."""
        if self._ipr is None:
            if _pyroute2 is None:  # import in a worker thread: this event loop stays free
                await asyncio.to_thread(pyroute2)
            ipr_class = pyroute2().AsyncIPRoute
            netns = self.thread.netns
            self._ipr = ipr_class(netns=netns, flags=0) if netns else ipr_class()
        return self._ipr

    def close(self) -> None:
        """Close the netlink sockets."""
        if self._ipr is not None:
            self._ipr.close()
            self._ipr = None
        if self._route_socket is not None:
            self._route_socket.close()
            self._route_socket = None

    # Desired state ----------------------------------------------------------
    @property
    def local_vtep(self) -> VXLANTunnelEndpointUpdate | None:
        """This node's VTEP, when the graph sent one."""
        return self.vteps.get(self.hostname)

    @property
    def vxlan_on(self) -> bool:
        """VXLAN is programmed when enabled (or, unset, when this node has a VTEP)."""
        enabled = self.settings.vxlan_enabled
        return bool(self.local_vtep) if enabled is None else enabled and self.local_vtep is not None

    def remote_vxlan_hosts(self) -> frozenset[str]:
        """Underlay addresses of remote VTEPs (allowed to send us VXLAN)."""
        return frozenset(v.parent_device_ip for n, v in self.vteps.items() if n != self.hostname)

    def _desired_routes(self) -> dict[str, RouteTarget]:
        want: dict[str, RouteTarget] = {}
        for iface, endpoint in self.workloads.items():
            for net in (*endpoint.ipv4_nets, *endpoint.ipv6_nets):
                want[normalize_cidr(net)] = RouteTarget(iface)
        for dst, route in self.remote_routes.items():
            if route.ip_pool_type == "vxlan" and self.vxlan_on:
                vtep = self.vteps.get(route.dst_node_name)
                if vtep is not None:
                    want[dst] = RouteTarget(VXLAN_DEVICE, vtep.ipv4_addr)
            elif route.ip_pool_type == "ipip" and route.dst_node_ip:
                if ipip_supported(set(self._index)):
                    want[dst] = RouteTarget(IPIP_DEVICE, route.dst_node_ip)
                elif not self._ipip_warned:
                    self._ipip_warned = True
                    log.error("ipip unavailable", reason=str(CapabilityMissing(
                        "the kernel has no ipip module (no tunl0 device); IPIP routes are not programmed")))
        return want

    # Applying -----------------------------------------------------------------
    async def prepare(self) -> None:
        """Do ahead what the next :meth:`apply` would, as far as it lets no traffic through: parse the
        routes' destinations and write the restricting sysctls of new workload interfaces (the first
        apply calls it while nft loads the rules: measured, a third of the interface sysctls' time)."""
        for dst in self._desired_routes():
            network(dst)
        todo = [(iface, _rp_filter(endpoint)) for iface, endpoint in self.workloads.items()
                if (index := self._index.get(iface)) is not None and self._configured.get(iface) != index
                and self._hardened.get(iface) != (index, _rp_filter(endpoint))]
        if todo:
            failed = await self.thread.run(harden_workload_ifaces, todo)
            for iface, rp_filter in todo:
                if iface not in failed:
                    self._hardened[iface] = (self._index[iface], rp_filter)

    def mark_ifaces(self, ifaces: set[str]) -> None:
        """These interfaces changed (endpoint messages or link events): look at them next apply."""
        self._dirty_ifaces |= ifaces

    def set_remote_route(self, msg: RouteUpdate | RouteRemove) -> None:
        """A remote route changed (only remote workload blocks are programmed)."""
        dst = _cidr(msg.dst)
        if isinstance(msg, RouteUpdate) and msg.type is RouteType.REMOTE_WORKLOAD:
            self.remote_routes[dst] = msg
        else:
            self.remote_routes.pop(dst, None)
        self._routes_dirty = True

    def mark_routes(self) -> None:
        """Remote routes changed: recompute the route diff next apply."""
        self._routes_dirty = True

    def mark_tunnels(self) -> None:
        """VTEPs or settings changed: re-read the links and re-check the tunnel devices next apply."""
        self._tunnels_dirty = True

    def _need_link_details(self) -> bool:
        return self.vxlan_on or bool(self.settings.ipip_enabled and self.settings.ipip_tunnel_addr)

    async def _links(self) -> dict[str, dict[str, Any]]:
        """Every link by name: the netlink details when a tunnel needs them, else only the index.

        pyroute2 decodes every attribute of every link (50-100 ms for 200 veths);
        ``if_nameindex`` in the namespace thread is 2 ms.
        """
        out: dict[str, dict[str, Any]] = {}
        if self._need_link_details():
            ipr = await self._open_ipr()
            async for link in await ipr.link("dump"):
                out[link.get("ifname")] = link
        else:
            for index, name in await self.thread.run(socket.if_nameindex):
                out[name] = {"index": index}
        self._index = {name: link["index"] for name, link in out.items()}
        return out

    async def _refresh_indexes(self, ifaces: set[str]) -> None:
        found = await self.thread.run(_if_indexes, sorted(ifaces))
        for iface in ifaces:
            index = found.get(iface)
            if index is None:
                self._index.pop(iface, None)
            else:
                self._index[iface] = index

    async def apply(self) -> None:
        """Program the difference between desired and programmed state (only what was marked)."""
        if not (self._tunnels_dirty or self._routes_dirty or self._dirty_ifaces or self.pending):
            return
        await self.open()
        if not self._forwarding_done:
            await self.thread.run(configure_host_forwarding, self.settings.ipv6_support)
            self._forwarding_done = True
        if self._tunnels_dirty:
            self._tunnels_dirty = False
            links = self._fresh_links if self._fresh_links is not None else await self._links()
            self._fresh_links = None
            if self.vxlan_on:
                await self._ensure_vxlan(links)
            if links.get(IPIP_DEVICE) is not None and self.settings.ipip_enabled and self.settings.ipip_tunnel_addr:
                await self._ensure_ipip(links)
            check = set(self.workloads)
        else:
            check = (self._dirty_ifaces | self.pending) & set(self.workloads)
            if check:
                await self._refresh_indexes(check)
        self._dirty_ifaces = set()
        self._routes_dirty = False
        await self._configure_ifaces(check)
        await self._program_routes(self._routes)

    async def resync(self) -> None:
        """Compare with the kernel's routes, neighbours and FDB; remove stale entries, restore missing ones."""
        await self.read_kernel()
        await self.apply()

    async def read_kernel(self) -> None:
        """Read the kernel's links, routes, neighbours and FDB: the next :meth:`apply` repairs the difference.

        Only reads, so it may run while an nftables batch is applied.
        """
        await self.open()
        links = await self._links()
        ours = {link["index"] for name, link in links.items()
                if name in (VXLAN_DEVICE, IPIP_DEVICE) or name.startswith(self.settings.interface_prefixes)}
        actual: dict[str, tuple[int, str | None]] = {}
        sock = self._route_socket
        assert sock is not None
        for family in (socket.AF_INET, socket.AF_INET6):
            for route in await self.thread.run(sock.dump_routes, family):
                if route.table != 254 or route.oif is None or route.oif not in ours or route.type != 1:
                    continue
                if route.dst is None:
                    continue
                if route.protocol == 2:  # proto kernel: connected routes belong to the kernel
                    continue
                actual[normalize_cidr(route.dst)] = (route.oif, route.gateway)
        self._routes = actual
        self._configured = {name: idx for name, idx in self._configured.items() if self._index.get(name) == idx}
        self._neigh, self._fdb = {}, {}
        vx = links.get(VXLAN_DEVICE)
        if vx is not None:
            ipr = await self._open_ipr()
            async for entry in await ipr.neigh("dump", ifindex=vx["index"], family=2):
                if entry.get("ifindex") == vx["index"] and entry.get("state", 0) & 0x80:
                    self._neigh[entry.get("NDA_DST")] = (entry.get("NDA_LLADDR") or "").lower()
            async for entry in await ipr.fdb("dump", ifindex=vx["index"]):
                if entry.get("ifindex") == vx["index"] and entry.get("NDA_DST"):
                    self._fdb[(entry.get("NDA_LLADDR") or "").lower()] = entry.get("NDA_DST")
        self._tunnels_dirty = True
        self._fresh_links = links

    async def _configure_ifaces(self, check: set[str]) -> None:
        self.pending = set()
        todo: list[tuple[str, str, bool]] = []
        for iface in check:
            endpoint = self.workloads[iface]
            index = self._index.get(iface)
            if index is None:
                self.pending.add(iface)
                continue
            if self._configured.get(iface) == index:
                continue
            rp_filter = _rp_filter(endpoint)
            todo.append((iface, rp_filter, self._hardened.get(iface) == (index, rp_filter)))
        if todo:  # one trip to the namespace thread for all of them
            failed = await self.thread.run(configure_workload_ifaces, todo, self.settings.ipv6_support)
            for iface, _rp, _hardened in todo:
                self._hardened.pop(iface, None)
                if iface in failed:  # the interface vanished between the lookup and the write
                    log.warning("sysctl failed", iface=iface, error=failed[iface])
                    self.pending.add(iface)
                else:
                    self._configured[iface] = self._index[iface]
        for iface in [i for i in self._configured if i not in self.workloads]:
            del self._configured[iface]

    async def _program_routes(self, programmed: dict[str, tuple[int, str | None]]) -> None:
        want = self._desired_routes()
        proto = self.settings.device_route_protocol
        todo: list[tuple[str, RouteTarget, tuple[int, str | None]]] = []
        for dst, target in want.items():
            index = self._index.get(target.iface)
            if index is None:
                continue  # pending: the interface does not exist yet
            state = (index, target.gateway)
            if programmed.get(dst) != state:
                todo.append((dst, target, state))
        requests = [route_request("replace", dst, target, state[0], proto) for dst, target, state in todo]
        gone = [(dst, programmed[dst]) for dst in programmed if dst not in want]
        requests += [route_request("del", dst, RouteTarget("", gateway), oif, proto) for dst, (oif, gateway) in gone]
        results = await self._route_requests(requests)
        for (dst, target, state), code in zip(todo, results, strict=False):
            if code:
                log.warning("route failed", dst=dst, iface=target.iface, error=os.strerror(code))
                if target.iface in self.workloads:
                    self.pending.add(target.iface)
            else:
                programmed[dst] = state
        for (dst, _state), code in zip(gone, results[len(todo):], strict=True):
            del programmed[dst]
            if code and code not in _GONE:
                log.warning("route delete failed", dst=dst, error=os.strerror(code))

    async def _route_requests(self, requests: list[NetlinkRequest]) -> list[int]:
        if not requests:
            return []
        sock = self._route_socket
        assert sock is not None
        return await self.thread.run(sock.run, requests)

    # VXLAN ----------------------------------------------------------------------
    async def _ensure_vxlan(self, links: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        await self._open_ipr()
        vtep = self.local_vtep
        assert vtep is not None
        parent = await self._parent_link(vtep.parent_device_ip, links)
        if parent is None:
            log.warning("vxlan parent missing", address=vtep.parent_device_ip)
            return links
        device = VXLANDevice(self.settings.vxlan_vni, self.settings.vxlan_port, vtep.parent_device_ip,
                             parent["index"], vtep.mac or vtep_mac_for_node(self.hostname),
                             vxlan_mtu(self.settings.vxlan_mtu, parent.get("IFLA_MTU") or 1500))
        existing = links.get(VXLAN_DEVICE)
        if existing is not None and (reason := device.mismatch(existing)):
            log.info("vxlan device replaced", reason=reason)
            await self._ipr.link("del", index=existing["index"])
            existing = None
            self._neigh, self._fdb = {}, {}
            self._routes = {d: s for d, s in self._routes.items() if s[0] != links[VXLAN_DEVICE]["index"]}
        if existing is None:
            await send(self._ipr, device.create_request())
            links = await self._links()
            existing = links[VXLAN_DEVICE]
            self._routes_dirty = True
        index = existing["index"]
        if existing.get("IFLA_MTU") != device.mtu:
            await self._ipr.link("set", index=index, mtu=device.mtu)
        if not existing["flags"] & 1:
            await self._ipr.link("set", index=index, state="up")
        await self._ensure_addr(index, vtep.ipv4_addr)
        want_neigh = {v.ipv4_addr: (v.mac or vtep_mac_for_node(n)).lower()
                      for n, v in self.vteps.items() if n != self.hostname}
        want_fdb = {(v.mac or vtep_mac_for_node(n)).lower(): v.parent_device_ip
                    for n, v in self.vteps.items() if n != self.hostname}
        for ip, mac in want_neigh.items():
            if self._neigh.get(ip) != mac:
                await send(self._ipr, neigh_request("replace", index, ip, mac))
                self._neigh[ip] = mac
        for mac, dst in want_fdb.items():
            if self._fdb.get(mac) != dst:
                if mac in self._fdb:
                    await self._quiet(send(self._ipr, fdb_request("del", index, mac, self._fdb[mac])))
                await send(self._ipr, fdb_request("replace", index, mac, dst))
                self._fdb[mac] = dst
        for ip in [i for i in self._neigh if i not in want_neigh]:
            await self._quiet(send(self._ipr, neigh_request("del", index, ip, self._neigh.pop(ip))))
        for mac in [m for m in self._fdb if m not in want_fdb]:
            await self._quiet(send(self._ipr, fdb_request("del", index, mac, self._fdb.pop(mac))))
        return links

    async def _parent_link(self, address: str, links: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
        async for addr in await self._ipr.addr("dump"):
            if addr.get("IFA_ADDRESS") == address or addr.get("IFA_LOCAL") == address:
                for link in links.values():
                    if link["index"] == addr["index"]:
                        return link
        return None

    async def _ensure_addr(self, index: int, address: str) -> None:
        have = [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}" async for a in await self._ipr.addr("dump", index=index)
                if a.get("family") == 2]
        want = f"{ipaddress.ip_address(address)}/32"
        for entry in have:
            if entry != want:
                ip, _, length = entry.partition("/")
                await self._quiet(self._ipr.addr("del", index=index, address=ip, prefixlen=int(length)))
        if want not in have:
            await self._ipr.addr("replace", index=index, address=str(address), prefixlen=32)

    async def _ensure_ipip(self, links: dict[str, dict[str, Any]]) -> None:
        await self._open_ipr()
        tunl = links[IPIP_DEVICE]
        have = [f"{a.get('IFA_ADDRESS')}/{a['prefixlen']}"
                async for a in await self._ipr.addr("dump", index=tunl["index"]) if a.get("family") == 2]
        mtu = self.settings.ipip_mtu or max((tunl.get("IFLA_MTU") or 1500) - IPIP_OVERHEAD, 68)
        for request in ipip_device_plan(tunl["index"], mtu, self.settings.ipip_tunnel_addr, have):
            await send(self._ipr, request)

    @staticmethod
    async def _quiet(awaitable: Any) -> None:
        try:
            await awaitable
        except pyroute2().NetlinkError as exc:
            if exc.code not in (errno.ESRCH, errno.ENOENT, errno.EADDRNOTAVAIL, errno.ENODEV):
                raise


def _if_indexes(names: list[str]) -> dict[str, int]:
    """The index of each interface that exists (run in the namespace thread)."""
    out: dict[str, int] = {}
    for name in names:
        try:
            out[name] = socket.if_nametoindex(name)
        except OSError:
            continue
    return out


def _cidr(text: str) -> str:
    try:
        return normalize_cidr(text)
    except ValueError:
        raise DataplaneError(f"route destination {text!r} is not a CIDR") from None


def _rp_filter(endpoint: WorkloadEndpoint) -> str:
    return "0" if endpoint.allow_spoofed_source_prefixes else "1"
