"""VXLAN and IPIP device rules, as Felix applies them (pure: plans and checks, no sockets).

VXLAN (Felix's ``vxlan_mgr``): device ``vxlan.calico``, VNI 4096, UDP port
4789, learning off, bound to the interface holding this node's underlay
address; its MAC is the node's ``vxlanTunnelMACAddr`` or, when unset,
``66`` + the first five bytes of SHA-1(node name) (Felix's ``vtepMACForHost``);
its address is the node's VXLAN tunnel address as a /32. For every remote
node: a permanent neighbour entry (tunnel address → MAC), a permanent FDB
entry (MAC → underlay address) and on-link routes for its blocks via its
tunnel address.

IPIP (Felix's ``ipip_mgr``): the kernel's fallback device ``tunl0`` (it
exists in every namespace when the ``ipip`` module is present; this is the
capability check), set up with the IPIP MTU and the node's IPIP tunnel
address as a /32; remote blocks route via the remote node's address, on-link,
out of ``tunl0``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from services.felix.dataplane.netlinkplan import NetlinkRequest, RouteTarget, route_request

VXLAN_DEVICE = "vxlan.calico"
IPIP_DEVICE = "tunl0"
VXLAN_OVERHEAD = 50
IPIP_OVERHEAD = 20


def vtep_mac_for_node(node: str) -> str:
    """Felix's generated VTEP MAC for a node without ``vxlanTunnelMACAddr``."""
    digest = hashlib.sha1(node.encode()).digest()
    return ":".join(f"{b:02x}" for b in (b"f" + digest[:5]))


@dataclass(frozen=True, slots=True)
class VXLANDevice:
    """What ``vxlan.calico`` must look like."""

    vni: int
    port: int
    local_ip: str
    parent_index: int
    mac: str
    mtu: int

    def create_request(self) -> NetlinkRequest:
        """``ip link add vxlan.calico type vxlan id … dstport … local … dev … nolearning``."""
        return NetlinkRequest("link", "add", {
            "ifname": VXLAN_DEVICE, "kind": "vxlan", "vxlan_id": self.vni, "vxlan_port": self.port,
            "vxlan_local": self.local_ip, "vxlan_link": self.parent_index, "vxlan_learning": 0,
            "address": self.mac, "mtu": self.mtu,
        })

    def mismatch(self, link: Any) -> str:
        """Why an existing link is not this device ("" when it matches)."""
        info = link.get(("IFLA_LINKINFO", "IFLA_INFO_DATA")) or {}
        if link.get(("IFLA_LINKINFO", "IFLA_INFO_KIND")) != "vxlan":
            return "not a vxlan device"
        attrs = dict(info.get("attrs", [])) if isinstance(info, dict) else {}
        checks = (("vni", attrs.get("IFLA_VXLAN_ID"), self.vni), ("port", attrs.get("IFLA_VXLAN_PORT"), self.port),
                  ("local", attrs.get("IFLA_VXLAN_LOCAL"), self.local_ip),
                  ("parent", attrs.get("IFLA_VXLAN_LINK"), self.parent_index),
                  ("learning", attrs.get("IFLA_VXLAN_LEARNING"), 0),
                  ("mac", (link.get("IFLA_ADDRESS") or "").lower(), self.mac.lower()))
        for label, have, want in checks:
            if have != want:
                return f"{label} is {have!r}, want {want!r}"
        return ""


def vxlan_mtu(configured: int, parent_mtu: int) -> int:
    """``vxlanMTU``, or the parent's MTU minus the VXLAN overhead when unset (0)."""
    return configured or max(parent_mtu - VXLAN_OVERHEAD, 68)


def ipip_supported(link_names: set[str]) -> bool:
    """True when the namespace has ``tunl0``, i.e. the kernel has the ipip module."""
    return IPIP_DEVICE in link_names


def ipip_device_plan(tunl_index: int, mtu: int, tunnel_addr: str, current_v4: list[str]) -> list[NetlinkRequest]:
    """Requests that configure ``tunl0``: MTU and up, the tunnel /32, and no other IPv4 address."""
    plan = [NetlinkRequest("link", "set", {"index": tunl_index, "mtu": mtu, "state": "up"})]
    wanted = f"{tunnel_addr}/32" if tunnel_addr else ""
    for addr in current_v4:
        if addr != wanted:
            ip, _, length = addr.partition("/")
            plan.append(NetlinkRequest("addr", "del", {"index": tunl_index, "address": ip,
                                                       "prefixlen": int(length or 32)}))
    if wanted and wanted not in current_v4:
        plan.append(NetlinkRequest("addr", "replace", {"index": tunl_index, "address": tunnel_addr,
                                                       "prefixlen": 32}))
    return plan


def ipip_route(dst: str, node_ip: str, tunl_index: int, proto: int, mtu: int = 0) -> NetlinkRequest:
    """The route of a remote IPIP block: via the node's address, on-link, out of ``tunl0``."""
    return route_request("replace", dst, RouteTarget(IPIP_DEVICE, node_ip, mtu), tunl_index, proto)
