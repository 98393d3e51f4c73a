"""Rule rendering: one compiled Rule → nftables rule bodies (no kernel)."""

from __future__ import annotations

import dataclasses

import pytest

from services.felix.dataplane import names
from services.felix.dataplane.chainrender import endpoint_chain, static_chains
from services.felix.dataplane.errors import RenderError
from services.felix.dataplane.rulerender import RuleRenderer, merge_port_ranges
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import PortRange, Rule, TierInfo

R = RuleRenderer(DataplaneSettings())
ALLOW = "meta mark set meta mark | 0x00010000 return"
PASS = "meta mark set meta mark | 0x00020000 return"


def render(rule: Rule) -> tuple[list[str], set[str]]:
    refs: set[str] = set()
    return R.render_rule(rule, "test", refs), refs


def test_version_agnostic_rule_is_rendered_once() -> None:
    rules, refs = render(Rule("allow", protocol=6, dst_ports=(PortRange(80, 80), PortRange(8000, 8080))))
    assert rules == [f"meta l4proto 6 th dport {{ 80, 8000-8080 }} {ALLOW}"]
    assert refs == set()


def test_actions() -> None:
    assert render(Rule("deny"))[0] == ["drop"]
    assert render(Rule("pass"))[0] == [PASS]
    assert render(Rule("next-tier"))[0] == [PASS]
    assert render(Rule("log"))[0] == ['counter log prefix "calico-packet: " level info']
    reject = RuleRenderer(DataplaneSettings(deny_action="Reject", log_prefix="x"))
    assert reject.render_rule(Rule("deny"), "t", set()) == ["reject"]
    assert reject.render_rule(Rule("log"), "t", set()) == ['counter log prefix "x: " level info']


def test_nets_split_by_ip_version() -> None:
    rules, _ = render(Rule("deny", src_nets=("10.0.0.0/8", "fd00::/64", "10.1.0.0/16"), dst_nets=("10.2.0.1",)))
    # dst_nets has only IPv4, so the IPv6 rendering cannot match and is dropped; 10.1/16 is inside 10/8.
    assert rules == ["meta nfproto ipv4 ip saddr 10.0.0.0/8 ip daddr 10.2.0.1/32 drop"]


def test_not_nets_of_the_other_version_do_not_constrain() -> None:
    rules, _ = render(Rule("allow", not_src_nets=("10.0.0.0/8",)))
    assert rules == [f"meta nfproto ipv4 ip saddr != 10.0.0.0/8 {ALLOW}", f"meta nfproto ipv6 {ALLOW}"]


def test_ip_version_restricts() -> None:
    rules, _ = render(Rule("allow", ip_version=6, protocol=17))
    assert rules == [f"meta nfproto ipv6 meta l4proto 17 {ALLOW}"]
    assert render(Rule("allow", ip_version=4, src_nets=("fd00::/8",)))[0] == []


def test_ip_sets_per_version_and_references() -> None:
    rules, refs = render(Rule("allow", src_ip_set_ids=("s1",), not_dst_ip_set_ids=("s2",)))
    v4s, v6s = names.ipset_name("s1", 4, False), names.ipset_name("s1", 6, False)
    v4n = names.ipset_name("s2", 4, False)
    assert rules[0] == f"meta nfproto ipv4 ip saddr @{v4s} ip daddr != @{v4n} {ALLOW}"
    assert rules[1].startswith(f"meta nfproto ipv6 ip6 saddr @{v6s} ")
    assert refs == {v4s, v6s, v4n, names.ipset_name("s2", 6, False)}


def test_named_ports_or_port_ranges_become_alternatives() -> None:
    rules, refs = render(Rule("allow", protocol=6, dst_ports=(PortRange(80, 80),), dst_named_port_ip_set_ids=("np",)))
    np4, np6 = names.ipset_name("np", 4, True), names.ipset_name("np", 6, True)
    assert rules == [
        f"meta nfproto ipv4 meta l4proto 6 th dport 80 {ALLOW}",
        f"meta nfproto ipv4 meta l4proto 6 ip daddr . meta l4proto . th dport @{np4} {ALLOW}",
        f"meta nfproto ipv6 meta l4proto 6 th dport 80 {ALLOW}",
        f"meta nfproto ipv6 meta l4proto 6 ip6 daddr . meta l4proto . th dport @{np6} {ALLOW}",
    ]
    assert refs == {np4, np6}


def test_not_ports_and_not_named_ports_are_anded() -> None:
    rules, _ = render(Rule("deny", protocol=17, not_src_ports=(PortRange(53, 53),),
                           not_src_named_port_ip_set_ids=("np",)))
    assert rules[0] == (f"meta nfproto ipv4 meta l4proto 17 th sport != 53 ip saddr . meta l4proto . th sport != "
                        f"@{names.ipset_name('np', 4, True)} drop")


def test_ports_without_protocol_match_the_port_protocols() -> None:
    rules, _ = render(Rule("allow", dst_ports=(PortRange(1, 1024),)))
    assert rules == [f"meta l4proto {{ 6, 17, 132, 136 }} th dport 1-1024 {ALLOW}"]


def test_icmp_type_code_and_negations() -> None:
    assert render(Rule("allow", protocol=1, icmp_type=8, icmp_code=0))[0] == [
        f"meta nfproto ipv4 meta l4proto 1 icmp type 8 icmp code 0 {ALLOW}"]
    assert render(Rule("allow", protocol=58, not_icmp_type=128, not_icmp_code=0))[0] == [
        f"meta nfproto ipv6 meta l4proto 58 icmpv6 type . icmpv6 code != {{ 128 . 0 }} {ALLOW}"]
    assert render(Rule("deny", protocol=1, not_icmp_type=3))[0] == [
        "meta nfproto ipv4 meta l4proto 1 icmp type != 3 drop"]


def test_not_protocol() -> None:
    assert render(Rule("deny", not_protocol=6))[0] == ["meta l4proto != 6 drop"]


def test_port_ranges_are_merged() -> None:
    ranges = (PortRange(10, 20), PortRange(15, 30), PortRange(31, 31), PortRange(40, 40), PortRange(5, 5))
    assert merge_port_ranges(ranges) == [(5, 5), (10, 31), (40, 40)]


@pytest.mark.parametrize(("rule", "message"), [
    (Rule("allow", protocol=6, dst_ports=(PortRange(10, 5),)), "dstPorts range 10-5"),
    (Rule("allow", protocol=6, src_ports=(PortRange(1, 70000),)), "srcPorts range 1-70000"),
    (Rule("allow", icmp_type=8), "need protocol ICMP"),
    (Rule("allow", protocol=1, icmp_code=0), "icmp code given without icmp type"),
    (Rule("allow", protocol=1, icmp_type=300), "not within 0-255"),
    (Rule("allow", src_nets=("10.0.0.300/8",)), "srcNets entry '10.0.0.300/8' is not a CIDR"),
    (Rule("allow", protocol=999), "protocol 999"),
    (Rule("allow", ip_version=5), "ipVersion 5"),
    (Rule("allow", src_ip_set_ids=("",)), "empty IP set id"),
    (Rule("jump"), "unknown action 'jump'"),
])
def test_bad_rules_name_the_rule_and_the_problem(rule: Rule, message: str) -> None:
    with pytest.raises(RenderError) as info:
        R.render_rules([Rule("allow"), dataclasses.replace(rule, rule_id="ns/np/ingress/1")],
                       "policy default/np inbound")
    assert message in str(info.value)
    assert "policy default/np inbound rule 1 (ns/np/ingress/1)" in str(info.value)


def test_endpoint_chain_tiers_pass_and_profiles() -> None:
    tiers = (TierInfo("security", ("sec.a",), (), "pass"), TierInfo("default", ("ns/b", "ns/c"), ("ns/e",)),
             TierInfo("empty", (), ("x",)))
    chain, refs = endpoint_chain("cali-tw-cali1", R, tiers, ("kns.ns",), inbound=True)
    pi = names.policy_chain
    assert chain.rules == (
        "ct state established,related accept",
        "ct state invalid drop",
        "meta mark set meta mark & 0xfffcffff",
        "meta mark set meta mark & 0xfffdffff",
        # Inbound policy chains accept outright: no "return if accepted" after the jumps.
        f"meta mark & 0x00020000 == 0x00000000 jump {pi('security', 'sec.a', True)}",
        # security's default action is Pass: no end-of-tier drop
        "meta mark set meta mark & 0xfffdffff",
        f"meta mark & 0x00020000 == 0x00000000 jump {pi('default', 'ns/b', True)}",
        f"meta mark & 0x00020000 == 0x00000000 jump {pi('default', 'ns/c', True)}",
        "meta mark & 0x00020000 == 0x00000000 drop",
        f"jump {names.profile_chain('kns.ns', True)}",
        "drop",
    )
    assert refs == {pi("security", "sec.a", True), pi("default", "ns/b", True), pi("default", "ns/c", True),
                    names.profile_chain("kns.ns", True)}
    egress, egress_refs = endpoint_chain("cali-fw-cali1", R, tiers, (), inbound=False, prologue=["udp dport 4789 drop"])
    assert egress.rules[3] == "udp dport 4789 drop"
    assert egress_refs == {pi("default", "ns/e", False), pi("empty", "x", False)}
    assert egress.rules[-1] == "drop"
    # Outbound chains return to their caller (the to-workload chain may still follow): return if accepted.
    jump = egress.rules.index(f"meta mark & 0x00020000 == 0x00000000 jump {pi('default', 'ns/e', False)}")
    assert egress.rules[jump + 1] == "meta mark & 0x00010000 == 0x00010000 return"


def test_allow_accepts_outright_only_in_final_chains() -> None:
    assert R.render_rules([Rule("allow")], "policy inbound", final=True).rules == ["accept"]
    assert R.render_rules([Rule("allow")], "policy outbound").rules == [ALLOW]
    assert R.render_rules([Rule("pass")], "policy inbound", final=True).rules == [PASS]


def test_static_chains_fail_closed_for_unknown_workload_interfaces() -> None:
    chains = {c.name: c for c in static_chains(R, DataplaneSettings(interface_prefixes=("cali", "tap")),
                                               all_hep=True, vxlan_on=True)}
    forward = chains[names.CHAIN_FORWARD].rules
    for prefix in ("cali", "tap"):
        assert f'iifname "{prefix}*" meta mark & 0x00010000 == 0x00000000 drop' in forward
        assert f'oifname "{prefix}*" meta mark & 0x00010000 == 0x00000000 drop' in forward
    forward_base = chains[names.CHAIN_FORWARD].base
    assert forward_base is not None and forward_base.hook == "forward"
    assert f"jump {names.host_chain(names.ALL_INTERFACES, False)}" in chains[names.CHAIN_INPUT].rules
    assert any("udp dport 4789 ip saddr @cali40-all-vxlan-net" in r for r in chains[names.CHAIN_INPUT].rules)
    assert chains[names.CHAIN_WL_TO_HOST].rules[-1] == "drop"  # defaultEndpointToHostAction Drop
    assert chains[names.CHAIN_FAILSAFE_IN].rules[0] == "meta l4proto 6 th dport 22 accept"
