"""Workload policy on real packets: pods in network namespaces behind one host namespace.

Each test builds an underlay, a host and pods (tests/fixtures/netns.py),
feeds the dataplane the messages the calculation graph would send, and checks
with real ICMP / TCP / UDP. "Denied" is one probe with a short timeout after
the dataplane has applied the change (``settled``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from services.felix.dataplane import names
from services.felix.messages import (
    InSync,
    IPSetDeltaUpdate,
    IPSetType,
    IPSetUpdate,
    Message,
    PortRange,
    Rule,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointUpdate,
)
from tests.fixtures.netns import (  # noqa: F401  (netns_pool is a fixture)
    EchoServer,
    Host,
    NetnsPool,
    Pod,
    can_ping,
    can_tcp,
    can_udp,
    eventually,
    netns_pool,
)
from tests.integration.felix.test_dataplane_harness import (
    allow_profile,
    chain_rules,
    endpoint,
    nft_json,
    policy,
    running,
    tier,
)

TCP, UDP, ICMP = 6, 17, 1


@dataclass
class Lab:
    host: Host
    a: Pod
    b: Pod
    c: Pod


@pytest.fixture
def lab(netns_pool: NetnsPool) -> Iterator[Lab]:  # noqa: F811
    """One host with three pods: a (10.65.0.2), b (10.65.0.3), c (10.65.0.4)."""
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    yield Lab(host, netns_pool.pod(host, "a", "10.65.0.2"), netns_pool.pod(host, "b", "10.65.0.3"),
              netns_pool.pod(host, "c", "10.65.0.4"))


def base(lab: Lab) -> list[Message]:
    """Profile plus all three endpoints with the profile only."""
    return [allow_profile(), endpoint(lab.a), endpoint(lab.b), endpoint(lab.c)]


async def test_profile_allows_and_felix_sets_routes_and_sysctls(lab: Lab) -> None:
    async with running(lab.host, [*base(lab), InSync()]):
        assert await can_ping(lab.a, lab.b.ip)
        with EchoServer(lab.b, 8080) as server:
            assert await can_tcp(lab.a, lab.b.ip, 8080)
            assert server.peers == [lab.a.ip]
        routes = lab.host.run_ip("route", "show", f"{lab.b.ip}/32").stdout
        assert f"dev {lab.b.iface}" in routes and "scope link" in routes
        iface = lab.b.iface
        assert lab.host.sysctl(f"net.ipv4.conf.{iface}.proxy_arp") == "1"
        assert lab.host.sysctl(f"net.ipv4.neigh.{iface}.proxy_delay") == "0"
        assert lab.host.sysctl(f"net.ipv4.conf.{iface}.route_localnet") == "1"
        assert lab.host.sysctl(f"net.ipv4.conf.{iface}.forwarding") == "1"
        assert lab.host.sysctl(f"net.ipv6.conf.{iface}.accept_ra") == "0"
        assert lab.host.sysctl("net.ipv4.ip_forward") == "1"


async def test_policy_denies_by_default_and_allows_by_ip_set(lab: Lab) -> None:
    allow_from_set = policy("default/allow-from-a", inbound=[Rule("allow", src_ip_set_ids=("sel-a",))])
    messages = [*base(lab), IPSetUpdate("sel-a", IPSetType.NET, frozenset({f"{lab.a.ip}/32"})), allow_from_set,
                endpoint(lab.b, tiers=[tier(ingress=["default/allow-from-a"])]), InSync()]
    async with running(lab.host, messages) as dp:
        assert await can_ping(lab.a, lab.b.ip)
        assert not await can_ping(lab.c, lab.b.ip)
        assert await can_ping(lab.b, lab.c.ip)  # egress has no policy: the profile allows it
        set_name = names.ipset_name("sel-a", 4, False)
        handle_before = nft_json(lab.host, "set", "inet", "calico", set_name)[1]["set"]["handle"]  # type: ignore[index]
        chain = names.policy_chain("default", "default/allow-from-a", True)
        rules_before = chain_rules(lab.host, chain)
        dp.send(IPSetDeltaUpdate("sel-a", frozenset({f"{lab.c.ip}/32"}), frozenset({f"{lab.a.ip}/32"})))
        await dp.settled()
        assert await can_ping(lab.c, lab.b.ip)
        assert not await can_ping(lab.a, lab.b.ip)
        after = nft_json(lab.host, "set", "inet", "calico", set_name)[1]["set"]
        assert after["handle"] == handle_before and after["elem"] == [lab.c.ip]  # type: ignore[index]
        assert chain_rules(lab.host, chain) == rules_before  # members changed, rules untouched


async def test_ip_set_becomes_an_interval_set_when_a_net_joins_and_back(lab: Lab) -> None:
    allow = policy("default/allow-set", inbound=[Rule("allow", src_ip_set_ids=("sel-x",))])
    messages = [*base(lab), IPSetUpdate("sel-x", IPSetType.NET, frozenset({f"{lab.a.ip}/32"})), allow,
                endpoint(lab.b, tiers=[tier(ingress=["default/allow-set"])]), InSync()]
    plain, interval = names.ipset_name("sel-x", 4, False), names.ipset_name("sel-x", 4, False, interval=True)
    chain = names.policy_chain("default", "default/allow-set", True)
    async with running(lab.host, messages) as dp:
        listing = nft_json(lab.host, "set", "inet", "calico", plain)[1]["set"]  # type: ignore[index]
        assert "flags" not in listing and listing["elem"] == [lab.a.ip]  # addresses only: a plain hash set
        assert await can_ping(lab.a, lab.b.ip) and not await can_ping(lab.c, lab.b.ip)
        dp.send(IPSetDeltaUpdate("sel-x", frozenset({"10.65.0.4/31"}), frozenset()))  # c's /31: a net
        await dp.settled()
        listing = nft_json(lab.host, "set", "inet", "calico", interval)[1]["set"]  # type: ignore[index]
        assert listing["flags"] == ["interval"]
        assert any(f"@{interval}" in str(rule) for rule in chain_rules(lab.host, chain))
        assert plain not in lab.host.nft("list", "table", "inet", "calico").stdout
        assert await can_ping(lab.c, lab.b.ip) and await can_ping(lab.a, lab.b.ip)
        dp.send(IPSetDeltaUpdate("sel-x", frozenset(), frozenset({"10.65.0.4/31"})))
        await dp.settled()
        assert nft_json(lab.host, "set", "inet", "calico", plain)[1]["set"]["elem"] == [lab.a.ip]  # type: ignore[index]
        assert interval not in lab.host.nft("list", "table", "inet", "calico").stdout
        assert await can_ping(lab.a, lab.b.ip) and not await can_ping(lab.c, lab.b.ip)


async def test_ports_ranges_named_ports_and_udp(lab: Lab) -> None:
    rules = [
        Rule("allow", protocol=TCP, dst_ports=(PortRange(8080, 8080), PortRange(9000, 9010))),
        Rule("allow", protocol=TCP, dst_named_port_ip_set_ids=("np-http",)),
        Rule("allow", protocol=UDP, dst_ports=(PortRange(5353, 5353),)),
    ]
    messages = [*base(lab), IPSetUpdate("np-http", IPSetType.IP_AND_PORT, frozenset({f"{lab.b.ip},tcp:7070"})),
                policy("default/ports", inbound=rules), endpoint(lab.b, tiers=[tier(ingress=["default/ports"])]),
                InSync()]
    async with running(lab.host, messages):
        for port, allowed in ((8080, True), (9005, True), (9011, False), (7070, True), (7071, False)):
            with EchoServer(lab.b, port):
                assert await can_tcp(lab.a, lab.b.ip, port, timeout=0.7) is allowed, port
        with EchoServer(lab.b, 5353, udp=True), EchoServer(lab.b, 5354, udp=True):
            assert await can_udp(lab.a, lab.b.ip, 5353)
            assert not await can_udp(lab.a, lab.b.ip, 5354, timeout=0.7)
        assert not await can_ping(lab.a, lab.b.ip)


async def test_cidr_and_not_matches(lab: Lab) -> None:
    rules = [Rule("allow", protocol=TCP, src_nets=("10.65.0.0/24",), not_src_nets=(f"{lab.a.ip}/32",))]
    messages = [*base(lab), policy("default/cidr", inbound=rules),
                endpoint(lab.b, tiers=[tier(ingress=["default/cidr"])]), InSync()]
    async with running(lab.host, messages) as dp:
        with EchoServer(lab.b, 8080):
            assert await can_tcp(lab.c, lab.b.ip, 8080)
            assert not await can_tcp(lab.a, lab.b.ip, 8080, timeout=0.7)
            not_port = [Rule("allow", protocol=TCP, not_dst_ports=(PortRange(8000, 8100),))]
            dp.send(policy("default/cidr", inbound=not_port))
            await dp.settled()
            assert not await can_tcp(lab.c, lab.b.ip, 8080, timeout=0.7)
            with EchoServer(lab.b, 9090):
                assert await can_tcp(lab.c, lab.b.ip, 9090)


async def test_icmp_type_and_code(lab: Lab) -> None:
    echo_only = policy("default/icmp", inbound=[Rule("allow", protocol=ICMP, icmp_type=8, icmp_code=0)])
    messages = [*base(lab), echo_only, endpoint(lab.b, tiers=[tier(ingress=["default/icmp"])]), InSync()]
    async with running(lab.host, messages) as dp:
        assert await can_ping(lab.a, lab.b.ip)
        with EchoServer(lab.b, 8080):
            assert not await can_tcp(lab.a, lab.b.ip, 8080, timeout=0.7)
        dp.send(policy("default/icmp", inbound=[Rule("allow", protocol=ICMP, icmp_type=13)]))  # timestamp only
        await dp.settled()
        assert not await can_ping(lab.a, lab.b.ip)
        dp.send(policy("default/icmp", inbound=[Rule("allow", protocol=ICMP, not_icmp_type=13)]))
        await dp.settled()
        assert await can_ping(lab.a, lab.b.ip)


async def test_pass_across_tiers_and_tier_default_action(lab: Lab) -> None:
    security = policy("security.pass-web", tier="security",
                      inbound=[Rule("pass", protocol=TCP, dst_ports=(PortRange(8080, 8080),))])
    default = policy("default/allow-tcp", inbound=[Rule("allow", protocol=TCP)])
    tiers = [tier("security", ingress=["security.pass-web"]), tier("default", ingress=["default/allow-tcp"])]
    messages = [*base(lab), security, default, endpoint(lab.b, tiers=tiers), InSync()]
    async with running(lab.host, messages) as dp:
        with EchoServer(lab.b, 8080), EchoServer(lab.b, 9090):
            assert await can_tcp(lab.a, lab.b.ip, 8080)  # passed by security, allowed by default tier
            assert not await can_tcp(lab.a, lab.b.ip, 9090, timeout=0.7)  # security tier ends: deny
            relaxed = [tier("security", ingress=["security.pass-web"], default_action="pass"),
                       tier("default", ingress=["default/allow-tcp"])]
            dp.send(endpoint(lab.b, tiers=relaxed))
            await dp.settled()
            assert await can_tcp(lab.a, lab.b.ip, 9090)  # tier default action Pass
            dp.send(policy("security.pass-web", tier="security",
                           inbound=[Rule("deny", protocol=TCP, src_nets=(f"{lab.a.ip}/32",)), Rule("pass")]))
            await dp.settled()
            assert not await can_tcp(lab.a, lab.b.ip, 8080, timeout=0.7)
            assert await can_tcp(lab.c, lab.b.ip, 8080)
            only_pass = [tier("security", ingress=["security.pass-web"])]  # passes to the profiles
            dp.send(endpoint(lab.b, tiers=only_pass))
            await dp.settled()
            assert await can_tcp(lab.c, lab.b.ip, 9090)


async def test_log_action_counts_and_continues(lab: Lab) -> None:
    logged = policy("default/log-then-allow", inbound=[Rule("log", protocol=ICMP), Rule("allow")])
    messages = [*base(lab), logged, endpoint(lab.b, tiers=[tier(ingress=["default/log-then-allow"])]), InSync()]
    async with running(lab.host, messages):
        assert await can_ping(lab.a, lab.b.ip)
        rules: list[Any] = chain_rules(lab.host, names.policy_chain("default", "default/log-then-allow", True))
        log_rule = next(r for r in rules if any("log" in e for e in r["expr"]))
        counter = next(e["counter"] for e in log_rule["expr"] if "counter" in e)
        assert counter["packets"] >= 1
        log_stmt = next(e["log"] for e in log_rule["expr"] if "log" in e)
        assert log_stmt["prefix"] == "calico-packet: "


async def test_egress_rules(lab: Lab) -> None:
    egress = policy("default/egress-8080", outbound=[Rule("allow", protocol=TCP, dst_ports=(PortRange(8080, 8080),))])
    messages = [*base(lab), egress, endpoint(lab.a, tiers=[tier(egress=["default/egress-8080"])]), InSync()]
    async with running(lab.host, messages):
        with EchoServer(lab.b, 8080), EchoServer(lab.b, 9090):
            assert await can_tcp(lab.a, lab.b.ip, 8080)
            assert not await can_tcp(lab.a, lab.b.ip, 9090, timeout=0.7)
        assert not await can_ping(lab.a, lab.b.ip)
        assert await can_ping(lab.b, lab.a.ip)  # ingress to a: no policy, profile allows


async def test_unknown_cali_interface_fails_closed(netns_pool: NetnsPool) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    known = netns_pool.pod(host, "known", "10.65.0.2")
    stranger = netns_pool.pod(host, "stranger", "10.65.0.9", cni_host_setup=True)  # routed, but Felix never heard of it
    async with running(host, [allow_profile(), endpoint(known), InSync()]) as dp:
        assert not await can_ping(known, stranger.ip)
        assert not await can_ping(stranger, known.ip)
        dp.send(endpoint(stranger))
        await dp.settled()
        assert await can_ping(known, stranger.ip)
        assert await can_ping(stranger, known.ip)


async def test_endpoint_sent_before_its_interface_exists(lab: Lab, netns_pool: NetnsPool) -> None:  # noqa: F811
    late_iface, late_ip = "calilate0000001", "10.65.0.20"
    early = WorkloadEndpointUpdate(
        WorkloadEndpointID("k8s", "default/late", "eth0"),
        WorkloadEndpoint(late_iface, None, (f"{late_ip}/32",), (), ("kns.default",), ()))
    async with running(lab.host, [*base(lab), early, InSync()]) as dp:
        assert dp.routes is not None and late_iface in dp.routes.pending
        started = time.monotonic()
        late = netns_pool.pod(lab.host, "late", late_ip, iface=late_iface)  # the CNI plugin creates the veth now

        async def reachable() -> bool:
            return await can_ping(lab.a, late.ip, timeout=0.5)

        await eventually(reachable, "the late pod's route and proxy ARP", timeout=5)
        assert time.monotonic() - started < 5  # link events make it ~40 ms here; the retry timer bounds it
        assert lab.host.sysctl(f"net.ipv4.conf.{late_iface}.proxy_arp") == "1"
        assert not dp.routes.pending
