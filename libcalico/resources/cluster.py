"""Cluster-wide singletons: ClusterInformation and KubeControllersConfiguration (both named ``default``)."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

from pydantic import Field, PlainValidator

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import KindBase, SpecModel, choice, int_range, non_negative_duration

LogSeverity = choice("log severity", "Trace", "Debug", "Info", "Warning", "Error", "Fatal")
EnabledDisabled = choice("value", "Enabled", "Disabled")
Duration = Annotated[str, PlainValidator(non_negative_duration)]
Port = int_range("port", 0, 65535)


def _only_default(name: str) -> None:
    if name != "default":
        raise ValueError(f"the only valid name is 'default', not {name!r}")


class ClusterInformationSpec(SpecModel):
    """Facts about the cluster that Calico records."""

    clusterGUID: str | None = None
    clusterType: str | None = None
    calicoVersion: str | None = None
    datastoreReady: bool | None = None
    variant: str | None = None


@register
class ClusterInformation(KindBase):
    """Cluster-wide information (read-only for users)."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="ClusterInformation", plural="clusterinformations", namespaced=False,
        aliases=("clusterinformation", "clusterinformations", "clusterinfo", "clusterinfos"),
    )
    kind: Literal["ClusterInformation"] = "ClusterInformation"
    spec: ClusterInformationSpec = Field(default_factory=ClusterInformationSpec)

    @classmethod
    def check_name(cls, name: str) -> None:
        """Calico only accepts the name ``default``."""
        _only_default(name)


class AutoHostEndpointTemplate(SpecModel):
    """A template for automatically created host endpoints."""

    generateName: str | None = None
    interfaceCIDRs: list[str] | None = None
    interfacePattern: str | None = None
    labels: dict[str, str] | None = None
    nodeSelector: str | None = None


class AutoHostEndpointConfig(SpecModel):
    """Automatic host endpoint creation."""

    autoCreate: EnabledDisabled | None = None  # type: ignore[valid-type]
    createDefaultHostEndpoint: EnabledDisabled | None = None  # type: ignore[valid-type]
    templates: list[AutoHostEndpointTemplate] | None = None


class NodeControllerConfig(SpecModel):
    """The node controller."""

    reconcilerPeriod: Duration | None = None
    syncLabels: EnabledDisabled | None = None  # type: ignore[valid-type]
    hostEndpoint: AutoHostEndpointConfig | None = None
    leakGracePeriod: Duration | None = None


class ReconcilerConfig(SpecModel):
    """A controller configured only by its reconciliation period."""

    reconcilerPeriod: Duration | None = None


class LoadBalancerControllerConfig(SpecModel):
    """The LoadBalancer IPAM controller."""

    assignIPs: choice("assignIPs", "AllServices", "RequestedServicesOnly") | None = None  # type: ignore[valid-type]


class ControllersConfig(SpecModel):
    """Which controllers run, with their settings (a controller left out is disabled)."""

    node: NodeControllerConfig | None = None
    policy: ReconcilerConfig | None = None
    workloadEndpoint: ReconcilerConfig | None = None
    serviceAccount: ReconcilerConfig | None = None
    namespace: ReconcilerConfig | None = None
    loadBalancer: LoadBalancerControllerConfig | None = None


class KubeControllersConfigurationSpec(SpecModel):
    """Spec of the kube-controllers configuration."""

    logSeverityScreen: LogSeverity | None = None  # type: ignore[valid-type]
    healthChecks: EnabledDisabled | None = None  # type: ignore[valid-type]
    etcdV3CompactionPeriod: Duration | None = None
    prometheusMetricsPort: Port | None = None  # type: ignore[valid-type]
    debugProfilePort: Port | None = None  # type: ignore[valid-type]
    controllers: ControllersConfig = Field(default_factory=ControllersConfig)


class KubeControllersConfigurationStatus(SpecModel):
    """The configuration kube-controllers is actually running with."""

    runningConfig: KubeControllersConfigurationSpec | None = None
    environmentVars: dict[str, str] | None = None


@register
class KubeControllersConfiguration(KindBase):
    """Configuration of Calico's Kubernetes controllers."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="KubeControllersConfiguration", plural="kubecontrollersconfigurations", namespaced=False,
        aliases=("kubecontrollersconfiguration", "kubecontrollersconfigurations", "kubecontrollersconfig",
                 "kubecontrollersconfigs"),
    )
    kind: Literal["KubeControllersConfiguration"] = "KubeControllersConfiguration"
    spec: KubeControllersConfigurationSpec = Field(default_factory=KubeControllersConfigurationSpec)
    status: KubeControllersConfigurationStatus | None = None

    @classmethod
    def check_name(cls, name: str) -> None:
        """Calico only accepts the name ``default``."""
        _only_default(name)
