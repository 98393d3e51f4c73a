"""Which keys each syncer type carries, as Calico's felix, bgp and tunnel-ip-allocation syncers do.

A :class:`ResourceType` is one watched set of keys: a prefix plus an exact key
pattern (so a prefix never drags in a neighbour such as IPAM handles, or node
``n1-b`` when the stream is for node ``n1``). A :class:`SyncerSpec` is a named
list of them. Resource keys follow :mod:`libcalico.datastore.keys`.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from libcalico.datastore.keys import IPAM_ROOT, RESOURCE_ROOT

FELIX = "felix"
BGP = "bgp"
TUNNEL_IP_ALLOCATION = "tunnel-ip-allocation"

# plural → (Calico kind, namespaced) for every kind a syncer carries.
RESOURCE_KINDS: dict[str, tuple[str, bool]] = {
    "clusterinformations": ("ClusterInformation", False),
    "felixconfigurations": ("FelixConfiguration", False),
    "tiers": ("Tier", False),
    "globalnetworkpolicies": ("GlobalNetworkPolicy", False),
    "stagedglobalnetworkpolicies": ("StagedGlobalNetworkPolicy", False),
    "networkpolicies": ("NetworkPolicy", True),
    "stagednetworkpolicies": ("StagedNetworkPolicy", True),
    "stagedkubernetesnetworkpolicies": ("StagedKubernetesNetworkPolicy", True),
    "globalnetworksets": ("GlobalNetworkSet", False),
    "networksets": ("NetworkSet", True),
    "ippools": ("IPPool", False),
    "nodes": ("Node", False),
    "profiles": ("Profile", False),
    "workloadendpoints": ("WorkloadEndpoint", True),
    "hostendpoints": ("HostEndpoint", False),
    "bgpconfigurations": ("BGPConfiguration", False),
    "bgppeers": ("BGPPeer", False),
    "bgpfilters": ("BGPFilter", False),
}

_SEGMENT = r"[^/]+"


class ResourceType(NamedTuple):
    """One watched set of keys: ``prefix`` to list and watch, ``pattern`` that every carried key matches."""

    name: str
    prefix: str
    pattern: re.Pattern[str]
    kind: str | None = None  # the v3 kind for resource keys; None for IPAM entries
    namespaced: bool = False

    def matches(self, key: str) -> bool:
        """Whether ``key`` belongs to this resource type."""
        return key.startswith(self.prefix) and self.pattern.fullmatch(key) is not None


class SyncerSpec(NamedTuple):
    """A syncer type: its name and the resource types its stream carries."""

    name: str
    types: tuple[ResourceType, ...]

    def type_of(self, key: str) -> ResourceType | None:
        """The resource type ``key`` belongs to, or None when this stream does not carry it."""
        for rtype in self.types:
            if rtype.matches(key):
                return rtype
        return None


def resource_type(plural: str, name: str | None = None) -> ResourceType:
    """The resource type of one v3 kind by plural; with ``name``, only that one (cluster-scoped) resource."""
    kind, namespaced = RESOURCE_KINDS[plural]
    prefix = f"{RESOURCE_ROOT}{plural}/"
    if name is not None:
        if namespaced:
            raise ValueError(f"resource type {plural}: a name filter needs a cluster-scoped kind")
        return ResourceType(f"{plural}/{name}", prefix + name, re.compile(re.escape(prefix + name)), kind, False)
    tail = rf"{_SEGMENT}/{_SEGMENT}" if namespaced else _SEGMENT
    return ResourceType(plural, prefix, re.compile(re.escape(prefix) + tail), kind, namespaced)


def ipam_blocks() -> ResourceType:
    """IPAM allocation blocks: ``/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26`` (and IPv6)."""
    prefix = f"{IPAM_ROOT}assignment/"
    return ResourceType("ipam-blocks", prefix, re.compile(re.escape(prefix) + rf"ipv[46]/block/{_SEGMENT}"))


def block_affinities(node: str | None = None) -> ResourceType:
    """Block affinities ``/calico/ipam/v2/host/<node>/ipv4/block/<cidr>``, of one node or of all."""
    root = f"{IPAM_ROOT}host/"
    if node:
        prefix = f"{root}{node}/"
        return ResourceType("block-affinities", prefix,
                            re.compile(re.escape(prefix) + rf"ipv[46]/block/{_SEGMENT}"))
    return ResourceType("block-affinities", root,
                        re.compile(re.escape(root) + rf"{_SEGMENT}/ipv[46]/block/{_SEGMENT}"))


def felix_spec() -> SyncerSpec:
    """Felix's stream: config, tiers and policies, sets, pools, nodes, profiles, endpoints, BGP config and peers, IPAM blocks."""
    plurals = (
        "clusterinformations", "felixconfigurations",
        "globalnetworkpolicies", "stagedglobalnetworkpolicies", "globalnetworksets",
        "ippools", "nodes", "profiles", "workloadendpoints",
        "networkpolicies", "stagednetworkpolicies", "stagedkubernetesnetworkpolicies",
        "networksets", "tiers", "hostendpoints", "bgpconfigurations", "bgppeers",
    )
    return SyncerSpec(FELIX, (*(resource_type(p) for p in plurals), ipam_blocks()))


def bgp_spec(node: str | None = None) -> SyncerSpec:
    """confd's stream: pools, BGP configuration, nodes, peers, filters and block affinities (of ``node`` if given)."""
    plurals = ("ippools", "bgpconfigurations", "nodes", "bgppeers", "bgpfilters")
    return SyncerSpec(BGP, (*(resource_type(p) for p in plurals), block_affinities(node)))


def tunnel_ip_allocation_spec(node: str | None = None) -> SyncerSpec:
    """The tunnel-address allocator's stream: IP pools and nodes (only ``node`` if given)."""
    return SyncerSpec(TUNNEL_IP_ALLOCATION, (resource_type("ippools"), resource_type("nodes", node or None)))


SYNCER_TYPES = (FELIX, BGP, TUNNEL_IP_ALLOCATION)


def syncer_spec(name: str, node: str | None = None) -> SyncerSpec:
    """The spec of a syncer type by its wire name; raise ValueError naming the known ones."""
    if name == FELIX:
        return felix_spec()
    if name == BGP:
        return bgp_spec(node)
    if name == TUNNEL_IP_ALLOCATION:
        return tunnel_ip_allocation_spec(node)
    raise ValueError(f"unknown syncer type {name!r}; expected one of {', '.join(SYNCER_TYPES)}")
