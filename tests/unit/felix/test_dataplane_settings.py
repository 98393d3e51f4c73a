"""Felix configuration as the dataplane reads it: Calico's names, defaults and value forms."""

from __future__ import annotations

import pytest

from services.felix.dataplane.errors import RenderError
from services.felix.dataplane.settings import DataplaneSettings, settings_from_config


def ports(entries: tuple[object, ...]) -> list[str]:
    return [str(p) for p in entries]


def test_calico_defaults() -> None:
    s = DataplaneSettings()
    assert ports(s.failsafe_inbound) == ["tcp:22", "udp:68", "tcp:179", "tcp:2379", "tcp:2380", "tcp:5473",
                                         "tcp:6443", "tcp:6666", "tcp:6667"]
    assert ports(s.failsafe_outbound) == ["udp:53", "udp:67", "tcp:179", "tcp:2379", "tcp:2380", "tcp:5473",
                                          "tcp:6443", "tcp:6666", "tcp:6667"]
    assert s.default_endpoint_to_host_action == "Drop"
    assert (s.vxlan_vni, s.vxlan_port) == (4096, 4789)
    assert (s.accept_mark, s.pass_mark) == (0x10000, 0x20000)


@pytest.mark.parametrize("key", ["failsafeInboundHostPorts", "FailsafeInboundHostPorts",
                                 "FELIX_FAILSAFEINBOUNDHOSTPORTS"])
def test_keys_match_like_felix(key: str) -> None:
    assert ports(settings_from_config({key: "tcp:10.0.0.0/8:22, udp:53"}).failsafe_inbound) == [
        "tcp:10.0.0.0/8:22", "udp:53"]


def test_value_forms() -> None:
    s = settings_from_config({
        "failsafeOutboundHostPorts": [{"protocol": "TCP", "port": 443, "net": "10.0.0.0/8"}],
        "failsafeInboundHostPorts": "none",
        "defaultEndpointToHostAction": "accept",
        "vxlanVNI": "4097", "nftablesRefreshInterval": "1m30s", "routeRefreshInterval": 5,
        "ipv6Support": "false", "interfacePrefix": "cali,tap", "iptablesMarkMask": "0xff000000",
        "somethingElse": "ignored",
    })
    assert ports(s.failsafe_outbound) == ["tcp:10.0.0.0/8:443"] and s.failsafe_inbound == ()
    assert s.default_endpoint_to_host_action == "Accept" and s.vxlan_vni == 4097
    assert (s.refresh_interval, s.route_refresh_interval) == (90.0, 5.0)
    assert s.ipv6_support is False and s.interface_prefixes == ("cali", "tap")
    assert (s.accept_mark, s.pass_mark) == (0x1000000, 0x2000000)


@pytest.mark.parametrize(("config", "message"), [
    ({"defaultEndpointToHostAction": "Maybe"}, "config defaultEndpointToHostAction: expected one of Drop"),
    ({"failsafeInboundHostPorts": "icmp:5"}, "config failsafeInboundHostPorts"),
    ({"vxlanVNI": 0}, "config vxlanVNI"),
    ({"iptablesMarkMask": "0x1"}, "needs at least 2 bits"),
    ({"logPrefix": 'bad"prefix'}, "config logPrefix"),
])
def test_bad_values_say_which_key(config: dict[str, object], message: str) -> None:
    with pytest.raises(RenderError) as info:
        settings_from_config(config)
    assert message in str(info.value)
