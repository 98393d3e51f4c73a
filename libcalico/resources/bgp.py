"""BGP kinds: BGPPeer and BGPConfiguration.

Neither kind fills runtime defaults into the stored resource (a
``node.<name>`` BGPConfiguration overrides only what it sets); the effective
defaults are the constants below, which confd applies.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, PlainValidator

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import (
    ASNumber,
    IPAddress,
    IPv4Address,
    IPv6Address,
    KindBase,
    Loc,
    Name,
    Net,
    PortNumber,
    Selector,
    SpecModel,
    choice,
    int_range,
    non_negative_duration,
    raise_problems,
)

DEFAULT_AS_NUMBER = 64512
DEFAULT_LISTEN_PORT = 179
DEFAULT_LOG_SEVERITY = "Info"

LogSeverity = choice("log severity", "Trace", "Debug", "Info", "Warning", "Error", "Fatal")
Duration = Annotated[str, PlainValidator(non_negative_duration)]

_IPV4_PORT_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)\.(\d+):(\d+)$")
_IPV6_PORT_RE = re.compile(r"^\[([0-9a-fA-F:.]+)\]:(\d+)$")


def split_peer_ip(value: str) -> tuple[str, int | None]:
    """Split a peerIP (``IP``, ``IPv4:port`` or ``[IPv6]:port``) into address and optional port."""
    port: int | None = None
    host = value
    m4, m6 = _IPV4_PORT_RE.fullmatch(value), _IPV6_PORT_RE.fullmatch(value)
    if m4:
        host, port = value.rsplit(":", 1)[0], int(m4.group(5))
    elif m6:
        host, port = m6.group(1), int(m6.group(2))
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"peerIP {value!r} has an invalid port (1-65535)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"peerIP {value!r} must be an IP address, IPv4:port or [IPv6]:port") from None
    return host, port


def _peer_ip(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"peerIP must be a string, not {value!r}")
    split_peer_ip(value)
    return value


PeerIP = Annotated[str, PlainValidator(_peer_ip)]


class SecretKeyRef(SpecModel):
    """A key of a Kubernetes secret in calico-node's namespace."""

    name: str
    key: str
    optional: bool | None = None


class BGPPassword(SpecModel):
    """Where to read a BGP password from."""

    secretKeyRef: SecretKeyRef | None = None


class BGPPeerSpec(SpecModel):
    """Spec of a BGPPeer."""

    node: Name | None = None
    nodeSelector: Selector | None = None
    peerIP: PeerIP | None = None
    asNumber: ASNumber | None = None
    localASNumber: ASNumber | None = None
    peerSelector: Selector | None = None
    localWorkloadSelector: Selector | None = None
    keepOriginalNextHop: bool | None = None
    nextHopMode: choice("nextHopMode", "Auto", "Self", "Keep") | None = None  # type: ignore[valid-type]
    password: BGPPassword | None = None
    sourceAddress: choice("sourceAddress", "UseNodeIP", "None") | None = None  # type: ignore[valid-type]
    maxRestartTime: Duration | None = None
    keepaliveTime: Duration | None = None
    numAllowedLocalASNumbers: int_range("numAllowedLocalASNumbers", 0, 2**31 - 1) | None = None  # type: ignore[valid-type]
    ttlSecurity: int_range("ttlSecurity", 0, 255) | None = None  # type: ignore[valid-type]
    filters: list[Name] | None = None
    reachableBy: IPAddress | None = None
    reversePeering: choice("reversePeering", "Auto", "Manual") | None = None  # type: ignore[valid-type]

    @pydantic.model_validator(mode="after")
    def _checks(self) -> BGPPeerSpec:
        problems: list[tuple[Loc, str]] = []
        if self.node and self.nodeSelector:
            problems.append((("node",), "node must be empty when nodeSelector is specified"))
        if self.peerIP and self.peerSelector:
            problems.append((("peerIP",), "peerIP must be empty when peerSelector is specified"))
        if self.asNumber and self.peerSelector:
            problems.append((("asNumber",), "asNumber must be empty when peerSelector is specified"))
        if self.localWorkloadSelector:
            if not self.asNumber:
                problems.append((("asNumber",), "asNumber must be set when localWorkloadSelector is specified"))
            if self.peerIP:
                problems.append((("peerIP",), "peerIP must be empty when localWorkloadSelector is specified"))
            if self.peerSelector:
                problems.append((("peerSelector",),
                                 "peerSelector must be empty when localWorkloadSelector is specified"))
        if self.reachableBy:
            if not self.peerIP:
                problems.append((("reachableBy",), "reachableBy must be empty when peerIP is empty"))
            else:
                host, _ = split_peer_ip(self.peerIP)
                if ipaddress.ip_address(host).version != ipaddress.ip_address(self.reachableBy).version:
                    problems.append((("reachableBy",), "reachableBy and peerIP address family mismatched"))
        if self.keepOriginalNextHop and self.nextHopMode is not None:
            problems.append((("keepOriginalNextHop",),
                             "keepOriginalNextHop is deprecated and must not be true when nextHopMode is set"))
        raise_problems(problems)
        return self


@register
class BGPPeer(KindBase):
    """A BGP peer of some or all nodes."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="BGPPeer", plural="bgppeers", namespaced=False,
                                        aliases=("bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"))
    kind: Literal["BGPPeer"] = "BGPPeer"
    spec: BGPPeerSpec = Field(default_factory=BGPPeerSpec)


class CIDRBlock(SpecModel):
    """One service address block to advertise."""

    cidr: Net | None = None


_STANDARD_COMMUNITY = re.compile(r"^(\d+):(\d+)$")
_LARGE_COMMUNITY = re.compile(r"^(\d+):(\d+):(\d+)$")


def community_problem(value: str) -> str | None:
    """Why ``value`` is not a standard (``aa:nn``) or large (``aa:nn:mm``) community, or None."""
    if _STANDARD_COMMUNITY.fullmatch(value):
        bits = 16
    elif _LARGE_COMMUNITY.fullmatch(value):
        bits = 32
    else:
        return f"invalid community value {value!r} (expected aa:nn or aa:nn:mm)"
    if any(int(part) >= 2**bits for part in value.split(":")):
        return f"invalid community value {value!r}: each part must be a {bits} bit number"
    return None


class Community(SpecModel):
    """A named BGP community value."""

    name: Name
    value: str

    @pydantic.model_validator(mode="after")
    def _value(self) -> Community:
        problem = community_problem(self.value)
        if problem:
            raise_problems([(("value",), problem)])
        return self


class PrefixAdvertisement(SpecModel):
    """Communities to attach to one advertised prefix."""

    cidr: Net
    communities: list[str]


_IGNORED_IFACE_RE = re.compile(r"^[a-zA-Z0-9_.*-]{1,15}$")


def _ignored_interface(value: Any) -> str:
    if not isinstance(value, str) or value == "*" or not _IGNORED_IFACE_RE.fullmatch(value):
        raise ValueError(f"invalid interface name {value!r} (1-15 of letters, digits, '_', '.', '-' or '*'; "
                         "not just '*')")
    return value


class BGPConfigurationSpec(SpecModel):
    """Spec of a BGPConfiguration (``default`` or ``node.<nodename>``)."""

    logSeverityScreen: LogSeverity | None = None  # type: ignore[valid-type]
    nodeToNodeMeshEnabled: bool | None = None
    asNumber: ASNumber | None = None
    serviceLoadBalancerIPs: list[CIDRBlock] | None = None
    serviceExternalIPs: list[CIDRBlock] | None = None
    serviceClusterIPs: list[CIDRBlock] | None = None
    communities: list[Community] | None = None
    prefixAdvertisements: list[PrefixAdvertisement] | None = None
    listenPort: PortNumber | None = None  # type: ignore[valid-type]
    bindMode: choice("bindMode", "None", "NodeIP") | None = None  # type: ignore[valid-type]
    nodeMeshPassword: BGPPassword | None = None
    nodeMeshMaxRestartTime: Duration | None = None
    ignoredInterfaces: list[Annotated[str, PlainValidator(_ignored_interface)]] | None = None
    localWorkloadPeeringIPV4: IPv4Address | None = None
    localWorkloadPeeringIPV6: IPv6Address | None = None
    programClusterRoutes: choice("programClusterRoutes", "Enabled", "Disabled") | None = None  # type: ignore[valid-type]

    @pydantic.model_validator(mode="after")
    def _checks(self) -> BGPConfigurationSpec:
        problems: list[tuple[Loc, str]] = []
        names = {c.name for c in self.communities or []}
        if self.communities and not self.prefixAdvertisements:
            problems.append((("communities",), "communities are defined but not used in prefixAdvertisements"))
        for i, adv in enumerate(self.prefixAdvertisements or []):
            for j, community in enumerate(adv.communities):
                if community not in names and community_problem(community):
                    problems.append((("prefixAdvertisements", i, "communities", j),
                                     f"community {community!r} is not a valid value nor a name defined in communities"))
        mesh_off = self.nodeToNodeMeshEnabled is False
        if mesh_off and self.nodeMeshPassword is not None:
            problems.append((("nodeMeshPassword",), "cannot be set when nodeToNodeMeshEnabled is false"))
        if mesh_off and self.nodeMeshMaxRestartTime is not None:
            problems.append((("nodeMeshMaxRestartTime",), "cannot be set when nodeToNodeMeshEnabled is false"))
        raise_problems(problems)
        return self


@register
class BGPConfiguration(KindBase):
    """Cluster-wide (``default``) or per-node (``node.<name>``) BGP settings."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="BGPConfiguration", plural="bgpconfigurations", namespaced=False,
        aliases=("bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"),
    )
    kind: Literal["BGPConfiguration"] = "BGPConfiguration"
    spec: BGPConfigurationSpec = Field(default_factory=BGPConfigurationSpec)
