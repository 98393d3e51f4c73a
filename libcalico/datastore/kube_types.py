"""The Kubernetes resource types the kubernetes datastore reads and writes.

Calico's own data lives in custom resources of ``crd.projectcalico.org/v1``
(one CRD per kind, manifests in ``deploy/crds/``); Profiles, Kubernetes-made
NetworkPolicies and WorkloadEndpoints are derived from core objects
(Namespaces, ServiceAccounts, ``networking.k8s.io`` NetworkPolicies, Pods).
"""

from __future__ import annotations

from dataclasses import dataclass

CRD_GROUP = "crd.projectcalico.org"
CRD_VERSION = "v1"


@dataclass(frozen=True, slots=True)
class KubeType:
    """One Kubernetes API resource: group, version, plural, kind and scope."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def is_crd(self) -> bool:
        return self.group == CRD_GROUP

    def __str__(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _crd(plural: str, kind: str, namespaced: bool = False) -> KubeType:
    return KubeType(CRD_GROUP, CRD_VERSION, plural, kind, namespaced)


# Every Calico CRD this backend uses, by CRD plural (the files in deploy/crds/).
CALICO_CRDS: dict[str, KubeType] = {
    t.plural: t
    for t in (
        _crd("bgpconfigurations", "BGPConfiguration"),
        _crd("bgpfilters", "BGPFilter"),
        _crd("bgppeers", "BGPPeer"),
        _crd("blockaffinities", "BlockAffinity"),
        _crd("caliconodestatuses", "CalicoNodeStatus"),
        _crd("clusterinformations", "ClusterInformation"),
        _crd("felixconfigurations", "FelixConfiguration"),
        _crd("globalnetworkpolicies", "GlobalNetworkPolicy"),
        _crd("globalnetworksets", "GlobalNetworkSet"),
        _crd("hostendpoints", "HostEndpoint"),
        _crd("ipamblocks", "IPAMBlock"),
        _crd("ipamconfigs", "IPAMConfig"),
        _crd("ipamhandles", "IPAMHandle"),
        _crd("ippools", "IPPool"),
        _crd("ipreservations", "IPReservation"),
        _crd("kubecontrollersconfigurations", "KubeControllersConfiguration"),
        _crd("networkpolicies", "NetworkPolicy", namespaced=True),
        _crd("networksets", "NetworkSet", namespaced=True),
        _crd("stagedglobalnetworkpolicies", "StagedGlobalNetworkPolicy"),
        _crd("stagedkubernetesnetworkpolicies", "StagedKubernetesNetworkPolicy", namespaced=True),
        _crd("stagednetworkpolicies", "StagedNetworkPolicy", namespaced=True),
        _crd("tiers", "Tier"),
    )
}


@dataclass(frozen=True, slots=True)
class ResourceCrd:
    """How a projectcalico.org/v3 kind (by its plural key segment) is stored as a custom resource."""

    v3_plural: str
    v3_kind: str
    crd: KubeType


def _res(v3_plural: str, v3_kind: str, crd_plural: str | None = None) -> ResourceCrd:
    return ResourceCrd(v3_plural, v3_kind, CALICO_CRDS[crd_plural or v3_plural])


# v3 plural (the key segment) -> its CRD. IPAMConfiguration is stored in ipamconfigs,
# as Calico's KDD does; every other kind has a CRD of the same plural and kind.
RESOURCE_CRDS: dict[str, ResourceCrd] = {
    r.v3_plural: r
    for r in (
        _res("bgpconfigurations", "BGPConfiguration"),
        _res("bgpfilters", "BGPFilter"),
        _res("bgppeers", "BGPPeer"),
        _res("blockaffinities", "BlockAffinity"),
        _res("caliconodestatuses", "CalicoNodeStatus"),
        _res("clusterinformations", "ClusterInformation"),
        _res("felixconfigurations", "FelixConfiguration"),
        _res("globalnetworkpolicies", "GlobalNetworkPolicy"),
        _res("globalnetworksets", "GlobalNetworkSet"),
        _res("hostendpoints", "HostEndpoint"),
        _res("ipamconfigurations", "IPAMConfiguration", "ipamconfigs"),
        _res("ippools", "IPPool"),
        _res("ipreservations", "IPReservation"),
        _res("kubecontrollersconfigurations", "KubeControllersConfiguration"),
        _res("networkpolicies", "NetworkPolicy"),
        _res("networksets", "NetworkSet"),
        _res("stagedglobalnetworkpolicies", "StagedGlobalNetworkPolicy"),
        _res("stagedkubernetesnetworkpolicies", "StagedKubernetesNetworkPolicy"),
        _res("stagednetworkpolicies", "StagedNetworkPolicy"),
        _res("tiers", "Tier"),
    )
}

RESOURCE_BY_CRD: dict[str, ResourceCrd] = {
    r.crd.plural: r for r in RESOURCE_CRDS.values()
}

# Core Kubernetes types that Calico resources are derived from (read only).
NAMESPACES = KubeType("", "v1", "namespaces", "Namespace", False)
SERVICE_ACCOUNTS = KubeType("", "v1", "serviceaccounts", "ServiceAccount", True)
PODS = KubeType("", "v1", "pods", "Pod", True)
K8S_NETWORK_POLICIES = KubeType("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy", True)
CORE_TYPES = (NAMESPACES, SERVICE_ACCOUNTS, PODS, K8S_NETWORK_POLICIES)

# v3 plurals whose every entry is derived from core objects (no CRD behind them).
SYNTHESISED_PLURALS = ("profiles", "workloadendpoints")
