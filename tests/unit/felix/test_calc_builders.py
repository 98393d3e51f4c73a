"""Builders for the calculation graph's tests: syncer updates of each kind, and a checking dataplane model.

No tests here. :class:`DataplaneModel` applies the graph's messages the way a
dataplane would and fails on any ordering violation: an endpoint naming a
policy, profile or tier policy not sent before it, a policy using an IP set
not sent before it, a removal of something still referenced, a delta that
adds a present member or removes an absent one.
"""

from __future__ import annotations

import itertools
from typing import Any

from libcalico.datastore.keys import IPAM_ROOT, RESOURCE_ROOT
from libcalico.syncer import SyncStatus, Update, UpdateType
from services.felix import messages as m
from services.felix.calc import CalcGraph

HOST = "node1"
API = "projectcalico.org/v3"
_revisions = itertools.count(1)


def rkey(plural: str, name: str, namespace: str | None = None) -> str:
    """A resource key."""
    return f"{RESOURCE_ROOT}{plural}/{namespace}/{name}" if namespace else f"{RESOURCE_ROOT}{plural}/{name}"


def put(key: str, value: dict[str, Any], new: bool = True) -> Update:
    """An update that sets ``key``."""
    return Update(key, value, next(_revisions), UpdateType.NEW if new else UpdateType.UPDATED)


def delete(key: str) -> Update:
    """An update that deletes ``key``."""
    return Update(key, None, next(_revisions), UpdateType.DELETED)


def _meta(name: str, namespace: str | None = None, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    return meta


def wep(name: str, ns: str = "default", node: str = HOST, ips: tuple[str, ...] = ("10.0.0.1/32",),
        labels: dict[str, str] | None = None, profiles: tuple[str, ...] | None = None,
        ports: list[dict[str, Any]] | None = None, sa: str | None = None, iface: str | None = None,
        ) -> Update:
    """A WorkloadEndpoint update (Kubernetes-style: profiles kns.<ns> and, with ``sa``, ksa.<ns>.<sa>)."""
    if profiles is None:
        profiles = (f"kns.{ns}",) + ((f"ksa.{ns}.{sa}",) if sa else ())
    spec: dict[str, Any] = {
        "orchestrator": "k8s", "node": node, "pod": name, "endpoint": "eth0",
        "interfaceName": iface or ("cali" + name)[:15], "ipNetworks": list(ips), "profiles": list(profiles),
    }
    if ports:
        spec["ports"] = ports
    if sa:
        spec["serviceAccountName"] = sa
    value = {"apiVersion": API, "kind": "WorkloadEndpoint", "metadata": _meta(name, ns, labels), "spec": spec}
    return put(wep_key(name, ns), value)


def wep_key(name: str, ns: str = "default") -> str:
    """The key of a WorkloadEndpoint built by :func:`wep`."""
    return rkey("workloadendpoints", name, ns)


def hep(name: str, node: str = HOST, iface: str | None = "eth0", ips: tuple[str, ...] = (),
        labels: dict[str, str] | None = None, profiles: tuple[str, ...] = ()) -> Update:
    """A HostEndpoint update."""
    spec: dict[str, Any] = {"node": node}
    if iface:
        spec["interfaceName"] = iface
    if ips:
        spec["expectedIPs"] = list(ips)
    if profiles:
        spec["profiles"] = list(profiles)
    value = {"apiVersion": API, "kind": "HostEndpoint", "metadata": _meta(name, None, labels), "spec": spec}
    return put(rkey("hostendpoints", name), value)


def netset(name: str, nets: tuple[str, ...], ns: str | None = None, labels: dict[str, str] | None = None) -> Update:
    """A NetworkSet (with ``ns``) or GlobalNetworkSet update."""
    kind, plural = ("NetworkSet", "networksets") if ns else ("GlobalNetworkSet", "globalnetworksets")
    value = {"apiVersion": API, "kind": kind, "metadata": _meta(name, ns, labels), "spec": {"nets": list(nets)}}
    return put(rkey(plural, name, ns), value)


def profile(name: str, labels: dict[str, str] | None = None, ingress: list[dict[str, Any]] | None = None,
            egress: list[dict[str, Any]] | None = None) -> Update:
    """A Profile update."""
    spec: dict[str, Any] = {}
    if labels is not None:
        spec["labelsToApply"] = labels
    if ingress is not None:
        spec["ingress"] = ingress
    if egress is not None:
        spec["egress"] = egress
    value = {"apiVersion": API, "kind": "Profile", "metadata": _meta(name), "spec": spec}
    return put(rkey("profiles", name), value)


def ns_profile(ns: str, labels: dict[str, str] | None = None) -> Update:
    """A Kubernetes namespace profile: allow all, labels as pcns.*."""
    applied = {"pcns.projectcalico.org/name": ns}
    applied.update({f"pcns.{k}": v for k, v in (labels or {}).items()})
    return profile(f"kns.{ns}", applied, [{"action": "Allow"}], [{"action": "Allow"}])


def policy(name: str, ns: str | None = None, selector: str | None = None, *,
           ingress: list[dict[str, Any]] | None = None, egress: list[dict[str, Any]] | None = None,
           types: list[str] | None = None, order: float | None = None, tier: str | None = None,
           staged: bool = False, **extra: Any) -> Update:
    """A NetworkPolicy (with ``ns``) or GlobalNetworkPolicy update; ``staged`` for the staged kinds."""
    spec: dict[str, Any] = dict(extra)
    for field, value in (("selector", selector), ("ingress", ingress), ("egress", egress), ("types", types),
                         ("order", order), ("tier", tier)):
        if value is not None:
            spec[field] = value
    kind = "NetworkPolicy" if ns else "GlobalNetworkPolicy"
    if staged:
        kind = "Staged" + kind
    plural = kind.lower().replace("policy", "policies")
    doc = {"apiVersion": API, "kind": kind, "metadata": _meta(name, ns), "spec": spec}
    return put(rkey(plural, name, ns), doc)


def tier(name: str, order: float | None, default_action: str | None = None) -> Update:
    """A Tier update."""
    spec: dict[str, Any] = {}
    if order is not None:
        spec["order"] = order
    if default_action:
        spec["defaultAction"] = default_action
    return put(rkey("tiers", name), {"apiVersion": API, "kind": "Tier", "metadata": _meta(name), "spec": spec})


def node(name: str, ip: str | None = None, vxlan: str | None = None, mac: str | None = None) -> Update:
    """A Node update (``ip`` with its prefix length, e.g. 192.168.1.1/24)."""
    spec: dict[str, Any] = {}
    if ip:
        spec["bgp"] = {"ipv4Address": ip}
    if vxlan:
        spec["ipv4VXLANTunnelAddr"] = vxlan
    if mac:
        spec["vxlanTunnelMACAddr"] = mac
    return put(rkey("nodes", name), {"apiVersion": API, "kind": "Node", "metadata": _meta(name), "spec": spec})


def pool(name: str, cidr: str, vxlan: str = "Never", nat: bool = False) -> Update:
    """An IPPool update."""
    spec = {"cidr": cidr, "vxlanMode": vxlan, "ipipMode": "Never", "natOutgoing": nat}
    return put(rkey("ippools", name), {"apiVersion": API, "kind": "IPPool", "metadata": _meta(name), "spec": spec})


def block_key(cidr: str) -> str:
    """The key of an IPAM block."""
    return f"{IPAM_ROOT}assignment/ipv4/block/{cidr.replace('/', '-')}"


def block(cidr: str, host: str | None, allocations: list[int | None] | None = None,
          attributes: list[dict[str, Any]] | None = None) -> Update:
    """An IPAM block update affine to ``host``."""
    value: dict[str, Any] = {"cidr": cidr, "affinity": f"host:{host}" if host else None,
                             "allocations": allocations or [], "unallocated": [], "attributes": attributes or []}
    return put(block_key(cidr), value)


def felixconfig(name: str, spec: dict[str, Any]) -> Update:
    """A FelixConfiguration update."""
    value = {"apiVersion": API, "kind": "FelixConfiguration", "metadata": _meta(name), "spec": spec}
    return put(rkey("felixconfigurations", name), value)


class GraphSink:
    """Syncer callbacks that flush ``graph`` after every call, collecting its messages in ``out``."""

    def __init__(self, graph: Any, out: list[m.Message]) -> None:
        self.graph = graph
        self.out = out

    def on_status(self, status: Any) -> None:
        self.graph.on_status(status)
        self.out.extend(self.graph.flush())

    def on_updates(self, updates: list[Update]) -> None:
        self.graph.on_updates(updates)
        self.out.extend(self.graph.flush())


class OrderingError(AssertionError):
    """The graph sent something before what it depends on, or removed something still in use."""


class DataplaneModel:
    """Applies messages as a dataplane would, checking every ordering guarantee."""

    def __init__(self) -> None:
        self.ipsets: dict[str, set[str]] = {}
        self.ipset_types: dict[str, m.IPSetType] = {}
        self.policies: dict[m.PolicyID, m.ActivePolicyUpdate] = {}
        self.profiles: dict[str, m.ActiveProfileUpdate] = {}
        self.workloads: dict[m.WorkloadEndpointID, m.WorkloadEndpoint] = {}
        self.hosts: dict[str, m.HostEndpoint] = {}
        self.routes: dict[str, m.RouteUpdate] = {}
        self.vteps: dict[str, m.VXLANTunnelEndpointUpdate] = {}
        self.pools: dict[str, m.IPAMPoolUpdate] = {}
        self.config: dict[str, object] | None = None
        self.in_sync = 0

    def _rule_sets(self, rules: tuple[m.Rule, ...]) -> set[str]:
        out: set[str] = set()
        for r in rules:
            for field in ("src_ip_set_ids", "not_src_ip_set_ids", "dst_ip_set_ids", "not_dst_ip_set_ids",
                          "src_named_port_ip_set_ids", "not_src_named_port_ip_set_ids",
                          "dst_named_port_ip_set_ids", "not_dst_named_port_ip_set_ids"):
                out.update(getattr(r, field))
        return out

    def _check_endpoint(self, tiers: tuple[m.TierInfo, ...], profiles: tuple[str, ...]) -> None:
        for t in tiers:
            for name in t.ingress_policies + t.egress_policies:
                if m.PolicyID(t.name, name) not in self.policies:
                    raise OrderingError(f"endpoint names policy {t.name}/{name} before it was sent")
        for p in profiles:
            if p not in self.profiles:
                raise OrderingError(f"endpoint names profile {p} before it was sent")

    def _referenced_sets(self) -> set[str]:
        out: set[str] = set()
        for pol in self.policies.values():
            out |= self._rule_sets(pol.inbound_rules + pol.outbound_rules)
        for prof in self.profiles.values():
            out |= self._rule_sets(prof.inbound_rules + prof.outbound_rules)
        return out

    def _endpoint_tiers(self) -> list[tuple[m.TierInfo, ...]]:
        out = [w.tiers for w in self.workloads.values()]
        for h in self.hosts.values():
            out += [h.tiers, h.untracked_tiers, h.pre_dnat_tiers, h.forward_tiers]
        return out

    def apply(self, messages: list[m.Message]) -> None:  # noqa: C901 - one branch per message kind
        """Apply one flush's messages in order."""
        for msg in messages:
            if isinstance(msg, m.IPSetUpdate):
                self.ipsets[msg.id] = set(msg.members)
                self.ipset_types[msg.id] = msg.type
            elif isinstance(msg, m.IPSetDeltaUpdate):
                if msg.id not in self.ipsets:
                    raise OrderingError(f"delta for unknown IP set {msg.id}")
                members = self.ipsets[msg.id]
                if msg.added & members or not msg.removed <= members or msg.added & msg.removed:
                    raise OrderingError(f"inconsistent delta for {msg.id}: {msg}")
                members |= msg.added
                members -= msg.removed
            elif isinstance(msg, m.IPSetRemove):
                if msg.id not in self.ipsets:
                    raise OrderingError(f"removal of unknown IP set {msg.id}")
                if msg.id in self._referenced_sets():
                    raise OrderingError(f"IP set {msg.id} removed while a rule still uses it")
                del self.ipsets[msg.id]
            elif isinstance(msg, (m.ActivePolicyUpdate, m.ActiveProfileUpdate)):
                missing = self._rule_sets(msg.inbound_rules + msg.outbound_rules) - self.ipsets.keys()
                if missing:
                    raise OrderingError(f"{msg.id} uses IP sets not sent yet: {sorted(missing)}")
                if isinstance(msg, m.ActivePolicyUpdate):
                    self.policies[msg.id] = msg
                else:
                    self.profiles[msg.id] = msg
            elif isinstance(msg, m.ActivePolicyRemove):
                for tiers in self._endpoint_tiers():
                    for t in tiers:
                        if t.name == msg.id.tier and msg.id.name in t.ingress_policies + t.egress_policies:
                            raise OrderingError(f"policy {msg.id} removed while an endpoint uses it")
                del self.policies[msg.id]
            elif isinstance(msg, m.ActiveProfileRemove):
                used = [w.profile_ids for w in self.workloads.values()] + [h.profile_ids for h in self.hosts.values()]
                if any(msg.id in ids for ids in used):
                    raise OrderingError(f"profile {msg.id} removed while an endpoint uses it")
                del self.profiles[msg.id]
            elif isinstance(msg, m.WorkloadEndpointUpdate):
                self._check_endpoint(msg.endpoint.tiers, msg.endpoint.profile_ids)
                self.workloads[msg.id] = msg.endpoint
            elif isinstance(msg, m.HostEndpointUpdate):
                ep = msg.endpoint
                for tiers in (ep.tiers, ep.untracked_tiers, ep.pre_dnat_tiers, ep.forward_tiers):
                    self._check_endpoint(tiers, ep.profile_ids)
                self.hosts[msg.id] = ep
            elif isinstance(msg, m.WorkloadEndpointRemove):
                del self.workloads[msg.id]
            elif isinstance(msg, m.HostEndpointRemove):
                del self.hosts[msg.id]
            elif isinstance(msg, m.RouteUpdate):
                self.routes[msg.dst] = msg
            elif isinstance(msg, m.RouteRemove):
                del self.routes[msg.dst]
            elif isinstance(msg, m.VXLANTunnelEndpointUpdate):
                self.vteps[msg.node] = msg
            elif isinstance(msg, m.VXLANTunnelEndpointRemove):
                del self.vteps[msg.node]
            elif isinstance(msg, m.IPAMPoolUpdate):
                self.pools[msg.id] = msg
            elif isinstance(msg, m.IPAMPoolRemove):
                del self.pools[msg.id]
            elif isinstance(msg, m.ConfigUpdate):
                self.config = dict(msg.config)
            elif isinstance(msg, m.InSync):
                self.in_sync += 1
            else:
                raise AssertionError(f"unexpected message {msg!r}")


class Harness:
    """A graph for node ``HOST`` and a checking dataplane fed from each flush."""

    def __init__(self, hostname: str = HOST) -> None:
        self.graph = CalcGraph(hostname)
        self.dp = DataplaneModel()

    def start(self, *updates: Update) -> list[Any]:
        """Send a snapshot then in-sync; return the first flush."""
        self.graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
        if updates:
            self.graph.on_updates(list(updates))
        self.graph.on_status(SyncStatus.IN_SYNC)
        return self.flush()

    def send(self, *updates: Update) -> list[Any]:
        """Send one batch; return its flush."""
        self.graph.on_updates(list(updates))
        return self.flush()

    def flush(self) -> list[Any]:
        """Flush the graph into the model."""
        out = self.graph.flush()
        self.dp.apply(out)
        return out

    def workload(self, name: str, ns: str = "default") -> m.WorkloadEndpoint:
        """The workload endpoint the model holds for a pod."""
        return self.dp.workloads[m.WorkloadEndpointID("k8s", f"{ns}/{name}", "eth0")]

    def policy_rules(self, name: str, tier: str = "default") -> m.ActivePolicyUpdate:
        """The policy the model holds."""
        return self.dp.policies[m.PolicyID(tier, name)]


def of_type(messages: list[m.Message], kind: type) -> list[Any]:
    """The messages of one type, in order."""
    return [x for x in messages if isinstance(x, kind)]
