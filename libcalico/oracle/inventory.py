"""What selectors can match, and what IP sets Felix builds from them.

Every labelled thing with addresses is an *entity*: workload endpoints (their ``ipNetworks``),
host endpoints (their ``expectedIPs``), namespaced NetworkSets and GlobalNetworkSets (their
``nets``). An entity's labels are its own labels over its profiles' ``labelsToApply`` (first
profile wins), as Felix's label inheritance index evaluates them; workload endpoints also carry
the labels Calico adds (namespace, orchestrator, service account) and lose any ``pcns.``/``pcsa.``
labels of their own; NetworkSets get the namespace label and inherit from ``kns.<namespace>``.

A rule's selector matches a packet address when the address is in the IP set of that selector:
the union of the addresses of every entity the selector matches. A named port matches when
(address, protocol, port) is in the named-port set: the named ports of the endpoints the rule's
positive selector (or ``all()``) matches.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from libcalico.oracle.flow import IPNetwork
from libcalico.oracle.scoping import (
    LABEL_NAMESPACE,
    LABEL_ORCHESTRATOR,
    LABEL_SERVICE_ACCOUNT,
    NAMESPACE_PREFIX,
    SERVICE_ACCOUNT_PREFIX,
)
from libcalico.resources.endpoint import (
    EndpointPort,
    HostEndpoint,
    WorkloadEndpoint,
    WorkloadEndpointPort,
)
from libcalico.resources.fields import protocol_number
from libcalico.resources.networkset import GlobalNetworkSet, NetworkSet
from libcalico.resources.profile import Profile
from libcalico.selector import Selector

NAMESPACE_PROFILE_PREFIX = "kns."


class Tri(enum.Enum):
    """The result of a match: yes, no, or "depends on something the flow does not say"."""

    NO = 0
    YES = 1
    MAYBE = 2


@dataclass(frozen=True)
class NamedPort:
    """A named port of an endpoint: its name, IP protocol number and port number."""

    name: str
    protocol: int
    port: int


@dataclass
class Entity:
    """Something selectors match: its kind, display name, effective labels, addresses and named ports."""

    kind: str
    name: str
    labels: dict[str, str]
    nets: tuple[IPNetwork, ...]
    ports: tuple[NamedPort, ...] = ()
    profiles: tuple[str, ...] = ()
    resource: object = None


def coverage(address: IPNetwork, nets: Iterable[IPNetwork]) -> Tri:
    """Whether every address of ``address`` is in the union of ``nets`` (YES), none is (NO), or some are."""
    inside: list[IPNetwork] = []
    for net in nets:
        if net.version != address.version:
            continue
        if address.subnet_of(net):  # type: ignore[arg-type]
            return Tri.YES
        if net.subnet_of(address):  # type: ignore[arg-type]
            inside.append(net)
    if not inside:
        return Tri.NO
    collapsed = list(ipaddress.collapse_addresses(inside))  # type: ignore[type-var]
    return Tri.YES if collapsed == [address] else Tri.MAYBE


def _inherited(own: dict[str, str], profiles: Iterable[str], profile_labels: dict[str, dict[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for name in profiles:
        for key, value in profile_labels.get(name, {}).items():
            merged.setdefault(key, value)
    merged.update(own)
    return merged


def _networks(texts: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in texts)


def workload_labels(wep: WorkloadEndpoint) -> dict[str, str]:
    """A workload endpoint's own labels as Felix sees them (before profile inheritance)."""
    labels = {k: v for k, v in (wep.metadata.labels or {}).items()
              if not k.startswith((NAMESPACE_PREFIX, SERVICE_ACCOUNT_PREFIX))}
    labels[LABEL_NAMESPACE] = wep.metadata.namespace or "default"
    labels[LABEL_ORCHESTRATOR] = wep.spec.orchestrator or ""
    if wep.spec.serviceAccountName:
        labels[LABEL_SERVICE_ACCOUNT] = wep.spec.serviceAccountName
    return labels


def _named_ports(ports: Iterable[WorkloadEndpointPort | EndpointPort]) -> tuple[NamedPort, ...]:
    # Felix ignores unnamed (host-port only) workload ports.
    return tuple(NamedPort(p.name, protocol_number(p.protocol) or 6, p.port) for p in ports if p.name)


@dataclass
class Inventory:
    """Every entity selectors can match, with cached IP-set memberships."""

    entities: list[Entity]
    _nets_cache: dict[str, tuple[IPNetwork, ...]] = field(default_factory=dict)
    _named_cache: dict[tuple[str, int, str], frozenset[tuple[IPNetwork, int]]] = field(default_factory=dict)

    @classmethod
    def build(cls, weps: Iterable[WorkloadEndpoint], heps: Iterable[HostEndpoint],
              netsets: Iterable[NetworkSet], global_netsets: Iterable[GlobalNetworkSet],
              profiles: dict[str, Profile]) -> Inventory:
        """Index the datastore's labelled, addressed things."""
        plabels = {name: dict(p.spec.labelsToApply or {}) for name, p in profiles.items()}
        entities: list[Entity] = []
        for wep in weps:
            if not wep.spec.ipNetworks:
                continue  # Felix never sees an endpoint without addresses.
            prof = tuple(wep.spec.profiles or ())
            ns = wep.metadata.namespace or "default"
            entities.append(Entity("WorkloadEndpoint", f"{ns}/{wep.metadata.name}",
                                   _inherited(workload_labels(wep), prof, plabels),
                                   tuple(ipaddress.ip_network(ipaddress.ip_interface(n).ip) for n in wep.spec.ipNetworks),
                                   _named_ports(wep.spec.ports or ()), prof, wep))
        for hep in heps:
            prof = tuple(hep.spec.profiles or ())
            entities.append(Entity("HostEndpoint", hep.metadata.name,
                                   _inherited(dict(hep.metadata.labels or {}), prof, plabels),
                                   _networks(hep.spec.expectedIPs or ()), _named_ports(hep.spec.ports or ()),
                                   prof, hep))
        for ns_set in netsets:
            ns = ns_set.metadata.namespace or "default"
            own = dict(ns_set.metadata.labels or {})
            own[LABEL_NAMESPACE] = ns
            prof = (NAMESPACE_PROFILE_PREFIX + ns,)
            entities.append(Entity("NetworkSet", f"{ns}/{ns_set.metadata.name}", _inherited(own, prof, plabels),
                                   _networks(ns_set.spec.nets or ()), (), prof, ns_set))
        for g_set in global_netsets:
            entities.append(Entity("GlobalNetworkSet", g_set.metadata.name, dict(g_set.metadata.labels or {}),
                                   _networks(g_set.spec.nets or ()), (), (), g_set))
        return cls(entities)

    def members(self, selector: Selector) -> list[Entity]:
        """The entities a selector matches."""
        return [e for e in self.entities if selector.evaluate(e.labels)]

    def ip_set(self, selector: Selector) -> tuple[IPNetwork, ...]:
        """The addresses in the IP set Felix builds for a selector."""
        key = str(selector)
        nets = self._nets_cache.get(key)
        if nets is None:
            nets = tuple(n for e in self.members(selector) for n in e.nets)
            self._nets_cache[key] = nets
        return nets

    def in_ip_set(self, address: IPNetwork, selector: Selector) -> Tri:
        """Whether an address (or every address of a CIDR) is in a selector's IP set."""
        return coverage(address, self.ip_set(selector))

    def named_port_set(self, selector: Selector, protocol: int, name: str) -> frozenset[tuple[IPNetwork, int]]:
        """(address, port) members of the named-port IP set for a selector, protocol and port name."""
        key = (str(selector), protocol, name)
        members = self._named_cache.get(key)
        if members is None:
            members = frozenset((net, port.port) for e in self.members(selector) for port in e.ports
                                if port.name == name and port.protocol == protocol for net in e.nets)
            self._named_cache[key] = members
        return members

    def in_named_port_set(self, address: IPNetwork, port: int | None, selector: Selector, protocol: int,
                          name: str) -> Tri:
        """Whether (address, port) is in a named-port set; MAYBE when the port is unknown or the address a range."""
        members = self.named_port_set(selector, protocol, name)
        hits = [net for net, _ in members if net.version == address.version and net.subnet_of(address)]  # type: ignore[arg-type]
        if not hits:
            return Tri.NO
        if port is None:
            return Tri.MAYBE
        matching = [net for net, p in members if p == port and net.version == address.version
                    and net.subnet_of(address)]  # type: ignore[arg-type]
        if not matching:
            return Tri.NO
        return Tri.YES if address.num_addresses == 1 else Tri.MAYBE
