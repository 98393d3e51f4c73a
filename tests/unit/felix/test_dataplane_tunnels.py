"""VXLAN device rules and IPIP netlink messages (the kernel here has no ipip: the messages are checked)."""

from __future__ import annotations

import hashlib
import socket

from services.felix.dataplane.netlinkplan import (
    RTNH_F_ONLINK,
    RouteTarget,
    decode_route,
    encode_route,
    fdb_request,
    neigh_request,
    route_request,
)
from services.felix.dataplane.tunnels import (
    VXLANDevice,
    ipip_device_plan,
    ipip_route,
    ipip_supported,
    vtep_mac_for_node,
    vxlan_mtu,
)


def test_generated_vtep_mac_is_felix_rule() -> None:
    mac = vtep_mac_for_node("node-b")
    digest = hashlib.sha1(b"node-b").digest()
    assert mac.split(":")[0] == "66"  # ASCII "f": locally administered, unicast
    assert mac == ":".join(f"{b:02x}" for b in b"f" + digest[:5])
    assert vtep_mac_for_node("node-c") != mac


def test_vxlan_device_request_and_mismatch() -> None:
    device = VXLANDevice(4096, 4789, "10.0.0.1", 2, "66:00:00:00:00:01", vxlan_mtu(0, 1500))
    request = device.create_request()
    assert request.args["ifname"] == "vxlan.calico" and request.args["vxlan_learning"] == 0
    assert request.args["mtu"] == 1450
    attrs = [("IFLA_VXLAN_ID", 4096), ("IFLA_VXLAN_PORT", 4789), ("IFLA_VXLAN_LOCAL", "10.0.0.1"),
             ("IFLA_VXLAN_LINK", 2), ("IFLA_VXLAN_LEARNING", 0)]
    link = {("IFLA_LINKINFO", "IFLA_INFO_KIND"): "vxlan", ("IFLA_LINKINFO", "IFLA_INFO_DATA"): {"attrs": attrs},
            "IFLA_ADDRESS": "66:00:00:00:00:01"}
    assert device.mismatch(link) == ""
    link[("IFLA_LINKINFO", "IFLA_INFO_DATA")] = {"attrs": [("IFLA_VXLAN_ID", 1), *attrs[1:]]}
    assert device.mismatch(link) == "vni is 1, want 4096"


def test_ipip_capability_is_the_tunl0_device() -> None:
    assert ipip_supported({"lo", "eth0", "tunl0"})
    assert not ipip_supported({"lo", "eth0"})


def test_ipip_device_plan() -> None:
    plan = ipip_device_plan(7, 1480, "10.65.1.0", ["192.168.9.9/32"])
    assert [(r.target, r.command) for r in plan] == [("link", "set"), ("addr", "del"), ("addr", "replace")]
    assert plan[0].args == {"index": 7, "mtu": 1480, "state": "up"}
    assert plan[2].args == {"index": 7, "address": "10.65.1.0", "prefixlen": 32}
    assert ipip_device_plan(7, 1480, "10.65.1.0", ["10.65.1.0/32"])[1:] == []


def test_ipip_route_message_bytes() -> None:
    request = ipip_route("10.65.3.0/26", "10.0.0.3", 7, 3)
    decoded = decode_route(encode_route(request, sequence=42))
    assert decoded["msg_type"] == 24  # RTM_NEWROUTE
    assert (decoded["family"], decoded["dst_len"], decoded["proto"], decoded["scope"]) == (socket.AF_INET, 26, 3, 0)
    assert decoded["flags"] == RTNH_F_ONLINK
    assert decoded["attrs"] == {"RTA_TABLE": 254, "RTA_DST": "10.65.3.0", "RTA_GATEWAY": "10.0.0.3", "RTA_OIF": 7}


def test_workload_route_is_scope_link_and_v6_family() -> None:
    decoded = decode_route(encode_route(route_request("replace", "fd00::5", RouteTarget("cali1"), 9, 3)))
    assert (decoded["family"], decoded["dst_len"], decoded["scope"], decoded["flags"]) == (socket.AF_INET6, 128, 253, 0)
    assert decoded["attrs"] == {"RTA_TABLE": 254, "RTA_DST": "fd00::5", "RTA_OIF": 9}


def test_vxlan_neighbour_and_fdb_requests() -> None:
    neigh = neigh_request("replace", 5, "10.65.2.0", "66:aa:bb:cc:dd:ee")
    assert neigh.args == {"ifindex": 5, "dst": "10.65.2.0", "lladdr": "66:aa:bb:cc:dd:ee", "state": 0x80}
    fdb = fdb_request("replace", 5, "66:aa:bb:cc:dd:ee", "10.0.0.2")
    assert fdb.args["state"] == 0xC0 and fdb.args["flags"] == 0x02  # noarp|permanent, self
