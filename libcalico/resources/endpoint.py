"""Endpoint kinds: HostEndpoint and WorkloadEndpoint.

WorkloadEndpoint names follow Calico's ``<node>-<orchestrator>-<workload>-<endpoint>``
form with ``-`` inside each part doubled (``node1-k8s-my--nginx--b1337a-eth0``);
they are DNS-1123 subdomains, which is all Calico's validator requires.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import PlainValidator

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import (
    CIDR,
    MAC,
    IPAddress,
    KindBase,
    Loc,
    Name,
    PortNumber,
    Protocol,
    SpecModel,
    parse_cidr_or_ip,
    port_name_problem,
    protocol_number,
    raise_problems,
)
from libcalico.resources.rules import PORT_PROTOCOLS

_INTERFACE_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
_CONTAINER_ID_RE = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")


def _interface(value: Any) -> str:
    if not isinstance(value, str) or not _INTERFACE_RE.fullmatch(value):
        raise ValueError(f"invalid interface name {value!r} (1-15 letters, digits, '_', '.' or '-')")
    return value


def _hep_interface(value: Any) -> str:
    return value if value == "*" else _interface(value)


def _container_id(value: Any) -> str:
    if not isinstance(value, str) or not _CONTAINER_ID_RE.fullmatch(value):
        raise ValueError(f"invalid containerID {value!r} (letters, digits and '-', starting and ending "
                         "with a letter or digit)")
    return value


def _port_name(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"port name must be a string, not {value!r}")
    problem = port_name_problem(value) if value else "port name must not be empty"
    if problem:
        raise ValueError(problem)
    return value


InterfaceName = Annotated[str, PlainValidator(_interface)]
PortName = Annotated[str, PlainValidator(_port_name)]


class EndpointPort(SpecModel):
    """A named port of a host endpoint."""

    name: PortName
    protocol: Protocol
    port: PortNumber  # type: ignore[valid-type]

    @pydantic.model_validator(mode="after")
    def _protocol(self) -> EndpointPort:
        if protocol_number(self.protocol) not in PORT_PROTOCOLS:
            raise_problems([(("protocol",), "a named port's protocol must be TCP, UDP or SCTP")])
        return self


class HostEndpointSpec(SpecModel):
    """Spec of a HostEndpoint."""

    node: Name | None = None
    interfaceName: Annotated[str, PlainValidator(_hep_interface)] | None = None
    expectedIPs: list[IPAddress] | None = None
    profiles: list[Name] | None = None
    ports: list[EndpointPort] | None = None

    @pydantic.model_validator(mode="after")
    def _checks(self) -> HostEndpointSpec:
        problems: list[tuple[Loc, str]] = []
        if not self.node:
            problems.append((("node",), "no node has been specified"))
        if not self.interfaceName and not self.expectedIPs:
            problems.append((("interfaceName",), "no interface or expected IPs have been specified"))
        raise_problems(problems)
        return self


@register
class HostEndpoint(KindBase):
    """A host interface (or all of a host's interfaces) that Calico polices."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="HostEndpoint", plural="hostendpoints", namespaced=False,
                                        aliases=("hostendpoint", "hostendpoints", "hep", "heps"))
    kind: Literal["HostEndpoint"] = "HostEndpoint"
    spec: HostEndpointSpec


class WorkloadEndpointPort(SpecModel):
    """A named (or host-mapped) port of a workload."""

    name: str | None = None
    protocol: Protocol
    port: PortNumber  # type: ignore[valid-type]
    hostPort: PortNumber | None = None  # type: ignore[valid-type]
    hostIP: IPAddress | None = None

    @pydantic.model_validator(mode="after")
    def _checks(self) -> WorkloadEndpointPort:
        problems: list[tuple[Loc, str]] = []
        if protocol_number(self.protocol) not in PORT_PROTOCOLS:
            problems.append((("protocol",), "a workload port's protocol must be TCP, UDP or SCTP"))
        if self.name:
            reason = port_name_problem(self.name)
            if reason:
                problems.append((("name",), reason))
        elif not self.hostPort:
            problems.append((("name",), "a workload port needs a name when no hostPort is given"))
        raise_problems(problems)
        return self


class IPNAT(SpecModel):
    """A 1:1 NAT mapping of an endpoint address."""

    internalIP: IPAddress
    externalIP: IPAddress

    @pydantic.model_validator(mode="after")
    def _versions(self) -> IPNAT:
        if ipaddress.ip_address(self.internalIP).version != ipaddress.ip_address(self.externalIP).version:
            raise_problems([(("externalIP",), "mismatched IP versions")])
        return self


def _gateway(version: int) -> Any:
    def check(value: Any) -> str:
        net = parse_cidr_or_ip(value, "gateway address")
        if net.version != version:
            raise ValueError(f"invalid IPv{version} gateway address {value!r}")
        return str(value)

    return Annotated[str, PlainValidator(check)]


class WorkloadEndpointSpec(SpecModel):
    """Spec of a WorkloadEndpoint."""

    orchestrator: str | None = None
    workload: str | None = None
    node: Name | None = None
    containerID: Annotated[str, PlainValidator(_container_id)] | None = None
    pod: str | None = None
    endpoint: str | None = None
    serviceAccountName: str | None = None
    ipNetworks: list[CIDR] | None = None
    ipNATs: list[IPNAT] | None = None
    ipv4Gateway: _gateway(4) | None = None  # type: ignore[valid-type]
    ipv6Gateway: _gateway(6) | None = None  # type: ignore[valid-type]
    profiles: list[Name] | None = None
    interfaceName: InterfaceName | None = None
    mac: MAC | None = None
    ports: list[WorkloadEndpointPort] | None = None
    allowSpoofedSourcePrefixes: list[CIDR] | None = None

    @pydantic.model_validator(mode="after")
    def _checks(self) -> WorkloadEndpointSpec:
        problems: list[tuple[Loc, str]] = []
        networks = []
        for i, text in enumerate(self.ipNetworks or []):
            net = parse_cidr_or_ip(text)
            networks.append(net)
            if net.num_addresses != 1:
                problems.append((("ipNetworks", i), f"IP network {text} contains multiple addresses "
                                                    "(only /32 and /128 are supported)"))
        for i, nat in enumerate(self.ipNATs or []):
            internal = ipaddress.ip_address(nat.internalIP)
            if not any(internal in net for net in networks):
                problems.append((("ipNATs", i, "internalIP"), "NAT is not in the endpoint networks"))
        names = [p.name for p in self.ports or [] if p.name]
        for i, port in enumerate(self.ports or []):
            if port.name and names.count(port.name) > 1:
                problems.append((("ports", i, "name"), f"port name {port.name!r} is used more than once"))
        raise_problems(problems)
        return self


@register
class WorkloadEndpoint(KindBase):
    """The interface connecting one container or VM to its host."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="WorkloadEndpoint", plural="workloadendpoints", namespaced=True,
                                        aliases=("workloadendpoint", "workloadendpoints", "wep", "weps"))
    kind: Literal["WorkloadEndpoint"] = "WorkloadEndpoint"
    spec: WorkloadEndpointSpec
