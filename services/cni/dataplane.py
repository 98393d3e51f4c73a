"""The Linux side of a Calico pod interface: a veth pair, addresses, routes and sysctls (pyroute2).

What ADD leaves behind (Calico's ``DoNetworking``)::

    host netns                                   container netns
    cali<11 hex>  mac ee:ee:ee:ee:ee:ee  <-veth->  eth0  10.0.0.5/32
      proxy_arp=1, neigh proxy_delay=0,             169.254.1.1 dev eth0 scope link
      forwarding=1                                  default via 169.254.1.1 dev eth0
    10.0.0.5/32 dev cali<11 hex> scope link         (IPv6: <addr>/128, default via
                                                     fe80::ecee:eeff:feee:eeee dev eth0)

The "host" is whatever network namespace the plugin runs in. ADD first removes
a same-named host veth and a same-named container interface, so running it
twice converges. DEL removes the container interface (its host peer goes with
it) and does nothing when the namespace is gone.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyroute2 import AsyncIPRoute
from pyroute2 import netns as pnetns
from pyroute2.netlink.exceptions import NetlinkError

from services.cni.errors import DATAPLANE_FAILURE, UNKNOWN_CONTAINER, CniError
from services.cni.workload import GATEWAY_V4, GATEWAY_V6, HOST_MAC

SCOPE_LINK = 253
IFA_F_NODAD = 0x02
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def is_netns(path: str) -> bool:
    """True when ``path`` is a network namespace handle (a bind mount or /proc/<pid>/ns/net)."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def _write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as fh:
            fh.write(value)
    except OSError as exc:
        raise CniError(DATAPLANE_FAILURE, "failed to set sysctl", f"{path}={value}: {exc.strerror}") from None


async def _index(ipr: AsyncIPRoute, name: str) -> int | None:
    found = await ipr.link_lookup(ifname=name)
    return found[0] if found else None


async def _mac(ipr: AsyncIPRoute, index: int) -> str:
    links = [link async for link in await ipr.link("dump", index=index)]
    return str(links[0].get("address")) if links else ""


@dataclass
class Wiring:
    """What ADD created: the two interface names and their MACs."""

    host_veth: str
    host_mac: str
    ifname: str
    container_mac: str


async def setup(netns: str, ifname: str, host_veth: str, addresses: Sequence[IPInterface], mtu: int,
                allow_ip_forwarding: bool = False) -> Wiring:
    """Create and configure the pod's interface; raise CniError (code 3 when the namespace is missing)."""
    if not is_netns(netns):
        raise CniError(UNKNOWN_CONTAINER, "container network namespace does not exist", netns)
    try:
        return await _setup(netns, ifname, host_veth, addresses, mtu, allow_ip_forwarding)
    except NetlinkError as exc:
        raise CniError(DATAPLANE_FAILURE, "failed to set up the pod interface",
                       f"{host_veth}/{ifname}: netlink error {exc.code}: {exc}") from None


async def _setup(netns: str, ifname: str, host_veth: str, addresses: Sequence[IPInterface], mtu: int,
                 allow_ip_forwarding: bool) -> Wiring:
    has_v6 = any(a.version == 6 for a in addresses)
    async with AsyncIPRoute() as host, AsyncIPRoute(netns=netns, flags=0) as cont:
        stale = await _index(host, host_veth)
        if stale is not None:
            await host.link("del", index=stale)
        stale = await _index(cont, ifname)
        if stale is not None:
            await cont.link("del", index=stale)
        fd = os.open(netns, os.O_RDONLY)
        try:
            await host.link("add", ifname=host_veth, kind="veth", mtu=mtu,
                            peer={"ifname": ifname, "net_ns_fd": fd, "mtu": mtu})
        finally:
            os.close(fd)
        hidx = await _index(host, host_veth)
        cidx = await _index(cont, ifname)
        if hidx is None or cidx is None:
            raise CniError(DATAPLANE_FAILURE, "veth pair vanished after creation", f"{host_veth}/{ifname}")
        await host.link("set", index=hidx, address=HOST_MAC)
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{host_veth}/proxy_arp", "1")
        _write_sysctl(f"/proc/sys/net/ipv4/neigh/{host_veth}/proxy_delay", "0")
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{host_veth}/forwarding", "1")
        if has_v6 and os.path.exists(f"/proc/sys/net/ipv6/conf/{host_veth}"):
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_veth}/accept_dad", "0")  # gateway usable at once
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_veth}/accept_ra", "0")
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_veth}/proxy_ndp", "1")
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_veth}/forwarding", "1")
        await host.link("set", index=hidx, state="up")
        await cont.link("set", index=cidx, state="up")
        for addr in addresses:
            extra = {"IFA_FLAGS": IFA_F_NODAD} if addr.version == 6 else {}
            await cont.addr("add", index=cidx, address=str(addr.ip), prefixlen=addr.max_prefixlen, **extra)
        if any(a.version == 4 for a in addresses):
            await cont.route("add", dst=f"{GATEWAY_V4}/32", oif=cidx, scope=SCOPE_LINK)
            await cont.route("add", dst="0.0.0.0/0", gateway=GATEWAY_V4, oif=cidx)
        if has_v6:
            await cont.route("add", dst="::/0", gateway=GATEWAY_V6, oif=cidx)
        for addr in addresses:
            await host.route("replace", dst=f"{addr.ip}/{addr.max_prefixlen}", oif=hidx, scope=SCOPE_LINK)
        container_mac = await _mac(cont, cidx)
    if allow_ip_forwarding:
        await _container_forwarding(netns)
    return Wiring(host_veth, HOST_MAC, ifname, container_mac)


async def _container_forwarding(netns: str) -> None:
    """Turn on IPv4 forwarding inside the container (Calico's ``allow_ip_forwarding``)."""

    def work() -> None:
        pnetns.pushns(netns)
        try:
            _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")
        finally:
            pnetns.popns()

    await asyncio.to_thread(work)


async def teardown(netns: str, ifname: str) -> bool:
    """Remove the container interface (and so its host peer); False when there was nothing to remove."""
    if not netns or not is_netns(netns):
        return False
    try:
        async with AsyncIPRoute(netns=netns, flags=0) as cont:
            idx = await _index(cont, ifname)
            if idx is None:
                return False
            await cont.link("del", index=idx)
            return True
    except NetlinkError as exc:
        raise CniError(DATAPLANE_FAILURE, "failed to remove the pod interface",
                       f"{ifname} in {netns}: netlink error {exc.code}") from None


@dataclass
class Observed:
    """What CHECK finds on the host and in the container."""

    netns_exists: bool
    host_link_up: bool = False
    container_link_up: bool = False
    container_addresses: set[str] = field(default_factory=set)
    default_gateways: set[str] = field(default_factory=set)
    host_routes: set[str] = field(default_factory=set)


async def observe(netns: str, ifname: str, host_veth: str) -> Observed:
    """Read the state CHECK compares with the previous result."""
    if not is_netns(netns):
        return Observed(False)
    seen = Observed(True)
    async with AsyncIPRoute() as host, AsyncIPRoute(netns=netns, flags=0) as cont:
        hidx = await _index(host, host_veth)
        if hidx is not None:
            links = [link async for link in await host.link("dump", index=hidx)]
            seen.host_link_up = bool(links and links[0]["flags"] & 1)
            for family in (2, 10):
                for route in [r async for r in await host.route("dump", family=family)]:
                    if route.get("oif") == hidx and route.get("dst"):
                        seen.host_routes.add(f"{route.get('dst')}/{route['dst_len']}")
        cidx = await _index(cont, ifname)
        if cidx is None:
            return seen
        links = [link async for link in await cont.link("dump", index=cidx)]
        seen.container_link_up = bool(links and links[0]["flags"] & 1)
        for addr in [a async for a in await cont.addr("dump", index=cidx)]:
            seen.container_addresses.add(f"{addr.get('address')}/{addr['prefixlen']}")
        for family in (2, 10):
            for route in [r async for r in await cont.route("dump", family=family)]:
                if route["dst_len"] == 0 and route.get("oif") == cidx and route.get("gateway"):
                    seen.default_gateways.add(str(route.get("gateway")))
    return seen
