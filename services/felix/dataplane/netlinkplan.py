"""Netlink requests as data: what the route manager sends, built without a socket.

How it works: the managers decide *what* the kernel should hold (routes to
workloads and remote blocks, the VXLAN/IPIP devices, neighbour and FDB
entries) as :class:`NetlinkRequest` values; :func:`send` hands one to
pyroute2's ``AsyncIPRoute``; :func:`encode_route` packs a route request into
the bytes of an ``RTM_NEWROUTE``/``RTM_DELROUTE`` message by hand (a few
microseconds; pyroute2 takes ~250), which :mod:`rtnl` sends in bulk and tests
check against pyroute2's decoder, also for devices this kernel lacks (IPIP).
Nothing here imports pyroute2 until a message is decoded.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import struct
from dataclasses import dataclass, field
from typing import Any

NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400
RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_METRICS, RTA_TABLE = 1, 4, 5, 8, 15
RTAX_MTU = 2
_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1
RTNH_F_ONLINK = 4
NUD_NOARP = 0x40
NUD_PERMANENT = 0x80
NTF_SELF = 0x02


@dataclass(frozen=True, slots=True)
class RouteTarget:
    """Where one destination should go: out of ``iface``, optionally via an on-link gateway."""

    iface: str
    gateway: str | None = None
    mtu: int = 0

    @property
    def onlink(self) -> bool:
        """Tunnel routes use an on-link gateway (the remote VTEP / node address)."""
        return self.gateway is not None


@dataclass(frozen=True, slots=True)
class NetlinkRequest:
    """One call on ``AsyncIPRoute``: ``target`` is route/link/addr/neigh/fdb."""

    target: str
    command: str
    args: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=1 << 16)
def network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """``cidr`` parsed (strict=False), once: a route's destination is parsed three times on its way to the
    kernel (desired set, request, bytes), ~3 us each with ipaddress."""
    return ipaddress.ip_network(cidr, strict=False)


@functools.lru_cache(maxsize=1 << 16)
def normalize_cidr(cidr: str) -> str:
    """``10.65.0.2`` → ``10.65.0.2/32``; nets canonicalised."""
    return str(network(cidr))


def route_request(command: str, dst: str, target: RouteTarget, oif: int, proto: int) -> NetlinkRequest:
    """The request that installs (``replace``) or removes (``del``) one route."""
    net = network(dst)
    args: dict[str, Any] = {
        "dst": str(net), "oif": oif, "table": RT_TABLE_MAIN, "proto": proto,
        "family": socket.AF_INET if net.version == 4 else socket.AF_INET6,
    }
    if target.gateway is not None:
        args["gateway"] = target.gateway
        args["flags"] = RTNH_F_ONLINK
        args["scope"] = RT_SCOPE_UNIVERSE
    else:
        args["scope"] = RT_SCOPE_LINK
    if target.mtu:
        args["metrics"] = {"attrs": [("RTAX_MTU", target.mtu)]}
    return NetlinkRequest("route", command, args)


def _attr(kind: int, payload: bytes) -> bytes:
    length = _RTATTR.size + len(payload)
    return _RTATTR.pack(length, kind) + payload + b"\0" * (-length % 4)


def encode_route(request: NetlinkRequest, sequence: int = 1) -> bytes:
    """The ``RTM_NEWROUTE`` (``replace``) or ``RTM_DELROUTE`` (``del``) bytes of a route request."""
    args = request.args
    net = network(args["dst"])
    attrs = [_attr(RTA_TABLE, struct.pack("=I", args["table"])), _attr(RTA_DST, net.network_address.packed)]
    if "gateway" in args:
        attrs.append(_attr(RTA_GATEWAY, ipaddress.ip_address(args["gateway"]).packed))
    attrs.append(_attr(RTA_OIF, struct.pack("=i", args["oif"])))
    if "metrics" in args:
        nested = b"".join(_attr(RTAX_MTU, struct.pack("=I", value))
                          for name, value in args["metrics"]["attrs"] if name == "RTAX_MTU")
        attrs.append(_attr(RTA_METRICS, nested))
    body = _RTMSG.pack(args["family"], net.prefixlen, 0, 0, min(args["table"], 255), args["proto"], args["scope"],
                       RTN_UNICAST, args.get("flags", 0)) + b"".join(attrs)
    if request.command == "del":
        kind, flags = RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK
    else:
        kind, flags = RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, sequence, 0) + body


def decode_route(data: bytes) -> dict[str, Any]:
    """Decode route message bytes back into fields and attributes, with pyroute2 (for tests and logs)."""
    # pyroute2 is slow to import: only here, for tests and logs.
    from pyroute2.netlink.rtnl.rtmsg import rtmsg

    msg = rtmsg(data)
    msg.decode()
    out: dict[str, Any] = {k: msg[k] for k in ("family", "dst_len", "table", "proto", "scope", "type", "flags")}
    out["msg_type"] = msg["header"]["type"]
    out["attrs"] = {name: value for name, value in msg["attrs"]}
    return out


def neigh_request(command: str, ifindex: int, ip: str, mac: str) -> NetlinkRequest:
    """A permanent ARP/ND entry for a remote VTEP."""
    args: dict[str, Any] = {"ifindex": ifindex, "dst": ip}
    if command != "del":
        args.update(lladdr=mac, state=NUD_PERMANENT)
    return NetlinkRequest("neigh", command, args)


def fdb_request(command: str, ifindex: int, mac: str, dst_ip: str) -> NetlinkRequest:
    """A permanent VXLAN FDB entry: frames for ``mac`` go to the host ``dst_ip``."""
    args: dict[str, Any] = {"ifindex": ifindex, "lladdr": mac, "dst": dst_ip,
                            "state": NUD_NOARP | NUD_PERMANENT, "flags": NTF_SELF}
    return NetlinkRequest("fdb", command, args)


async def send(ipr: Any, request: NetlinkRequest) -> Any:
    """Send one request through an ``AsyncIPRoute``."""
    method = getattr(ipr, request.target)
    return await method(request.command, **request.args)
