"""Endpoint records: what the graph needs from WorkloadEndpoints, HostEndpoints and network sets.

Labels are made as Calico's update processors make them: a workload's own
``pcns.*``/``pcsa.*`` labels are dropped (an endpoint cannot pretend to be in
another namespace), ``projectcalico.org/namespace`` is set from its namespace,
``projectcalico.org/serviceaccount`` from ``serviceAccountName``; a NetworkSet
gets its namespace label and inherits from the ``kns.<namespace>`` profile.
A WorkloadEndpoint without addresses is treated as absent, as Calico does.
WorkloadEndpoints, the bulk of a cluster, are read from the stored map
(:func:`workload_record`) rather than re-validated as models: the syncer has
validated them already.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from functools import partial
from operator import methodcaller
from typing import TYPE_CHECKING, Any, NamedTuple

from services.felix.calc.ipsets import NamedPort
from services.felix.calc.rules import NAMED_PORT_PROTOCOLS, protocol_number
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

if TYPE_CHECKING:
    from libcalico.resources import GlobalNetworkSet, HostEndpoint, NetworkSet
    from libcalico.resources.endpoint import EndpointPort

NAMESPACE_PROFILE_PREFIX = "kns."


class EndpointData(NamedTuple):
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


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_V4_HOST = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}(/32)?", re.ASCII)


def _net_text(text: str) -> str:
    """Canonical CIDR text of an address or net (``10.0.0.1`` → ``10.0.0.1/32``).

    A canonical IPv4 host address (nearly every endpoint's) skips ``ipaddress``.
    """
    m = _V4_HOST.fullmatch(text)
    if m is not None:
        return text if m.group(1) else text + "/32"
    addr, _, length = text.partition("/")
    if length in ("", "32") and "." in addr:
        try:
            if socket.inet_ntop(socket.AF_INET, socket.inet_pton(socket.AF_INET, addr)) == addr:
                return addr + "/32"
        except OSError:
            pass
    return str(_host_net(text))


def _named_ports(ports: list[EndpointPort] | None) -> tuple[NamedPort, ...]:
    out = []
    for p in ports or ():
        if p.name:
            number = protocol_number(p.protocol) or 6
            out.append(NamedPort(p.name, NAMED_PORT_PROTOCOLS.get(number, "tcp"), p.port))
    return tuple(out)


def _strings(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return tuple(value)


_STR_OR_NONE = frozenset({str, type(None)})


def _text(spec: dict[str, object], field: str) -> str:
    value = spec.get(field) or ""
    if not isinstance(value, str):
        raise ValueError(f"spec.{field} must be a string")
    return value


# The string fields of a WorkloadEndpoint spec that the graph reads, in the order they are checked.
_TEXT_FIELDS = ("node", "orchestrator", "pod", "workload", "endpoint", "serviceAccountName", "interfaceName", "mac")
_SCOPED = methodcaller("startswith", (NAMESPACE_PREFIX, SERVICE_ACCOUNT_PREFIX))
_V4_HOST_32 = re.compile(rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}/32", re.ASCII).fullmatch


def _checked_texts(spec: dict[str, object]) -> tuple[str, ...]:
    """The string fields (``""`` when unset), or ValueError naming the first that is not a string."""
    node, orchestrator = _text(spec, "node"), _text(spec, "orchestrator")
    pod = _text(spec, "pod")
    workload = "" if pod else _text(spec, "workload")  # only read when there is no pod name
    return (node, orchestrator, pod, workload, _text(spec, "endpoint"), _text(spec, "serviceAccountName"),
            _text(spec, "interfaceName"), _text(spec, "mac"))


class _Interned:
    """Small caches of the immutable parts endpoints share (profile lists, named ports, label key sets),
    bounded in size."""

    LIMIT = 1 << 14

    def __init__(self) -> None:
        self.profiles: dict[tuple[str, ...], tuple[str, ...]] = {}
        self.ports: dict[tuple[object, ...], NamedPort] = {}
        self.single: dict[tuple[object, ...], tuple[NamedPort, ...]] = {}  # a one-entry spec.ports → its ports
        self.scoped: dict[tuple[str, ...], bool] = {}  # label keys → whether one is a pcns./pcsa. label

    def has_scoped(self, labels: dict[str, str]) -> bool:
        """Whether a label map has a ``pcns.*`` or ``pcsa.*`` key (label maps share a few key lists)."""
        keys = tuple(labels)
        found = self.scoped.get(keys)
        if found is None:
            if len(self.scoped) >= self.LIMIT:
                self.scoped.clear()
            found = self.scoped[keys] = any(map(_SCOPED, keys))
        return found

    def profile_list(self, value: object) -> tuple[str, ...]:
        """``spec.profiles`` as a tuple of strings (one shared tuple per distinct list)."""
        if value is None:
            return ()
        if value.__class__ is list:
            try:
                found = self.profiles.get(tuple(value))
            except TypeError:  # an unhashable entry: not a list of strings
                found = None
            if found is not None:
                return found
        out = _strings(value, "spec.profiles")
        if len(self.profiles) >= self.LIMIT:
            self.profiles.clear()
        return self.profiles.setdefault(out, out)

    def port_list(self, raw: object) -> tuple[NamedPort, ...]:
        """The named ports of ``spec.ports``; ValueError when an entry has no port number."""
        if raw.__class__ is list and len(raw) == 1 and raw[0].__class__ is dict:
            # The common form, one plain entry: one lookup (0.2 µs against 0.3 µs).
            entry = raw[0]
            name, protocol, port = entry.get("name"), entry.get("protocol"), entry.get("port")
            if name.__class__ is str and port.__class__ is int and (protocol is None or protocol.__class__ is str):
                found = self.single.get((name, protocol, port))
                if found is None:
                    found = self.single[(name, protocol, port)] = self._port_list(raw)
                    if len(self.single) > self.LIMIT:
                        self.single.clear()
                return found
        return self._port_list(raw)

    def _port_list(self, raw: object) -> tuple[NamedPort, ...]:
        out = []
        cache = self.ports
        for p in raw:  # type: ignore[attr-defined]
            if not isinstance(p, dict) or not isinstance(p.get("port"), int):
                raise ValueError("spec.ports entries need a port number")
            name = p.get("name")
            if name:
                protocol = p.get("protocol")
                # Only plain values make a key (True == 1 would make "True" and "1" one port).
                key = (name, protocol, p["port"]) if name.__class__ is str and p["port"].__class__ is int \
                    and (protocol is None or protocol.__class__ is str) else None
                found = None if key is None else cache.get(key)
                if found is None:
                    number = protocol_number(protocol or "TCP") or 6
                    found = NamedPort(str(name), NAMED_PORT_PROTOCOLS.get(number, "tcp"), p["port"])
                    if key is not None:
                        if len(cache) >= self.LIMIT:
                            cache.clear()
                        cache[key] = found
                out.append(found)
        return tuple(out)


_INTERNED = _Interned()
_PROFILE_LISTS = _INTERNED.profiles
_SCOPED_KEYS = _INTERNED.scoped
_NO_LABELS: dict[str, str] = {}  # read only
# EndpointData(...) without its keyword-default handling (all ten fields given, in order): the bulk load's path.
_new_data = partial(tuple.__new__, EndpointData)


def workload_record(key: str, value: dict[str, object], hostname: str) -> EndpointData | None:
    """The record of a stored WorkloadEndpoint map (None when it has no addresses yet); ValueError
    (or KeyError, TypeError) when it is malformed.

    The hot path of a cold start: it reads the map the syncer validated rather
    than re-validating the whole model, and checks only what the graph reads
    (the common shapes with a few C-level checks, anything else field by field).
    """
    meta, spec = value.get("metadata"), value.get("spec")
    if meta.__class__ is not dict or spec.__class__ is not dict:
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            raise ValueError("a WorkloadEndpoint needs metadata and spec maps")
    labels = meta.get("labels") or _NO_LABELS
    if labels.__class__ is dict:
        try:
            "".join(labels.values())  # every value a string (~50 ns less than a set of their types)
        except TypeError:
            raise ValueError("metadata.labels must map strings to strings") from None
    elif not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("metadata.labels must map strings to strings")
    raw_ports = spec.get("ports")
    ports = _INTERNED.port_list(raw_ports) if raw_ports else ()
    name = meta["name"]
    namespace = meta.get("namespace") or "default"
    if namespace.__class__ is not str:
        namespace = str(namespace)
    # The string fields, each read by a call of its own and checked by a chain of ``is`` (~0.4 µs an endpoint
    # less than a map and a set of types).
    node, orchestrator, pod, workload = spec.get("node"), spec.get("orchestrator"), spec.get("pod"), \
        spec.get("workload")
    endpoint, service_account, interface, mac = spec.get("endpoint"), spec.get("serviceAccountName"), \
        spec.get("interfaceName"), spec.get("mac")
    if not ((node.__class__ is str or node is None) and (orchestrator.__class__ is str or orchestrator is None)
            and (pod.__class__ is str or pod is None) and (workload.__class__ is str or workload is None)
            and (endpoint.__class__ is str or endpoint is None)
            and (service_account.__class__ is str or service_account is None)
            and (interface.__class__ is str or interface is None) and (mac.__class__ is str or mac is None)):
        node, orchestrator, pod, workload, endpoint, service_account, interface, mac = \
            _checked_texts(spec)
    raw_nets = spec.get("ipNetworks")
    if raw_nets.__class__ is list and len(raw_nets) == 1 and raw_nets[0].__class__ is str \
            and _V4_HOST_32(raw_nets[0]):
        nets: tuple[str, ...] = (raw_nets[0],)
    else:
        nets = tuple(map(_net_text, _strings(raw_nets, "spec.ipNetworks")))
    raw_profiles = spec.get("profiles")
    try:  # the common case inline: a list of strings seen before (saves a call an endpoint)
        profiles = _PROFILE_LISTS[tuple(raw_profiles)] if raw_profiles.__class__ is list else None
    except (KeyError, TypeError):
        profiles = None
    if profiles is None:
        profiles = _INTERNED.profile_list(raw_profiles)
    spoof_raw = spec.get("allowSpoofedSourcePrefixes")
    spoof = tuple(str(_host_net(n)) for n in _strings(spoof_raw, "spec.allowSpoofedSourcePrefixes")) \
        if spoof_raw is not None else ()
    if not nets:
        return None
    return _record(key, hostname, labels, name, namespace, node, orchestrator, pod, workload, endpoint,
                   service_account, interface, mac, nets, profiles, ports, spoof)


def workload_from_fields(key: str, fields: tuple[Any, ...], hostname: str) -> EndpointData | None:
    """What :func:`workload_record` gives for a stored WorkloadEndpoint map, from the fields the syncer's fast
    path read while vouching for it (``libcalico.syncer.fastpath.workload_endpoint_fields``): nothing is
    checked twice, and the map is not walked again (~1 µs an endpoint less than reading it)."""
    (name, namespace, labels, node, orchestrator, pod, workload, endpoint, service_account, interface, mac,
     raw_nets, plain_v4, raw_profiles, raw_ports) = fields
    if not raw_nets:
        return None
    if plain_v4:  # canonical IPv4 addresses, with or without "/32"
        if len(raw_nets) == 1:
            net = raw_nets[0]
            nets: tuple[str, ...] = (net,) if net.endswith("/32") else (net + "/32",)
        else:
            nets = tuple(n if n.endswith("/32") else n + "/32" for n in raw_nets)
    else:
        nets = tuple(map(_net_text, raw_nets))
    if raw_profiles:
        profiles = _PROFILE_LISTS.get(tuple(raw_profiles)) or _INTERNED.profile_list(raw_profiles)
    else:
        profiles = ()
    ports = _INTERNED.port_list(raw_ports) if raw_ports else ()
    if node != hostname:  # the common case without the general call (one call fewer an endpoint)
        return _new_data((key, _own_labels(labels or _NO_LABELS, namespace or "default", orchestrator,
                                           service_account), profiles, nets, ports, False, None, None, None, ""))
    return _record(key, hostname, labels or _NO_LABELS, name, namespace or "default", node, orchestrator, pod,
                   workload, endpoint, service_account, interface, mac, nets, profiles, ports, ())


def _own_labels(labels: dict[str, str], namespace: str, orchestrator: str | None,
                service_account: str | None) -> dict[str, str]:
    """A WorkloadEndpoint's own labels: its labels less ``pcns.*``/``pcsa.*``, with those it is given."""
    if labels:
        scoped = _SCOPED_KEYS.get(tuple(labels))
        if scoped is None:
            scoped = _INTERNED.has_scoped(labels)
        if scoped:  # an endpoint cannot claim namespace or service-account labels
            labels = {k: v for k, v in labels.items() if not _SCOPED(k)}
    if service_account and orchestrator and ORCHESTRATOR_LABEL not in labels:
        # The usual labels in one step (saves two dict insertions an endpoint).
        return {**labels, NAMESPACE_LABEL: namespace, ORCHESTRATOR_LABEL: orchestrator,
                SERVICE_ACCOUNT_LABEL: service_account}
    own = {**labels, NAMESPACE_LABEL: namespace}
    if orchestrator and ORCHESTRATOR_LABEL not in own:
        own[ORCHESTRATOR_LABEL] = orchestrator
    if service_account:
        own[SERVICE_ACCOUNT_LABEL] = service_account
    return own


def _record(key: str, hostname: str, labels: dict[str, str], name: object, namespace: str, node: str | None,
            orchestrator: str | None, pod: str | None, workload: str | None, endpoint: str | None,
            service_account: str | None, interface: str | None, mac: str | None, nets: tuple[str, ...],
            profiles: tuple[str, ...], ports: tuple[NamedPort, ...], spoof: tuple[str, ...]) -> EndpointData:
    """A WorkloadEndpoint's record from its checked fields (texts: a string, or empty or None)."""
    own = _own_labels(labels, namespace, orchestrator, service_account)
    if node != hostname:
        return _new_data((key, own, profiles, nets, ports, False, None, None, None, ""))
    name = str(name)
    wid = WorkloadEndpointID(orchestrator or "k8s", f"{namespace}/{pod or workload or name}", endpoint or "eth0")
    msg = WorkloadEndpointMsg(
        name=interface or "",
        mac=mac or None,
        ipv4_nets=tuple(n for n in nets if ":" not in n),
        ipv6_nets=tuple(n for n in nets if ":" in n),
        profile_ids=profiles,
        tiers=(),
        key=key,
        allow_spoofed_source_prefixes=spoof,
    )
    return EndpointData(key, own, profiles, nets, ports, True, msg, wid)


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
    """The record of a validated (Global)NetworkSet model."""
    meta = netset.metadata
    return _network_set(key, netset.kind, meta.labels, meta.namespace, netset.spec.nets)


def network_set_from_stored(key: str, value: dict[str, Any]) -> EndpointData:
    """The record of a stored (Global)NetworkSet map that is known to be valid (the fast path)."""
    meta, spec = value["metadata"], value.get("spec") or {}
    return _network_set(key, value["kind"], meta.get("labels"), meta.get("namespace"), spec.get("nets"))


def _network_set(key: str, kind: str, own: Mapping[str, str] | None, namespace: str | None,
                 nets: Sequence[str] | None) -> EndpointData:
    """A (Global)NetworkSet's nets, labels and (namespaced) the namespace's profile."""
    labels = dict(own or {})
    parents: tuple[str, ...] = ()
    if kind == "NetworkSet":
        namespace = namespace or "default"
        labels[NAMESPACE_LABEL] = namespace
        parents = (NAMESPACE_PROFILE_PREFIX + namespace,)
    return EndpointData(key, labels, parents, tuple(str(_host_net(n)) for n in nets or ()))
