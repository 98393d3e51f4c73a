"""Endpoint records: what the graph needs from WorkloadEndpoints, HostEndpoints and network sets.

Labels are made as Calico's update processors make them: a workload's own
``pcns.*``/``pcsa.*`` labels are dropped (an endpoint cannot pretend to be in
another namespace), ``projectcalico.org/namespace`` is set from its namespace,
``projectcalico.org/serviceaccount`` from ``serviceAccountName``; a NetworkSet
gets its namespace label and inherits from the ``kns.<namespace>`` profile.
A WorkloadEndpoint without addresses is treated as absent, as Calico does.
WorkloadEndpoints, the bulk of a cluster, are read from the stored map
(:func:`decode_workload`) rather than re-validated as models: the syncer has
validated them already.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from libcalico.resources import GlobalNetworkSet, HostEndpoint, NetworkSet
from libcalico.resources.endpoint import EndpointPort
from libcalico.resources.fields import protocol_number
from services.felix.calc.ipsets import NamedPort
from services.felix.calc.rules import NAMED_PORT_PROTOCOLS
from services.felix.calc.scoping import (
    NAMESPACE_LABEL,
    NAMESPACE_PREFIX,
    ORCHESTRATOR_LABEL,
    SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_PREFIX,
)
from services.felix.messages import HostEndpoint as HostEndpointMsg
from services.felix.messages import WorkloadEndpoint as WorkloadEndpointMsg
from services.felix.messages import WorkloadEndpointID

NAMESPACE_PROFILE_PREFIX = "kns."


@dataclass(frozen=True, slots=True)
class EndpointData:
    """One labelled item: its own labels, parent profiles, IP-set contributions and, when local, its message."""

    key: str
    labels: dict[str, str]
    parents: tuple[str, ...]
    nets: tuple[str, ...]
    ports: tuple[NamedPort, ...] = ()
    local: bool = False
    # For local endpoints: the message without tiers (filled in at flush) and the workload id.
    workload: WorkloadEndpointMsg | None = None
    workload_id: WorkloadEndpointID | None = None
    host: HostEndpointMsg | None = None
    host_id: str = ""


def _host_net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text, strict=False)


def _net_text(text: str) -> tuple[int, str]:
    """IP version and canonical CIDR text of an address or net (``10.0.0.1`` → ``10.0.0.1/32``).

    A canonical IPv4 host address (nearly every endpoint's) skips ``ipaddress``.
    """
    addr, slash, length = text.partition("/")
    if length in ("", "32") and "." in addr:
        try:
            if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, addr)) == addr:
                return 4, addr + "/32"
        except OSError:
            pass
    net = _host_net(text)
    return net.version, str(net)


def _named_ports(ports: list[EndpointPort] | None) -> tuple[NamedPort, ...]:
    out = []
    for p in ports or ():
        if p.name:
            number = protocol_number(p.protocol) or 6
            out.append(NamedPort(p.name, NAMED_PORT_PROTOCOLS.get(number, "tcp"), p.port))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Workload:
    """The fields of a WorkloadEndpoint the graph uses, read straight from the stored map."""

    name: str
    namespace: str
    labels: dict[str, str]
    node: str
    orchestrator: str
    workload: str
    endpoint: str
    service_account: str
    nets: tuple[tuple[int, str], ...]  # (IP version, canonical CIDR)
    profiles: tuple[str, ...]
    interface: str
    mac: str | None
    ports: tuple[NamedPort, ...]
    spoof: tuple[str, ...]


def _strings(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return tuple(value)


def _text(spec: dict[str, object], field: str) -> str:
    value = spec.get(field) or ""
    if not isinstance(value, str):
        raise ValueError(f"spec.{field} must be a string")
    return value


def decode_workload(value: dict[str, object]) -> Workload:
    """Read a stored WorkloadEndpoint map (validated by the syncer); raise ValueError when it is malformed.

    The hot path of a cold start: this skips re-validating the whole model, and
    checks only what the graph reads.
    """
    meta, spec = value.get("metadata"), value.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        raise ValueError("a WorkloadEndpoint needs metadata and spec maps")
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("metadata.labels must map strings to strings")
    ports = []
    for p in spec.get("ports") or ():
        if not isinstance(p, dict) or not isinstance(p.get("port"), int):
            raise ValueError("spec.ports entries need a port number")
        if p.get("name"):
            number = protocol_number(p.get("protocol") or "TCP") or 6
            ports.append(NamedPort(str(p["name"]), NAMED_PORT_PROTOCOLS.get(number, "tcp"), p["port"]))
    return Workload(
        name=str(meta["name"]),
        namespace=str(meta.get("namespace") or "default"),
        labels=labels,
        node=_text(spec, "node"),
        orchestrator=_text(spec, "orchestrator"),
        workload=_text(spec, "pod") or _text(spec, "workload") or str(meta["name"]),
        endpoint=_text(spec, "endpoint") or "eth0",
        service_account=_text(spec, "serviceAccountName"),
        nets=tuple(_net_text(n) for n in _strings(spec.get("ipNetworks"), "spec.ipNetworks")),
        profiles=_strings(spec.get("profiles"), "spec.profiles"),
        interface=_text(spec, "interfaceName"),
        mac=_text(spec, "mac") or None,
        ports=tuple(ports),
        spoof=tuple(str(_host_net(n)) for n in _strings(spec.get("allowSpoofedSourcePrefixes"),
                                                          "spec.allowSpoofedSourcePrefixes")),
    )


def workload_endpoint(key: str, wep: Workload, hostname: str) -> EndpointData | None:
    """The record of a WorkloadEndpoint (None when it has no addresses yet)."""
    if not wep.nets:
        return None
    labels = {k: v for k, v in wep.labels.items() if not k.startswith((NAMESPACE_PREFIX, SERVICE_ACCOUNT_PREFIX))}
    labels[NAMESPACE_LABEL] = wep.namespace
    if wep.orchestrator and ORCHESTRATOR_LABEL not in labels:
        labels[ORCHESTRATOR_LABEL] = wep.orchestrator
    if wep.service_account:
        labels[SERVICE_ACCOUNT_LABEL] = wep.service_account
    local = wep.node == hostname
    msg = wid = None
    if local:
        wid = WorkloadEndpointID(wep.orchestrator or "k8s", f"{wep.namespace}/{wep.workload}", wep.endpoint)
        msg = WorkloadEndpointMsg(
            name=wep.interface,
            mac=wep.mac,
            ipv4_nets=tuple(text for version, text in wep.nets if version == 4),
            ipv6_nets=tuple(text for version, text in wep.nets if version == 6),
            profile_ids=wep.profiles,
            tiers=(),
            key=key,
            allow_spoofed_source_prefixes=wep.spoof,
        )
    return EndpointData(key, labels, wep.profiles, tuple(text for _, text in wep.nets), wep.ports, local, msg, wid)


def host_endpoint(key: str, hep: HostEndpoint, hostname: str) -> EndpointData:
    """The record of a HostEndpoint (its expected IPs are its IP-set members)."""
    spec = hep.spec
    nets = [_host_net(ip) for ip in spec.expectedIPs or ()]
    profiles = tuple(spec.profiles or ())
    local = spec.node == hostname
    msg = None
    if local:
        msg = HostEndpointMsg(
            name=spec.interfaceName or "",
            expected_ipv4_addrs=tuple(str(n.network_address) for n in nets if n.version == 4),
            expected_ipv6_addrs=tuple(str(n.network_address) for n in nets if n.version == 6),
            profile_ids=profiles,
            tiers=(),
            key=key,
        )
    return EndpointData(key, dict(hep.metadata.labels or {}), profiles, tuple(str(n) for n in nets),
                        _named_ports(spec.ports), local, host=msg, host_id=hep.metadata.name)


def network_set(key: str, netset: NetworkSet | GlobalNetworkSet) -> EndpointData:
    """The record of a (Global)NetworkSet: its nets, labels and (namespaced) the namespace's profile."""
    labels = dict(netset.metadata.labels or {})
    parents: tuple[str, ...] = ()
    if isinstance(netset, NetworkSet):
        namespace = netset.metadata.namespace or "default"
        labels[NAMESPACE_LABEL] = namespace
        parents = (NAMESPACE_PROFILE_PREFIX + namespace,)
    nets = tuple(str(_host_net(n)) for n in netset.spec.nets or ())
    return EndpointData(key, labels, parents, nets)
