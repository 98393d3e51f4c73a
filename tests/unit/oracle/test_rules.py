"""Rule matching: protocols, ports (ranges, named), nets, CIDR sources, IP versions, ICMP, services, HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from libcalico.oracle import AmbiguousFlow, Reason

from .cluster import BASE, gnp, namespace_profile, np, pod, res, verdict

WEB_PORTS = [{"name": "http", "protocol": "TCP", "port": 8080}, {"name": "dns", "protocol": "UDP", "port": 5353},
             {"name": "metrics", "protocol": "TCP", "port": 9090}]
A = pod("a", ["10.0.0.1", "fd00::1"], labels={"role": "client"})
B = pod("b", ["10.0.0.2", "fd00::2"], labels={"role": "server"}, ports=WEB_PORTS)
C = pod("c", "10.0.0.3", labels={"role": "server"}, ports=[{"name": "http", "protocol": "TCP", "port": 80}])
PODS = [*BASE, A, B, C]


def ingress(*rules: dict[str, Any], selector: str = "role == 'server'") -> list[Any]:
    """The pods plus one GNP on the servers with these ingress rules (nothing else allowed)."""
    return [*PODS, gnp("rules", {"selector": selector, "ingress": list(rules)})]


def allowed(resources: list[Any], src: str = "a", dst: str = "b", protocol: str | int = "tcp",
            port: int | None = 80, **kw: Any) -> bool:
    return verdict(resources, src, dst, protocol, port, **kw).allowed


def test_protocol_and_not_protocol() -> None:
    udp = ingress({"action": "Allow", "protocol": "UDP"})
    assert allowed(udp, protocol="udp") and not allowed(udp, protocol="tcp")
    not_udp = ingress({"action": "Allow", "notProtocol": "UDP"})
    assert allowed(not_udp, protocol="tcp") and not allowed(not_udp, protocol="udp")
    numeric = ingress({"action": "Allow", "protocol": 132})
    assert allowed(numeric, protocol="sctp") and allowed(numeric, protocol=132)


def test_destination_ports_numbers_and_ranges() -> None:
    rules = ingress({"action": "Allow", "protocol": "TCP", "destination": {"ports": [80, "8000:8010"]}})
    assert allowed(rules, port=80) and allowed(rules, port=8000) and allowed(rules, port=8010)
    assert not allowed(rules, port=81) and not allowed(rules, port=8011)


def test_destination_not_ports() -> None:
    rules = ingress({"action": "Allow", "protocol": "TCP", "destination": {"notPorts": [22, "6000:6999"]}})
    assert allowed(rules, port=80) and not allowed(rules, port=22) and not allowed(rules, port=6500)


def test_port_rule_without_flow_port_is_ambiguous() -> None:
    rules = ingress({"action": "Allow", "protocol": "TCP", "destination": {"ports": [80]}})
    with pytest.raises(AmbiguousFlow) as err:
        verdict(rules, "a", "b", "tcp", None)
    assert err.value.where == "ingress: rules (tier default) rule 0 Allow"
    assert "no destination port" in err.value.reason


def test_named_destination_port_resolves_against_the_destination() -> None:
    rules = ingress({"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}})
    assert allowed(rules, dst="b", port=8080) and not allowed(rules, dst="b", port=80)
    assert allowed(rules, dst="c", port=80) and not allowed(rules, dst="c", port=8080)


def test_named_port_protocol_must_match() -> None:
    # "dns" is a UDP port on b: a TCP rule naming it matches nothing, a UDP rule matches.
    tcp = ingress({"action": "Allow", "protocol": "TCP", "destination": {"ports": ["dns"]}})
    assert not allowed(tcp, port=5353)
    udp = ingress({"action": "Allow", "protocol": "UDP", "destination": {"ports": ["dns"]}})
    assert allowed(udp, protocol="udp", port=5353)


def test_named_and_numeric_ports_are_or_ed() -> None:
    rules = ingress({"action": "Allow", "protocol": "TCP", "destination": {"ports": ["metrics", 443]}})
    assert allowed(rules, port=9090) and allowed(rules, port=443) and not allowed(rules, port=8080)


def test_named_port_limited_by_rule_destination_selector() -> None:
    rules = ingress({"action": "Allow", "protocol": "TCP",
                     "destination": {"selector": "app == 'c'", "ports": ["http"]}})
    assert allowed(rules, dst="c", port=80)
    assert not allowed(rules, dst="b", port=8080)


def test_named_not_ports() -> None:
    rules = ingress({"action": "Allow", "protocol": "TCP", "destination": {"notPorts": ["metrics"]}})
    assert allowed(rules, port=8080) and not allowed(rules, port=9090)


def test_source_ports_need_the_flow_source_port() -> None:
    rules = ingress({"action": "Allow", "protocol": "UDP", "source": {"ports": [53]}})
    assert allowed(rules, protocol="udp", port=5000, source_port=53)
    assert not allowed(rules, protocol="udp", port=5000, source_port=54)
    with pytest.raises(AmbiguousFlow, match="no source port"):
        verdict(rules, "a", "b", "udp", 5000)


def test_undecidable_rule_after_a_decision_does_not_matter() -> None:
    rules = ingress({"action": "Deny", "protocol": "TCP"}, {"action": "Allow", "source": {"ports": [53]},
                                                           "protocol": "UDP"})
    assert not allowed(rules)


def test_source_and_destination_nets() -> None:
    rules = ingress({"action": "Allow", "source": {"nets": ["10.0.0.0/30"]}, "destination": {"nets": ["10.0.0.2/32"]}})
    assert allowed(rules, src="a", dst="b")
    assert not allowed(rules, src="a", dst="c")
    assert allowed(rules, src="10.0.0.3", dst="b") and not allowed(rules, src="10.0.0.4", dst="b")


def test_not_nets() -> None:
    rules = ingress({"action": "Allow", "source": {"notNets": ["10.0.0.0/31", "192.168.0.0/16"]}})
    assert not allowed(rules, src="a") and allowed(rules, src="10.0.0.3") and not allowed(rules, src="192.168.1.1")


def test_cidr_source_fully_inside_or_outside_decides() -> None:
    rules = ingress({"action": "Allow", "source": {"nets": ["198.51.100.0/24"]}})
    assert allowed(rules, src="198.51.100.128/25")
    assert not allowed(rules, src="203.0.113.0/24")


def test_cidr_source_covered_by_several_nets_is_inside() -> None:
    rules = ingress({"action": "Allow", "source": {"nets": ["198.51.100.0/25", "198.51.100.128/25"]}})
    assert allowed(rules, src="198.51.100.0/24")


def test_cidr_source_partly_inside_is_ambiguous() -> None:
    rules = ingress({"action": "Allow", "source": {"nets": ["198.51.100.0/25"]}})
    with pytest.raises(AmbiguousFlow, match="only part of the range"):
        verdict(rules, "198.51.100.0/24", "b")


def test_network_set_nets_make_a_cidr_source_match_a_selector() -> None:
    gset = res("GlobalNetworkSet", "partners", {"nets": ["203.0.113.0/24"]}, labels={"kind": "partner"})
    rules = [gset, *ingress({"action": "Allow", "source": {"selector": "kind == 'partner'"}})]
    assert allowed(rules, src="203.0.113.7")
    assert allowed(rules, src="203.0.113.0/26")
    assert not allowed(rules, src="203.0.114.7")
    with pytest.raises(AmbiguousFlow):
        verdict(rules, "203.0.112.0/23", "b")


def test_zero_length_network_set_covers_everything() -> None:
    gset = res("GlobalNetworkSet", "world", {"nets": ["0.0.0.0/0"]}, labels={"kind": "world"})
    rules = [gset, *ingress({"action": "Allow", "source": {"selector": "kind == 'world'"}})]
    assert allowed(rules, src="8.8.8.8") and allowed(rules, src="0.0.0.0/0")


def test_selector_matches_pod_address() -> None:
    rules = ingress({"action": "Allow", "source": {"selector": "role == 'client'"}})
    assert allowed(rules, src="a") and allowed(rules, src="10.0.0.1") and not allowed(rules, src="c")


def test_destination_selector_and_not_selector() -> None:
    rules = ingress({"action": "Allow", "destination": {"selector": "app == 'b'"}})
    assert allowed(rules, dst="b") and not allowed(rules, dst="c")
    rules = ingress({"action": "Allow", "destination": {"notSelector": "app == 'b'"}})
    assert not allowed(rules, dst="b") and allowed(rules, dst="c")


def test_ip_version_of_rule() -> None:
    v6_only = ingress({"action": "Allow", "ipVersion": 6})
    assert not allowed(v6_only) and allowed(v6_only, ip_version=6)
    v4_only = ingress({"action": "Allow", "ipVersion": 4})
    assert allowed(v4_only) and not allowed(v4_only, ip_version=6)


def test_nets_of_the_other_family_remove_the_rule() -> None:
    v6_nets = ingress({"action": "Allow", "source": {"nets": ["fd00::/64"]}})
    assert allowed(v6_nets, ip_version=6)
    v = verdict(v6_nets, "a", "b")
    assert not v.allowed and v.ingress.reason is Reason.END_OF_TIER
    # A v6-only notNets also removes the rule from IPv4 (Felix filters it to nothing).
    v6_not = ingress({"action": "Allow", "source": {"notNets": ["fd99::/64"]}})
    assert not allowed(v6_not) and allowed(v6_not, ip_version=6)


def test_negated_catch_all_cidr_drops_the_rule() -> None:
    rules = ingress({"action": "Deny", "source": {"notNets": ["0.0.0.0/0"]}}, {"action": "Allow"})
    v = verdict(rules, "a", "b")
    assert v.allowed and v.ingress.rule_index == 1


def test_ipv6_flow_uses_ipv6_addresses() -> None:
    rules = ingress({"action": "Allow", "source": {"nets": ["fd00::1/128"]}})
    v = verdict(rules, "a", "b", "tcp", 80, ip_version=6)
    assert v.allowed and v.flow.source_address == "fd00::1" and v.flow.destination_address == "fd00::2"


def test_icmp_type_and_code() -> None:
    rules = ingress({"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8, "code": 0}})
    assert allowed(rules, protocol="icmp", port=None, icmp_type=8, icmp_code=0)
    assert not allowed(rules, protocol="icmp", port=None, icmp_type=8, icmp_code=1)
    assert not allowed(rules, protocol="icmp", port=None, icmp_type=0, icmp_code=0)
    with pytest.raises(AmbiguousFlow, match="no code"):
        verdict(rules, "a", "b", "icmp", None, icmp_type=8)
    with pytest.raises(AmbiguousFlow, match="no ICMP type"):
        verdict(rules, "a", "b", "icmp", None)


def test_icmp_type_without_code_matches_any_code() -> None:
    rules = ingress({"action": "Allow", "protocol": "ICMP", "icmp": {"type": 3}})
    assert allowed(rules, protocol="icmp", port=None, icmp_type=3, icmp_code=4)
    assert allowed(rules, protocol="icmp", port=None, icmp_type=3)


def test_not_icmp() -> None:
    rules = ingress({"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 8}})
    assert allowed(rules, protocol="icmp", port=None, icmp_type=0)
    assert not allowed(rules, protocol="icmp", port=None, icmp_type=8)


def test_icmp_rule_does_not_match_icmpv6_flows() -> None:
    rules = ingress({"action": "Allow", "protocol": "ICMP"})
    assert allowed(rules, protocol="icmp", port=None, icmp_type=8)
    assert not allowed(rules, protocol="icmp", port=None, icmp_type=128, ip_version=6)
    v6 = ingress({"action": "Allow", "protocol": "ICMPv6"})
    assert allowed(v6, protocol="icmp", port=None, icmp_type=128, ip_version=6)


def test_service_match_cannot_be_decided() -> None:
    rules = [*PODS, gnp("svc", {"selector": "role == 'client'", "types": ["Egress"], "egress": [
        {"action": "Allow", "destination": {"services": {"name": "kubernetes", "namespace": "default"}}}]})]
    with pytest.raises(AmbiguousFlow, match="Kubernetes Service"):
        verdict(rules, "a", "b")


def test_http_match_is_left_to_the_application_layer() -> None:
    rules = ingress({"action": "Allow", "http": {"methods": ["GET"]}})
    v = verdict(rules, "a", "b")
    assert v.allowed and any("HTTP match" in n for n in v.notes)


def test_network_policy_rule_nets_are_not_namespace_limited() -> None:
    resources = [*PODS, namespace_profile("prod"), pod("far", "10.9.0.1", namespace="prod"),
                 np("p", {"selector": "role == 'server'", "ingress": [{"action": "Allow",
                                                                   "source": {"nets": ["10.9.0.0/16"]}}]})]
    assert verdict(resources, "prod/far", "b").allowed
