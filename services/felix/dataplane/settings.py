"""The dataplane's view of Felix configuration, from :class:`ConfigUpdate` (Calico's names and defaults).

Keys are matched the way Felix matches config parameters: case-insensitively,
with or without the ``FELIX_`` prefix and underscores, so ``failsafeInboundHostPorts``,
``FailsafeInboundHostPorts`` and ``FELIX_FAILSAFEINBOUNDHOSTPORTS`` are one key.
Values may be the raw strings of an environment variable / config file or
already-typed values (bool, int, list of ``{protocol, port, net}``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from libcalico.runtime.paramtypes import PortList, ProtoPort, parse_duration
from services.felix.dataplane.errors import RenderError

_PORTS = PortList()

# Calico's defaults (felix/config/config_params.go).
DEFAULT_FAILSAFE_INBOUND = _PORTS.parse("tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667")
DEFAULT_FAILSAFE_OUTBOUND = _PORTS.parse("udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667")


@dataclass(frozen=True, slots=True)
class DataplaneSettings:
    """Everything configurable that changes what the dataplane programs."""

    interface_prefixes: tuple[str, ...] = ("cali",)
    failsafe_inbound: tuple[ProtoPort, ...] = DEFAULT_FAILSAFE_INBOUND
    failsafe_outbound: tuple[ProtoPort, ...] = DEFAULT_FAILSAFE_OUTBOUND
    default_endpoint_to_host_action: str = "Drop"  # Drop | Accept | Return
    deny_action: str = "Drop"  # iptablesFilterDenyAction: Drop | Reject
    ipv6_support: bool = True
    vxlan_enabled: bool | None = None  # None: on when this node has a VTEP
    vxlan_vni: int = 4096
    vxlan_port: int = 4789
    vxlan_mtu: int = 0  # 0: the parent device's MTU minus 50
    allow_vxlan_from_workloads: bool = False
    allow_ipip_from_workloads: bool = False
    ipip_enabled: bool | None = None
    ipip_tunnel_addr: str = ""
    ipip_mtu: int = 0
    refresh_interval: float = 180.0  # nftablesRefreshInterval
    route_refresh_interval: float = 90.0
    log_prefix: str = "calico-packet"
    mark_mask: int = 0xFFFF0000  # iptablesMarkMask
    device_route_protocol: int = 3  # RTPROT_BOOT, Felix's default
    nat_outgoing_address: str = ""

    @property
    def accept_mark(self) -> int:
        """First bit of the mark mask: "this packet was allowed"."""
        return _mark_bits(self.mark_mask)[0]

    @property
    def pass_mark(self) -> int:
        """Second bit of the mark mask: "a policy passed this packet to the next tier"."""
        return _mark_bits(self.mark_mask)[1]


def _mark_bits(mask: int) -> list[int]:
    bits = [1 << i for i in range(32) if mask & (1 << i)]
    if len(bits) < 2:
        raise RenderError("iptablesMarkMask", f"needs at least 2 bits, got {mask:#x}")
    return bits


def _key(name: str) -> str:
    key = name.lower().replace("_", "")
    return key[len("felix"):] if key.startswith("felix") else key


# normalised key -> (settings field, converter)
def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "y", "t", "enabled"):
        return True
    if text in ("false", "0", "no", "n", "f", "disabled", ""):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    return int(str(value).strip(), 0)


def _duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hasattr(value, "total_seconds"):
        return float(value.total_seconds())
    return parse_duration(str(value))


def _ports(value: Any) -> tuple[ProtoPort, ...]:
    if isinstance(value, str):
        if value.strip().lower() == "none":
            return ()
        return _PORTS.parse(value)
    if isinstance(value, Iterable):
        items = [v.model_dump() if hasattr(v, "model_dump") else v for v in value]
        return _PORTS.check(items)
    raise ValueError(f"expected a port list, got {value!r}")


def _action(choices: tuple[str, ...]) -> Any:
    def convert(value: Any) -> str:
        for choice in choices:
            if str(value).strip().lower() == choice.lower():
                return choice
        raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
    return convert


def _prefixes(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    out = tuple(str(v).strip() for v in items if str(v).strip())
    if not out:
        raise ValueError("interfacePrefix must name at least one prefix")
    return out


def _str(value: Any) -> str:
    return "" if value is None else str(value).strip()


_FIELDS: dict[str, tuple[str, Any]] = {
    "interfaceprefix": ("interface_prefixes", _prefixes),
    "failsafeinboundhostports": ("failsafe_inbound", _ports),
    "failsafeoutboundhostports": ("failsafe_outbound", _ports),
    "defaultendpointtohostaction": ("default_endpoint_to_host_action", _action(("Drop", "Accept", "Return"))),
    "iptablesfilterdenyaction": ("deny_action", _action(("Drop", "Reject"))),
    "ipv6support": ("ipv6_support", _bool),
    "vxlanenabled": ("vxlan_enabled", _bool),
    "vxlanvni": ("vxlan_vni", _int),
    "vxlanport": ("vxlan_port", _int),
    "vxlanmtu": ("vxlan_mtu", _int),
    "allowvxlanpacketsfromworkloads": ("allow_vxlan_from_workloads", _bool),
    "allowipippacketsfromworkloads": ("allow_ipip_from_workloads", _bool),
    "ipipenabled": ("ipip_enabled", _bool),
    "ipiniptunneladdr": ("ipip_tunnel_addr", _str),
    "ipv4ipiptunneladdr": ("ipip_tunnel_addr", _str),
    "ipipmtu": ("ipip_mtu", _int),
    "nftablesrefreshinterval": ("refresh_interval", _duration),
    "routerefreshinterval": ("route_refresh_interval", _duration),
    "logprefix": ("log_prefix", _str),
    "iptablesmarkmask": ("mark_mask", _int),
    "devicerouteprotocol": ("device_route_protocol", _int),
    "natoutgoingaddress": ("nat_outgoing_address", _str),
}


def settings_from_config(config: Mapping[str, object], base: DataplaneSettings | None = None) -> DataplaneSettings:
    """Settings from an effective Felix config dict; unknown keys are ignored; bad values raise RenderError."""
    changes: dict[str, Any] = {}
    for raw_key, value in config.items():
        entry = _FIELDS.get(_key(raw_key))
        if entry is None or value is None:
            continue
        field_name, convert = entry
        try:
            changes[field_name] = convert(value)
        except ValueError as exc:
            raise RenderError(f"config {raw_key}", str(exc)) from None
    settings = dataclasses.replace(base or DataplaneSettings(), **changes)
    _check(settings)
    return settings


def _check(settings: DataplaneSettings) -> None:
    if not 0 < settings.vxlan_vni < 2**24:
        raise RenderError("config vxlanVNI", f"must be 1-16777215, got {settings.vxlan_vni}")
    if not 0 < settings.vxlan_port < 65536:
        raise RenderError("config vxlanPort", f"must be 1-65535, got {settings.vxlan_port}")
    if settings.refresh_interval < 0 or settings.route_refresh_interval < 0:
        raise RenderError("config refresh interval", "must not be negative")
    if '"' in settings.log_prefix or "\\" in settings.log_prefix:
        raise RenderError("config logPrefix", "must not contain quotes or backslashes")
    _mark_bits(settings.mark_mask)
