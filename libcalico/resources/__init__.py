"""Calico's projectcalico.org/v3 resource kinds, with Calico's wire names, defaults and validation.

Importing this package registers every kind with the loader in :mod:`.base`.
"""

from libcalico.resources.base import (
    API_VERSION,
    KindInfo,
    Resource,
    all_kinds,
    decode_documents,
    kind_class,
    kind_for_plural,
    load_documents,
    lookup_kind,
    parse_resource,
)
from libcalico.resources.bgp import BGPConfiguration, BGPPeer
from libcalico.resources.cluster import ClusterInformation, KubeControllersConfiguration
from libcalico.resources.endpoint import HostEndpoint, WorkloadEndpoint
from libcalico.resources.felixconfig import FelixConfiguration
from libcalico.resources.ippool import IPAMConfiguration, IPPool, IPReservation
from libcalico.resources.networkset import GlobalNetworkSet, NetworkSet
from libcalico.resources.node import Node
from libcalico.resources.policy import (
    GlobalNetworkPolicy,
    NetworkPolicy,
    StagedGlobalNetworkPolicy,
    StagedNetworkPolicy,
    Tier,
)
from libcalico.resources.profile import Profile
from libcalico.resources.rules import (
    EntityRule,
    HTTPMatch,
    ICMPFields,
    Rule,
    ServiceAccountMatch,
    ServiceMatch,
)

__all__ = [
    "API_VERSION",
    "BGPConfiguration",
    "BGPPeer",
    "ClusterInformation",
    "FelixConfiguration",
    "GlobalNetworkSet",
    "HostEndpoint",
    "KubeControllersConfiguration",
    "NetworkSet",
    "Node",
    "Profile",
    "WorkloadEndpoint",
    "EntityRule",
    "GlobalNetworkPolicy",
    "HTTPMatch",
    "ICMPFields",
    "IPAMConfiguration",
    "IPPool",
    "IPReservation",
    "KindInfo",
    "NetworkPolicy",
    "Resource",
    "Rule",
    "ServiceAccountMatch",
    "ServiceMatch",
    "StagedGlobalNetworkPolicy",
    "StagedNetworkPolicy",
    "Tier",
    "all_kinds",
    "decode_documents",
    "kind_class",
    "kind_for_plural",
    "load_documents",
    "lookup_kind",
    "parse_resource",
]
