"""Calico's projectcalico.org/v3 resource kinds, with Calico's wire names, defaults and validation.

The kinds live one module per group and are imported on first use: naming a
kind here (``from libcalico.resources import IPPool``) imports only its
module, so a short-lived process such as the CNI plugin pays for the models it
uses and no others. Every lookup by name in :mod:`.base` (``kind_class``,
``lookup_kind``, ``all_kinds``...) first loads every kind, through
:func:`_load_all`, so the registry is always complete when searched.
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

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

if _TYPE_CHECKING:
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

# Where each lazily imported name lives, in the order the kinds register (all_kinds keeps this order).
_LAZY: dict[str, str] = {
    "BGPPeer": "bgp",
    "BGPConfiguration": "bgp",
    "ClusterInformation": "cluster",
    "KubeControllersConfiguration": "cluster",
    "HostEndpoint": "endpoint",
    "WorkloadEndpoint": "endpoint",
    "FelixConfiguration": "felixconfig",
    "IPPool": "ippool",
    "IPReservation": "ippool",
    "IPAMConfiguration": "ippool",
    "NetworkSet": "networkset",
    "GlobalNetworkSet": "networkset",
    "Node": "node",
    "NetworkPolicy": "policy",
    "GlobalNetworkPolicy": "policy",
    "StagedNetworkPolicy": "policy",
    "StagedGlobalNetworkPolicy": "policy",
    "Tier": "policy",
    "Profile": "profile",
    "EntityRule": "rules",
    "HTTPMatch": "rules",
    "ICMPFields": "rules",
    "Rule": "rules",
    "ServiceAccountMatch": "rules",
    "ServiceMatch": "rules",
}
_KIND_MODULES = ("bgp", "cluster", "endpoint", "felixconfig", "ippool", "networkset", "node", "policy", "profile")
_SUBMODULES = frozenset({*_KIND_MODULES, "base", "fields", "rules"})

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


def __getattr__(name: str) -> _Any:
    """Import a kind's module the first time one of its names (or the module itself) is asked for."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(_importlib.import_module(f"{__name__}.{module}"), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY, *_SUBMODULES})


def _load_all() -> None:
    """Import every kind's module, so that every kind is registered."""
    for module in _KIND_MODULES:
        _importlib.import_module(f"{__name__}.{module}")
