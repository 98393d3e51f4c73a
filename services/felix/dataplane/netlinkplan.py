"""Netlink requests as data: what the route manager sends, built without a socket.

How it works: the managers decide *what* the kernel should hold (routes to
workloads and remote blocks, the VXLAN/IPIP devices, neighbour and FDB
entries) as :class:`NetlinkRequest` values; :func:`send` hands one to
pyroute2's ``AsyncIPRoute``; :func:`encode_route` renders a route request to
the bytes of an ``RTM_NEWROUTE`` message, so tests can check the exact
message for devices this kernel lacks (IPIP).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any

from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_NEWROUTE
from pyroute2.netlink.rtnl.rtmsg import rtmsg

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


def normalize_cidr(cidr: str) -> str:
    """``10.65.0.2`` → ``10.65.0.2/32``; nets canonicalised."""
    return str(ipaddress.ip_network(cidr, strict=False))


def route_request(command: str, dst: str, target: RouteTarget, oif: int, proto: int) -> NetlinkRequest:
    """The request that installs (``replace``) or removes (``del``) one route."""
    net = ipaddress.ip_network(dst, strict=False)
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


def encode_route(request: NetlinkRequest, sequence: int = 1) -> bytes:
    """The ``RTM_NEWROUTE`` bytes of a route request (as the kernel would receive them)."""
    args = request.args
    net = ipaddress.ip_network(args["dst"])
    msg = rtmsg()
    msg["family"] = args["family"]
    msg["dst_len"] = net.prefixlen
    msg["table"] = args["table"]
    msg["proto"] = args["proto"]
    msg["scope"] = args["scope"]
    msg["type"] = RTN_UNICAST
    msg["flags"] = args.get("flags", 0)
    attrs: list[tuple[str, Any]] = [("RTA_TABLE", args["table"]), ("RTA_DST", str(net.network_address))]
    if "gateway" in args:
        attrs.append(("RTA_GATEWAY", args["gateway"]))
    attrs.append(("RTA_OIF", args["oif"]))
    if "metrics" in args:
        attrs.append(("RTA_METRICS", args["metrics"]))
    msg["attrs"] = attrs
    msg["header"]["type"] = RTM_NEWROUTE
    msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
    msg["header"]["sequence_number"] = sequence
    msg.encode()
    return bytes(msg.data)


def decode_route(data: bytes) -> dict[str, Any]:
    """Decode ``RTM_NEWROUTE`` bytes back into fields and attributes (for tests and logs)."""
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
