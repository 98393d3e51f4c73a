"""The Linux side of a Calico pod interface: a veth pair, addresses, routes and sysctls (rtnetlink).

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

The netlink requests go through :mod:`.rtnetlink` (not pyroute2: see there why)
and run inline: the kernel answers each in well under a millisecond, bar veth
creation and deletion (a few ms), and running them in order keeps an undo from
racing the setup it undoes.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.cni.errors import DATAPLANE_FAILURE, UNKNOWN_CONTAINER, CniError
from services.cni.rtnetlink import (
    IFA_ADDRESS,
    IFA_FLAGS,
    IFA_LOCAL,
    IFF_UP,
    IFLA_ADDRESS,
    IFLA_IFNAME,
    IFLA_INFO_DATA,
    IFLA_INFO_KIND,
    IFLA_LINKINFO,
    IFLA_MTU,
    IFLA_NET_NS_FD,
    NLM_F_CREATE,
    NLM_F_DUMP,
    NLM_F_EXCL,
    NLM_F_REPLACE,
    RTA_DST,
    RTA_GATEWAY,
    RTA_OIF,
    RTM_DELLINK,
    RTM_GETADDR,
    RTM_GETLINK,
    RTM_GETROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    VETH_INFO_PEER,
    Message,
    NetlinkError,
    Rtnl,
    attr,
    attr_ip,
    attr_str,
    attr_u32,
    dump_rtmsg,
    format_mac,
    ifaddrmsg,
    ifinfomsg,
    in_netns,
    rtmsg,
)
from services.cni.workload import GATEWAY_V4, GATEWAY_V6, HOST_MAC

SCOPE_LINK = 253
IFA_F_NODAD = 0x02
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
_FAMILIES = (socket.AF_INET, socket.AF_INET6)


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


def _index(rt: Rtnl, name: str) -> int | None:
    """The index of the link called ``name``, or None."""
    try:
        found = rt.call(RTM_GETLINK, 0, ifinfomsg() + attr_str(IFLA_IFNAME, name))
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return found[0].header[2] if found else None


def _link(rt: Rtnl, index: int) -> Message | None:
    try:
        found = rt.call(RTM_GETLINK, 0, ifinfomsg(index))
    except NetlinkError as exc:
        if exc.code == errno.ENODEV:
            return None
        raise
    return found[0] if found else None


def _mac(rt: Rtnl, index: int) -> str:
    link = _link(rt, index)
    raw = link.attrs.get(IFLA_ADDRESS) if link is not None else None
    return format_mac(raw) if raw else ""


def _set_up(rt: Rtnl, index: int) -> None:
    rt.call(RTM_NEWLINK, 0, ifinfomsg(index, IFF_UP, IFF_UP))


def _routes(rt: Rtnl) -> list[Message]:
    """Every route of both families, in every table."""
    return [route for family in _FAMILIES for route in rt.call(RTM_GETROUTE, NLM_F_DUMP, dump_rtmsg(family))]


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
        return _setup(netns, ifname, host_veth, addresses, mtu, allow_ip_forwarding)
    except NetlinkError as exc:
        raise CniError(DATAPLANE_FAILURE, "failed to set up the pod interface",
                       f"{host_veth}/{ifname}: netlink error {exc.code}: {exc}") from None


def _setup(netns: str, ifname: str, host_veth: str, addresses: Sequence[IPInterface], mtu: int,
           allow_ip_forwarding: bool) -> Wiring:
    has_v6 = any(a.version == 6 for a in addresses)
    with Rtnl() as host, Rtnl(netns) as cont:
        stale = _index(host, host_veth)
        if stale is not None:
            host.call(RTM_DELLINK, 0, ifinfomsg(stale))
        stale = _index(cont, ifname)
        if stale is not None:
            cont.call(RTM_DELLINK, 0, ifinfomsg(stale))
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            peer = ifinfomsg() + attr_str(IFLA_IFNAME, ifname) + attr_u32(IFLA_NET_NS_FD, fd) + attr_u32(IFLA_MTU, mtu)
            info = attr(IFLA_INFO_KIND, b"veth") + attr(IFLA_INFO_DATA, attr(VETH_INFO_PEER, peer))
            host.call(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                      ifinfomsg() + attr_str(IFLA_IFNAME, host_veth) + attr_u32(IFLA_MTU, mtu)
                      + attr(IFLA_LINKINFO, info))
        finally:
            os.close(fd)
        hidx = _index(host, host_veth)
        cidx = _index(cont, ifname)
        if hidx is None or cidx is None:
            raise CniError(DATAPLANE_FAILURE, "veth pair vanished after creation", f"{host_veth}/{ifname}")
        host.call(RTM_NEWLINK, 0, ifinfomsg(hidx) + attr(IFLA_ADDRESS, bytes.fromhex(HOST_MAC.replace(":", ""))))
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{host_veth}/proxy_arp", "1")
        _write_sysctl(f"/proc/sys/net/ipv4/neigh/{host_veth}/proxy_delay", "0")
        _write_sysctl(f"/proc/sys/net/ipv4/conf/{host_veth}/forwarding", "1")
        if has_v6 and os.path.exists(f"/proc/sys/net/ipv6/conf/{host_veth}"):
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_veth}/accept_dad", "0")  # gateway usable at once
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_veth}/accept_ra", "0")
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_veth}/proxy_ndp", "1")
            _write_sysctl(f"/proc/sys/net/ipv6/conf/{host_veth}/forwarding", "1")
        _set_up(host, hidx)
        _set_up(cont, cidx)
        for addr in addresses:
            ip = str(addr.ip)
            if addr.version == 4:
                body = ifaddrmsg(socket.AF_INET, 32, cidx) + attr_ip(IFA_LOCAL, ip) + attr_ip(IFA_ADDRESS, ip)
            else:
                body = ifaddrmsg(socket.AF_INET6, 128, cidx) + attr_ip(IFA_ADDRESS, ip) + attr_u32(IFA_FLAGS, IFA_F_NODAD)
            cont.call(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)
        oif = attr_u32(RTA_OIF, cidx)
        if any(a.version == 4 for a in addresses):
            cont.call(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                      rtmsg(socket.AF_INET, 32, SCOPE_LINK) + attr_ip(RTA_DST, GATEWAY_V4) + oif)
            cont.call(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                      rtmsg(socket.AF_INET, 0) + attr_ip(RTA_GATEWAY, GATEWAY_V4) + oif)
        if has_v6:
            cont.call(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL,
                      rtmsg(socket.AF_INET6, 0) + attr_ip(RTA_GATEWAY, GATEWAY_V6) + oif)
        for addr in addresses:
            family = socket.AF_INET if addr.version == 4 else socket.AF_INET6
            host.call(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE,
                      rtmsg(family, addr.max_prefixlen, SCOPE_LINK) + attr_ip(RTA_DST, str(addr.ip))
                      + attr_u32(RTA_OIF, hidx))
        container_mac = _mac(cont, cidx)
    if allow_ip_forwarding:
        _container_forwarding(netns)
    return Wiring(host_veth, HOST_MAC, ifname, container_mac)


def _container_forwarding(netns: str) -> None:
    """Turn on IPv4 forwarding inside the container (Calico's ``allow_ip_forwarding``)."""
    in_netns(netns, lambda: _write_sysctl("/proc/sys/net/ipv4/ip_forward", "1"))


async def teardown(netns: str, ifname: str) -> bool:
    """Remove the container interface (and so its host peer); False when there was nothing to remove."""
    if not netns or not is_netns(netns):
        return False
    try:
        with Rtnl(netns) as cont:
            idx = _index(cont, ifname)
            if idx is None:
                return False
            cont.call(RTM_DELLINK, 0, ifinfomsg(idx))
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
    with Rtnl() as host, Rtnl(netns) as cont:
        hidx = _index(host, host_veth)
        if hidx is not None:
            link = _link(host, hidx)
            seen.host_link_up = bool(link is not None and link.header[3] & IFF_UP)
            for route in _routes(host):
                dst = route.ip(RTA_DST)
                if route.u32(RTA_OIF) == hidx and dst:
                    seen.host_routes.add(f"{dst}/{route.header[1]}")
        cidx = _index(cont, ifname)
        if cidx is None:
            return seen
        link = _link(cont, cidx)
        seen.container_link_up = bool(link is not None and link.header[3] & IFF_UP)
        for addr in cont.call(RTM_GETADDR, NLM_F_DUMP, ifaddrmsg(socket.AF_UNSPEC, 0, 0)):
            if addr.header[4] == cidx:
                seen.container_addresses.add(f"{addr.ip(IFA_ADDRESS)}/{addr.header[1]}")
        for route in _routes(cont):
            gateway = route.ip(RTA_GATEWAY)
            if route.header[1] == 0 and route.u32(RTA_OIF) == cidx and gateway:
                seen.default_gateways.add(gateway)
    return seen
