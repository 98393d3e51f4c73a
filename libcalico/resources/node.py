"""The Node kind: one host running Calico, its BGP and tunnel addresses."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, PlainValidator

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import (
    CIDR,
    MAC,
    ASNumber,
    IPv4Address,
    IPv6Address,
    KindBase,
    SpecModel,
    choice,
    parse_cidr_or_ip,
    raise_problems,
)


def _cidr_version(version: int) -> Any:
    def check(value: Any) -> str:
        net = parse_cidr_or_ip(value, f"IPv{version} address")
        if net.version != version:
            raise ValueError(f"{value!r} is not an IPv{version} address")
        return str(value)

    return Annotated[str, PlainValidator(check)]


_WG_KEY_RE = re.compile(r"^[A-Za-z0-9+/]{43}=$")


def _wireguard_key(value: Any) -> str:
    if not isinstance(value, str) or not _WG_KEY_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a WireGuard public key (44 characters of base64)")
    return value


WireguardKey = Annotated[str, PlainValidator(_wireguard_key)]


class NodeBGPSpec(SpecModel):
    """BGP settings of one node."""

    asNumber: ASNumber | None = None
    ipv4Address: _cidr_version(4) | None = None  # type: ignore[valid-type]
    ipv6Address: _cidr_version(6) | None = None  # type: ignore[valid-type]
    ipv4IPIPTunnelAddr: IPv4Address | None = None
    routeReflectorClusterID: IPv4Address | None = None


class OrchRef(SpecModel):
    """The node's name in an orchestrator."""

    nodeName: str | None = None
    orchestrator: str


class NodeWireguardSpec(SpecModel):
    """WireGuard interface addresses of one node."""

    interfaceIPv4Address: IPv4Address | None = None
    interfaceIPv6Address: IPv6Address | None = None


class NodeAddress(SpecModel):
    """One address of the node."""

    address: CIDR
    type: choice("address type", "CalicoNodeIP", "InternalIP", "ExternalIP") | None = None  # type: ignore[valid-type]


class NodeSpec(SpecModel):
    """Spec of a Node."""

    bgp: NodeBGPSpec | None = None
    ipv4VXLANTunnelAddr: IPv4Address | None = None
    vxlanTunnelMACAddr: MAC | None = None
    ipv6VXLANTunnelAddr: IPv6Address | None = None
    vxlanTunnelMACAddrV6: MAC | None = None
    orchRefs: list[OrchRef] | None = None
    wireguard: NodeWireguardSpec | None = None
    addresses: list[NodeAddress] | None = None
    interfaceName: str | None = None

    @pydantic.model_validator(mode="after")
    def _bgp_not_empty(self) -> NodeSpec:
        if self.bgp is not None and not self.bgp.model_dump(exclude_none=True):
            raise_problems([(("bgp",), "bgp must not be empty (leave it out instead)")])
        return self

    def ipv4_address(self) -> ipaddress.IPv4Interface | None:
        """The node's BGP IPv4 address with its subnet, if any."""
        return ipaddress.IPv4Interface(self.bgp.ipv4Address) if self.bgp and self.bgp.ipv4Address else None

    def ipv6_address(self) -> ipaddress.IPv6Interface | None:
        """The node's BGP IPv6 address with its subnet, if any."""
        return ipaddress.IPv6Interface(self.bgp.ipv6Address) if self.bgp and self.bgp.ipv6Address else None


class NodeStatus(SpecModel):
    """What Calico reports about a node."""

    wireguardPublicKey: WireguardKey | None = None
    wireguardPublicKeyV6: WireguardKey | None = None
    podCIDRs: list[CIDR] | None = None


@register
class Node(KindBase):
    """A host running Calico."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="Node", plural="nodes", namespaced=False,
                                        aliases=("node", "nodes", "no", "nos"))
    kind: Literal["Node"] = "Node"
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus | None = None
