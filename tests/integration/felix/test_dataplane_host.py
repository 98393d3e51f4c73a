"""Host endpoints, failsafes, NAT outgoing, the in-sync gate, the start-up sweep and repair, on real packets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from services.felix.dataplane import names
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import (
    ConfigUpdate,
    HostEndpoint,
    HostEndpointRemove,
    HostEndpointUpdate,
    InSync,
    IPAMPoolUpdate,
    IPSetType,
    IPSetUpdate,
    Message,
    PortRange,
    Rule,
    WorkloadEndpointRemove,
)
from tests.fixtures.netns import (  # noqa: F401  (netns_pool is a fixture)
    EchoServer,
    Host,
    Netns,
    NetnsPool,
    Pod,
    TcpSession,
    can_ping,
    can_tcp,
    can_udp,
    eventually,
    netns_pool,
)
from tests.integration.felix.test_dataplane_harness import (
    allow_profile,
    endpoint,
    policy,
    running,
    tier,
)

TCP = 6


@dataclass
class Site:
    underlay: Netns
    host: Host
    a: Pod
    b: Pod
    c: Pod


@pytest.fixture
def site(netns_pool: NetnsPool) -> Iterator[Site]:  # noqa: F811
    """Underlay 10.0.0.254, host 10.0.0.1, pods a/b/c = 10.65.0.2/3/4."""
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    yield Site(underlay, host, netns_pool.pod(host, "a", "10.65.0.2"), netns_pool.pod(host, "b", "10.65.0.3"),
               netns_pool.pod(host, "c", "10.65.0.4"))


def deny_all_hep(name: str = "*") -> HostEndpointUpdate:
    """A host endpoint whose only policy has no rules: everything denied except the failsafes."""
    return HostEndpointUpdate("hep-" + ("all" if name == "*" else name),
                              HostEndpoint(name, (), (), (), (tier(ingress=["default.deny-all"],
                                                                   egress=["default.deny-all"]),)))


async def test_failsafe_ssh_survives_deny_all_host_endpoint(site: Site) -> None:
    messages: list[Message] = [allow_profile(), policy("default.deny-all"), InSync()]
    async with running(site.host, messages) as dp:
        with EchoServer(site.host, 22), EchoServer(site.host, 8080), EchoServer(site.underlay, 8081), \
                EchoServer(site.underlay, 53, udp=True):
            assert await can_tcp(site.underlay, site.host.address, 8080)  # no host endpoint yet
            dp.send(deny_all_hep("*"))
            await dp.settled()
            assert await can_tcp(site.underlay, site.host.address, 22)  # failsafe inbound tcp:22
            assert not await can_tcp(site.underlay, site.host.address, 8080, timeout=0.7)
            assert await can_udp(site.host, "10.0.0.254", 53)  # failsafe outbound udp:53
            assert not await can_tcp(site.host, "10.0.0.254", 8081, timeout=0.7)
            assert not await can_ping(site.underlay, site.host.address)
            # A specific host endpoint on eth0 takes precedence over "*" for that interface.
            dp.send(HostEndpointUpdate("hep-eth0", HostEndpoint("eth0", (), (), (), (
                tier(ingress=["default.web"]),))))
            dp.send(policy("default.web", inbound=[Rule("allow", protocol=TCP, dst_ports=(PortRange(8080, 8080),))]))
            await dp.settled()
            assert await can_tcp(site.underlay, site.host.address, 8080)
            assert await can_tcp(site.underlay, site.host.address, 22)
            dp.send(HostEndpointRemove("hep-eth0"))
            dp.send(HostEndpointRemove("hep-all"))
            await dp.settled()
            assert await can_tcp(site.host, "10.0.0.254", 8081)
            assert await can_ping(site.underlay, site.host.address)


async def test_default_endpoint_to_host_action(site: Site) -> None:
    async with running(site.host, [allow_profile(), endpoint(site.a), InSync()]) as dp:
        with EchoServer(site.host, 8080):
            assert not await can_tcp(site.a, site.host.address, 8080, timeout=0.7)  # Calico default: Drop
            dp.send(ConfigUpdate({"defaultEndpointToHostAction": "Accept"}))
            await dp.settled()
            assert await can_tcp(site.a, site.host.address, 8080)
            assert await can_tcp(site.host, site.a.ip, 8080, timeout=0.7) is False  # nothing listens in the pod
            with EchoServer(site.a, 8080):
                assert await can_tcp(site.host, site.a.ip, 8080)  # host -> local workload is not policed


async def test_nat_outgoing_masquerades_pool_traffic(site: Site) -> None:
    messages: list[Message] = [allow_profile(), endpoint(site.a), IPAMPoolUpdate("pool", "10.65.0.0/16", masquerade=True), InSync()]
    async with running(site.host, messages) as dp:
        with EchoServer(site.underlay, 8080) as server:
            assert await can_tcp(site.a, "10.0.0.254", 8080)  # the underlay has no route back to 10.65/16
            assert server.peers == [site.host.address]
            dp.send(IPAMPoolUpdate("pool", "10.65.0.0/16", masquerade=False))
            await dp.settled()
            assert not await can_tcp(site.a, "10.0.0.254", 8080, timeout=0.7)
        assert await can_ping(site.a, site.b.ip) is False  # b has no endpoint: fail closed


async def test_nothing_touches_the_kernel_before_in_sync(site: Site) -> None:
    async with running(site.host, [allow_profile(), endpoint(site.a), endpoint(site.b)]) as dp:
        assert site.host.nft("list", "tables").stdout.strip() == ""
        assert site.host.run_ip("route", "show", f"{site.a.ip}/32").stdout.strip() == ""
        assert site.host.sysctl(f"net.ipv4.conf.{site.a.iface}.proxy_arp") == "0"
        assert not dp.ready.is_set()
        dp.send(InSync())
        await dp.settled()
        assert dp.ready.is_set()
        assert "table inet calico" in site.host.nft("list", "tables").stdout
        assert await can_ping(site.a, site.b.ip)


class _UdpFlood:
    """Sends a datagram every 2 ms from a pod until stopped (bounded), to catch any moment of openness."""

    def __init__(self, pod: Pod, address: str, port: int) -> None:
        self.sock = pod.call(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        self.target = (address, port)
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        while not self.stop.wait(0.002) and self.sent < 50_000:
            self.sent += 1
            try:
                self.sock.sendto(b"x", self.target)
            except OSError:
                pass

    def __enter__(self) -> _UdpFlood:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


async def test_restart_sweeps_stale_state_without_dropping_flows(netns_pool: NetnsPool) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    a, b, c, d = (netns_pool.pod(host, n, f"10.65.0.{i}") for i, n in ((2, "a"), (3, "b"), (4, "c"), (5, "d")))
    web = policy("default/web-from-a", inbound=[Rule("allow", protocol=6, src_ip_set_ids=("from-a",)),
                                                Rule("allow", protocol=17, src_ip_set_ids=("from-a",))])
    common: list[Message] = [allow_profile(), IPSetUpdate("from-a", IPSetType.NET, frozenset({f"{a.ip}/32"})), web,
              endpoint(a), endpoint(c), endpoint(b, tiers=[tier(ingress=["default/web-from-a"])])]
    with EchoServer(b, 8080), EchoServer(b, 5000, udp=True) as udp_server:
        async with running(host, [*common, endpoint(d), InSync()]):
            session = TcpSession(a, b.ip, 8080)
            assert session.echo()
            assert await can_udp(a, b.ip, 5000)
            assert await can_ping(d, b.ip) is False  # d -> b is not allowed by b's policy
            assert await can_ping(b, d.ip)
        # Felix is down; while it is, d is deleted and someone leaves junk in our table.
        host.nft_script("add chain inet calico cali-pi-default/old-policy\n"
                        "add set inet calico cali40s-old { type ipv4_addr; flags interval; }\n")
        stale_chain = names.workload_chain(d.iface, True)
        assert stale_chain in host.nft("list", "chains").stdout
        # While Felix was down the policy also changed: UDP from a is no longer allowed.
        tcp_only = policy("default/web-from-a", inbound=[Rule("allow", protocol=6, src_ip_set_ids=("from-a",))])
        with _UdpFlood(c, b.ip, 5000) as flood:
            async with running(host, [*common, tcp_only, InSync()]) as dp:
                assert dp.stats.replaces == 1
                await asyncio.to_thread(flood.stop.wait, 0.2)
        assert flood.sent > 10
        assert c.ip not in udp_server.peers  # c was denied before, during and after the restart
        assert session.echo()  # the established connection survived the replacement
        session.close()
        listing = host.nft("list", "table", "inet", "calico").stdout
        assert stale_chain not in listing and "old-policy" not in listing and "cali40s-old" not in listing
        assert host.run_ip("route", "show", f"{d.ip}/32").stdout.strip() == ""  # stale workload route swept
        async with running(host, [*common, tcp_only, InSync()]):
            assert not await can_udp(a, b.ip, 5000, timeout=0.7)  # newly denied after the restart
            assert await can_tcp(a, b.ip, 8080)
            assert not await can_ping(b, d.ip)  # d's interface is now unknown: fail closed


async def test_refresh_repairs_tampering(site: Site) -> None:
    allow_a = policy("default/from-a", inbound=[Rule("allow", protocol=TCP, src_ip_set_ids=("sel-a",))])
    messages: list[Message] = [allow_profile(), endpoint(site.a), endpoint(site.c), IPSetUpdate("sel-a", IPSetType.NET,
                frozenset({f"{site.a.ip}/32"})), allow_a, endpoint(site.b, tiers=[tier(ingress=["default/from-a"])]),
                InSync()]
    settings = DataplaneSettings(refresh_interval=0.3)
    async with running(site.host, messages, settings=settings) as dp:
        with EchoServer(site.b, 8080):
            async def a_ok() -> bool:
                return await can_tcp(site.a, site.b.ip, 8080, timeout=0.5)

            async def c_denied() -> bool:
                return not await can_tcp(site.c, site.b.ip, 8080, timeout=0.3)

            assert await a_ok() and await c_denied()
            # 1. Someone opens a hole at the top of FORWARD.
            site.host.nft("insert", "rule", "inet", "calico", names.CHAIN_FORWARD, "accept")
            assert await can_tcp(site.c, site.b.ip, 8080)
            await eventually(c_denied, "the inserted accept rule to be removed")
            # 2. Someone deletes b's dispatch entry (b is then cut off: fail closed) and a set member.
            site.host.nft_script(f'delete element inet calico {names.MAP_TO_WL} {{ "{site.b.iface}" }}\n'
                                 f"delete element inet calico {names.ipset_name('sel-a', 4, False)} {{ {site.a.ip} }}\n")
            assert not await a_ok()
            await eventually(a_ok, "the dispatch entry and set member to be restored")
            # 3. Someone empties b's chain and deletes the policy chain.
            tw = names.workload_chain(site.b.iface, True)
            site.host.nft_script(f"flush chain inet calico {tw}\n"
                                 f"delete chain inet calico {names.policy_chain('default', 'default/from-a', True)}\n")
            await eventually(a_ok, "b's chain and the policy chain to be rebuilt")
            assert await c_denied()
            # 4. Someone deletes the whole table.
            site.host.nft("delete", "table", "inet", "calico")
            assert await can_tcp(site.c, site.b.ip, 8080)
            await eventually(c_denied, "the table to be recreated")
            assert await a_ok()
        assert dp.stats.repairs >= 4
        dp.send(WorkloadEndpointRemove(endpoint(site.c).id))
        await dp.settled()
        assert names.workload_chain(site.c.iface, True) not in site.host.nft("list", "chains").stdout
