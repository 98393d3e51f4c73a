"""Which Kubernetes types feed which datastore keys, and how their objects become entries.

How it works::

    key prefix asked for                      sources consulted
    /calico/resources/v3/projectcalico.org/   every CRD + Namespaces, ServiceAccounts, NetworkPolicies, Pods
      .../ippools/                            ippools CRD
      .../networkpolicies/<ns>/               networkpolicies CRD + networking.k8s.io NetworkPolicies in <ns>
      .../profiles/                           Namespaces (kns.*) + ServiceAccounts (ksa.*) + default-allow
      .../workloadendpoints/<ns>/             Pods in <ns>
    /calico/ipam/v2/                          ipamblocks, blockaffinities, ipamhandles, ipamconfigs

A source is one Kubernetes type plus the key prefixes its entries can have and
a conversion from one object to the entries it yields.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from libcalico.datastore.backend import JSONMap
from libcalico.datastore.keys import IPAM_ROOT, RESOURCE_ROOT
from libcalico.datastore.kube_conversion import (
    K8S_POLICY_PREFIX,
    k8s_network_policy,
    namespace_profile,
    pod_workload_endpoint,
    service_account_profile,
)
from libcalico.datastore.kube_crd import Decoded, decode, expiry_of, revision_of
from libcalico.datastore.kube_types import (
    CALICO_CRDS,
    K8S_NETWORK_POLICIES,
    NAMESPACES,
    PODS,
    RESOURCE_BY_CRD,
    SERVICE_ACCOUNTS,
    KubeType,
)

Converter = Callable[[JSONMap], list[Decoded]]

_IPAM_PREFIXES = {
    "ipamblocks": (f"{IPAM_ROOT}assignment/",),
    "blockaffinities": (f"{IPAM_ROOT}host/",),
    "ipamhandles": (f"{IPAM_ROOT}handle/",),
    "ipamconfigs": (f"{IPAM_ROOT}config",),
}


@dataclass(frozen=True, slots=True)
class Source:
    """One Kubernetes type, the key prefixes of the entries it yields, and how to convert its objects."""

    ktype: KubeType
    prefixes: tuple[str, ...]
    convert: Converter
    derived: bool  # True: read-only entries synthesised from core objects

    def relevant(self, prefix: str) -> bool:
        """Whether any entry of this source can start with ``prefix``."""
        return any(p.startswith(prefix) or prefix.startswith(p) for p in self.prefixes)

    def namespace_for(self, prefix: str) -> str | None:
        """The one namespace a query for ``prefix`` is confined to, when the prefix names one."""
        if not self.ktype.namespaced:
            return None
        for p in self.prefixes:
            if prefix.startswith(p) and p.startswith(RESOURCE_ROOT):
                rest = prefix[len(p) :]
                if "/" in rest:
                    return rest.split("/", 1)[0]
        return None


def _crd_converter(ktype: KubeType) -> Converter:
    def convert(obj: JSONMap) -> list[Decoded]:
        name = (obj.get("metadata") or {}).get("name") or ""
        if ktype.plural == "networkpolicies" and name.startswith(K8S_POLICY_PREFIX):
            return []  # that name space belongs to policies converted from Kubernetes ones
        decoded = decode(ktype, obj)
        return [decoded] if decoded is not None else []

    return convert


def _derived_converter(fn: Callable[[JSONMap], tuple[str, JSONMap] | None]) -> Converter:
    def convert(obj: JSONMap) -> list[Decoded]:
        entry = fn(obj)
        if entry is None:
            return []
        return [Decoded(entry[0], entry[1], revision_of(obj), expiry_of(obj))]

    return convert


def _build() -> tuple[Source, ...]:
    sources: list[Source] = []
    for plural, ktype in CALICO_CRDS.items():
        prefixes: tuple[str, ...] = _IPAM_PREFIXES.get(plural, ())
        res = RESOURCE_BY_CRD.get(plural)
        if res is not None:
            prefixes = (*prefixes, f"{RESOURCE_ROOT}{res.v3_plural}/")
        sources.append(Source(ktype, prefixes, _crd_converter(ktype), derived=False))
    sources += [
        Source(NAMESPACES, (f"{RESOURCE_ROOT}profiles/kns.",), _derived_converter(namespace_profile), True),
        Source(SERVICE_ACCOUNTS, (f"{RESOURCE_ROOT}profiles/ksa.",),
               _derived_converter(service_account_profile), True),
        Source(K8S_NETWORK_POLICIES, (f"{RESOURCE_ROOT}networkpolicies/",),
               _derived_converter(k8s_network_policy), True),
        Source(PODS, (f"{RESOURCE_ROOT}workloadendpoints/",), _derived_converter(pod_workload_endpoint), True),
    ]
    return tuple(sources)


SOURCES: tuple[Source, ...] = _build()


def sources_for(prefix: str) -> list[Source]:
    """The sources whose entries can fall under ``prefix``."""
    return [s for s in SOURCES if s.relevant(prefix)]
