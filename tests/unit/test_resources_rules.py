"""Rule validation in detail, with property tests for ports, protocols and networks."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libcalico.errors import MultiValidationError, ValidationError
from libcalico.resources import Rule, parse_resource


def policy(*rules: dict[str, Any], egress: bool = False, kind: str = "NetworkPolicy") -> Any:
    spec = {"egress" if egress else "ingress": list(rules)}
    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind,
                           "metadata": {"name": "p"}, "spec": spec})


def error_of(*rules: dict[str, Any], egress: bool = False, kind: str = "NetworkPolicy") -> ValidationError:
    with pytest.raises(ValidationError) as info:
        policy(*rules, egress=egress, kind=kind)
    assert not isinstance(info.value, MultiValidationError), str(info.value)
    return info.value


@given(low=st.integers(1, 65535), high=st.integers(1, 65535))
def test_port_ranges_ordered_accepted_reversed_rejected(low: int, high: int) -> None:
    text = f"{low}:{high}"
    rule = {"action": "Allow", "protocol": "TCP", "destination": {"ports": [text]}}
    if low <= high:
        stored = policy(rule).to_dict()["spec"]["ingress"][0]["destination"]["ports"]
        assert stored == [low if low == high else text]
    else:
        err = error_of(rule)
        assert (err.field, err.reason) == ("spec.ingress[0].destination.ports[0]", f"port range {text} is reversed")


@given(port=st.one_of(st.integers(-5, 0), st.integers(65536, 10**6)))
def test_ports_out_of_range_rejected(port: int) -> None:
    err = error_of({"action": "Allow", "protocol": "UDP", "source": {"notPorts": [7, port]}})
    assert err.field == "spec.ingress[0].source.notPorts[1]"
    assert "out of range (1-65535)" in err.reason


@given(number=st.integers(-3, 300))
def test_protocol_numbers(number: int) -> None:
    rule = {"action": "Deny", "notProtocol": number}
    if 1 <= number <= 255:
        assert policy(rule).spec.ingress[0].notProtocol == number
    else:
        err = error_of(rule)
        assert err.field == "spec.ingress[0].notProtocol"


@given(net=st.ip_addresses(v=4), prefix=st.integers(0, 32))
def test_rule_nets_must_be_network_addresses(net: ipaddress.IPv4Address, prefix: int) -> None:
    text = f"{net}/{prefix}"
    network = ipaddress.ip_network(text, strict=False)
    rule = {"action": "Allow", "destination": {"nets": [text]}}
    if network.network_address == net:
        assert policy(rule).spec.ingress[0].destination.nets == [text]
    else:
        err = error_of(rule)
        assert err.field == "spec.ingress[0].destination.nets[0]"
        assert f"did you mean {network}?" in err.reason


@pytest.mark.parametrize("protocol", ["TCP", "UDP", "SCTP", 6, 17, 132])
def test_port_protocols(protocol: Any) -> None:
    assert policy({"action": "Allow", "protocol": protocol, "destination": {"ports": [80, "http"]}})


@pytest.mark.parametrize("protocol", ["ICMP", "ICMPv6", "UDPLite", 136, 47])
def test_protocols_without_ports(protocol: Any) -> None:
    err = error_of({"action": "Allow", "protocol": protocol, "source": {"ports": [80]}})
    assert err.field == "spec.ingress[0].source.ports"


def test_not_icmp_is_allowed_without_protocol_as_in_calico() -> None:
    rule = policy({"action": "Deny", "notICMP": {"type": 3}}).spec.ingress[0]
    assert isinstance(rule, Rule) and rule.notICMP is not None and rule.notICMP.type == 3


def test_icmp_with_matching_ip_version() -> None:
    assert policy({"action": "Allow", "ipVersion": 4, "protocol": "ICMP", "icmp": {"type": 8, "code": 0}})
    err = error_of({"action": "Allow", "ipVersion": 6, "notProtocol": "ICMP"})
    assert (err.field, err.reason) == ("spec.ingress[0].notProtocol", "protocol ICMP requires ipVersion 4")


def test_services_rules() -> None:
    assert policy({"action": "Allow", "source": {"services": {"name": "web", "namespace": "shop"}}})
    err = error_of({"action": "Allow", "destination": {"services": {"namespace": "shop"}}}, egress=True)
    assert (err.field, err.reason) == ("spec.egress[0].destination.services.name", "must specify a service name")
    err = error_of({"action": "Allow", "source": {"services": {"name": "web"}}}, egress=True)
    assert (err.field, err.reason) == ("spec.egress[0].source.services", "not allowed in egress rule source")
    err = error_of({"action": "Allow", "destination": {"services": {"name": "w"}, "nets": ["10.0.0.0/8"]}},
                   egress=True)
    assert err.field == "spec.egress[0].destination.services"


def test_global_namespace_selector_only_alone() -> None:
    assert policy({"action": "Allow", "source": {"namespaceSelector": "global()"}})
    err = error_of({"action": "Allow", "source": {"namespaceSelector": "global() && a == 'b'"}})
    assert (err.field, err.reason) == ("spec.ingress[0].source.namespaceSelector",
                                       "global() cannot be combined with other selectors")


def test_http_paths_must_be_absolute() -> None:
    err = error_of({"action": "Allow", "http": {"paths": [{"exact": "/ok"}, {"prefix": "users"}]}})
    assert err.field == "spec.ingress[0].http.paths[1].prefix"
    assert "must start with '/'" in err.reason


def test_service_account_selector_checked() -> None:
    err = error_of({"action": "Allow", "source": {"serviceAccounts": {"names": ["a"], "selector": "(("}}})
    assert err.field == "spec.ingress[0].source.serviceAccounts.selector"


def test_strings_are_not_coerced() -> None:
    err = error_of({"action": "Allow", "ipVersion": "4"})
    assert err.field == "spec.ingress[0].ipVersion"
    err = error_of({"action": "Allow", "protocol": "ICMP", "icmp": {"type": "8"}})
    assert (err.field, err.reason) == ("spec.ingress[0].icmp.type", "ICMP type must be an integer, not '8'")
