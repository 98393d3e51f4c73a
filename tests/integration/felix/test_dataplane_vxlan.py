"""Two hosts, pods on each, joined by VXLAN programmed by two dataplanes; IPIP's capability check."""

from __future__ import annotations

import contextlib
import json

from services.felix.dataplane.tunnels import VXLAN_DEVICE, vtep_mac_for_node
from services.felix.messages import (
    InSync,
    Message,
    RouteRemove,
    RouteType,
    RouteUpdate,
    VXLANTunnelEndpointRemove,
    VXLANTunnelEndpointUpdate,
)
from tests.fixtures.netns import (  # noqa: F401  (netns_pool is a fixture)
    EchoServer,
    NetnsPool,
    can_ping,
    can_tcp,
    netns_pool,
)
from tests.integration.felix.test_dataplane_harness import allow_profile, endpoint, running

VTEPS = [
    VXLANTunnelEndpointUpdate("node-a", "66:0a:00:00:00:01", "10.65.1.0", "10.0.0.1"),
    VXLANTunnelEndpointUpdate("node-b", "", "10.65.2.0", "10.0.0.2"),  # no MAC: Felix's generated one
]


def remote_block(cidr: str, node: str, node_ip: str, pool_type: str = "vxlan") -> RouteUpdate:
    """The calc graph's route for another node's IPAM block."""
    return RouteUpdate(RouteType.REMOTE_WORKLOAD, cidr, dst_node_name=node, dst_node_ip=node_ip,
                       ip_pool_type=pool_type)


async def test_pods_on_two_hosts_talk_over_vxlan(netns_pool: NetnsPool) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host_a = netns_pool.host("ha", "10.0.0.1", underlay)
    host_b = netns_pool.host("hb", "10.0.0.2", underlay)
    pod_a = netns_pool.pod(host_a, "pa", "10.65.1.2")
    pod_b = netns_pool.pod(host_b, "pb", "10.65.2.2")
    msgs_a: list[Message] = [allow_profile(), endpoint(pod_a), *VTEPS, remote_block("10.65.2.0/26", "node-b", "10.0.0.2"), InSync()]
    msgs_b: list[Message] = [allow_profile(), endpoint(pod_b), *VTEPS, remote_block("10.65.1.0/26", "node-a", "10.0.0.1"), InSync()]
    async with running(host_a, msgs_a, hostname="node-a") as dp_a, \
            running(host_b, msgs_b, hostname="node-b") as dp_b:
        assert await can_ping(pod_a, pod_b.ip)
        assert await can_ping(pod_b, pod_a.ip)
        with EchoServer(pod_b, 8080) as server:
            assert await can_tcp(pod_a, pod_b.ip, 8080)
            assert server.peers == [pod_a.ip]  # no NAT between pools
        details = json.loads(host_a.run_ip("-j", "-d", "link", "show", VXLAN_DEVICE).stdout)[0]
        info = details["linkinfo"]["info_data"]
        assert (info["id"], info["port"], info["local"], info.get("learning")) == (4096, 4789, "10.0.0.1", False)
        assert details["address"] == "66:0a:00:00:00:01"
        assert "10.65.1.0/32" in host_a.run_ip("addr", "show", "dev", VXLAN_DEVICE).stdout
        mac_b = vtep_mac_for_node("node-b")
        assert mac_b in host_a.exec("bridge", "fdb", "show", "dev", VXLAN_DEVICE).stdout
        assert f"10.65.2.0 lladdr {mac_b} PERMANENT" in host_a.run_ip("neigh", "show", "dev", VXLAN_DEVICE).stdout
        route = host_a.run_ip("route", "show", "10.65.2.0/26").stdout
        assert "via 10.65.2.0" in route and VXLAN_DEVICE in route and "onlink" in route
        # Withdraw node b: its route, neighbour and FDB entry go; traffic stops.
        dp_a.send(RouteRemove("10.65.2.0/26"))
        dp_a.send(VXLANTunnelEndpointRemove("node-b"))
        await dp_a.settled()
        assert host_a.run_ip("route", "show", "10.65.2.0/26").stdout.strip() == ""
        assert mac_b not in host_a.exec("bridge", "fdb", "show", "dev", VXLAN_DEVICE).stdout
        assert not await can_ping(pod_a, pod_b.ip)
        assert dp_b.ready.is_set()


async def test_ipip_routes_need_the_ipip_module(netns_pool: NetnsPool) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    kernel_has_ipip = host.run_ip("link", "show", "tunl0", check=False).returncode == 0
    with contextlib.suppress(FileNotFoundError):
        import gzip

        with gzip.open("/proc/config.gz", "rt") as config:
            assert ("CONFIG_NET_IPIP=y" in config.read()) == kernel_has_ipip
    msgs: list[Message] = [allow_profile(), remote_block("10.65.3.0/26", "node-c", "10.0.0.3", "ipip"), InSync()]
    async with running(host, msgs) as dp:
        route = host.run_ip("route", "show", "10.65.3.0/26").stdout
        if kernel_has_ipip:
            assert "tunl0" in route and "onlink" in route
        else:
            assert route.strip() == ""  # checked and refused: no tunl0 on this kernel
            assert dp.ready.is_set() and dp.stats.last_error == ""
