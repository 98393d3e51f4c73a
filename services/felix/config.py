"""Felix's settings: Calico's parameter names, defaults and precedence, and what a change of them means.

How it works::

    defaults < FelixConfiguration "default" < FelixConfiguration "node.<hostname>" < /etc/calico/felix.cfg
             < FELIX_* environment < command-line flags                  (Calico's config_params.go)

Two kinds of parameter:

- **daemon** parameters (ports, log level, Typha, reporting, ...) are read
  once at start-up; a datastore change to one of them makes Felix restart
  cleanly, as Calico's Felix does ("config changed").
- **dataplane** parameters (failsafe ports, interface prefix, VXLAN, refresh
  intervals, ...) are handed to the dataplane as a ``ConfigUpdate`` whenever
  they change, without a restart. Their values from the config file,
  environment or flags (the "local overlay") always win over the datastore's.

``local`` parameters (hostname, datastore and Typha connection) are never
taken from the datastore.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from libcalico.datastore.backend import Backend
from libcalico.datastore.keys import ResourceKey
from libcalico.errors import NotFound, ValidationError
from libcalico.runtime import Loaded, ServiceSettings, SettingsSpec, SourceKind, setting
from libcalico.runtime.paramtypes import Bool, Duration, Int, OneOf, Port, PortList, Str

DEFAULT_CONFIG_FILE = "/etc/calico/felix.cfg"
STATUS_DIR_NAME = "endpoint-status"
FELIX_CONFIGURATIONS = "felixconfigurations"  # the plural of FelixConfiguration's datastore keys


@dataclass(frozen=True)
class FelixSettings(ServiceSettings):
    """Every Felix parameter this daemon reads; Calico's names and defaults (extensions say so)."""

    health_port: int = setting("HealthPort", Port(), 9099, help="port of the health server")
    prometheus_metrics_port: int = setting("PrometheusMetricsPort", Port(), 9091, help="port of /metrics")
    felix_hostname: str = setting("FelixHostname", Str(r"[a-zA-Z0-9_.-]*", "invalid hostname"), "", local=True,
                                  help="this node's name (default: $NODENAME, else the host name)")
    datastore_type: str = setting("DatastoreType", Str(r"(|sqlite|etcdv3|kubernetes)",
                                                       "expected sqlite, etcdv3 or kubernetes"), "", local=True,
                                  help="overrides DATASTORE_TYPE")
    etcd_endpoints: str = setting("EtcdEndpoints", Str(), "", local=True, help="overrides ETCD_ENDPOINTS")
    etcd_ca_file: str = setting("EtcdCaFile", Str(), "", local=True, help="overrides ETCD_CA_CERT_FILE")
    etcd_cert_file: str = setting("EtcdCertFile", Str(), "", local=True, help="overrides ETCD_CERT_FILE")
    etcd_key_file: str = setting("EtcdKeyFile", Str(), "", local=True, help="overrides ETCD_KEY_FILE")
    typha_addr: str = setting("TyphaAddr", Str(), "", local=True, help="host:port of Typha (wins over the service)")
    typha_k8s_service_name: str = setting("TyphaK8sServiceName", Str(), "", local=True,
                                          help="find Typha through this Kubernetes Service's endpoints")
    typha_k8s_namespace: str = setting("TyphaK8sNamespace", Str(), "kube-system", local=True, non_zero=True,
                                       help="namespace of TyphaK8sServiceName")
    typha_read_timeout: float = setting("TyphaReadTimeout", Duration(), 30.0, local=True,
                                        help="silence from Typha for this long drops the connection")
    typha_write_timeout: float = setting("TyphaWriteTimeout", Duration(), 10.0, local=True,
                                         help="connect timeout towards Typha")
    typha_key_file: str = setting("TyphaKeyFile", Str(), "", local=True, help="TLS key towards Typha")
    typha_cert_file: str = setting("TyphaCertFile", Str(), "", local=True, help="TLS certificate towards Typha")
    typha_ca_file: str = setting("TyphaCAFile", Str(), "", local=True, help="CA of Typha's certificate")
    typha_cn: str = setting("TyphaCN", Str(), "", local=True, help="required CN of Typha's certificate")
    typha_uri_san: str = setting("TyphaURISAN", Str(), "", local=True, help="required URI SAN of Typha's certificate")
    reporting_interval_secs: float = setting("ReportingIntervalSecs", Duration(), 30.0, field="reportingInterval",
                                             help="how often Felix reports its own status (0: never)")
    reporting_ttl_secs: float = setting("ReportingTTLSecs", Duration(), 90.0, field="reportingTTL",
                                        help="TTL of Felix's status key")
    endpoint_reporting_enabled: bool = setting("EndpointReportingEnabled", Bool(), False,
                                               help="write endpoint status into the datastore")
    endpoint_reporting_delay_secs: float = setting("EndpointReportingDelaySecs", Duration(), 1.0,
                                                   field="endpointReportingDelay",
                                                   help="endpoint status writes are batched this long")
    endpoint_status_path_prefix: str = setting("EndpointStatusPathPrefix", Str(), "/var/run/calico",
                                               help="per-endpoint status files go to <prefix>/endpoint-status "
                                                    "(empty: off)")
    openstack_region: str = setting("OpenstackRegion", Str(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?|",
                                                           "must be a DNS label"), "",
                                    help="region segment of status keys")
    dataplane_watchdog_timeout: float = setting("DataplaneWatchdogTimeout", Duration(), 90.0,
                                                help="a dataplane stuck this long makes Felix not live")
    dataplane_netns: str = setting("DataplaneNetns", Str(), "", local=True,
                                   help="extension: program this network namespace (name or path) "
                                        "instead of Felix's own")
    # Dataplane parameters: passed to the dataplane live (None: not set here).
    interface_prefix: str | None = setting("InterfacePrefix", Str(), None)
    failsafe_inbound_host_ports: tuple[Any, ...] | None = setting("FailsafeInboundHostPorts", PortList(), None)
    failsafe_outbound_host_ports: tuple[Any, ...] | None = setting("FailsafeOutboundHostPorts", PortList(), None)
    default_endpoint_to_host_action: str | None = setting("DefaultEndpointToHostAction",
                                                          OneOf("Drop", "Accept", "Return"), None)
    iptables_filter_deny_action: str | None = setting("IptablesFilterDenyAction", OneOf("Drop", "Reject"), None)
    ipv6_support: bool | None = setting("Ipv6Support", Bool(), None)
    vxlan_enabled: bool | None = setting("VXLANEnabled", Bool(), None, field="vxlanEnabled")
    vxlan_vni: int | None = setting("VXLANVNI", Int(1, 2**24 - 1), None, field="vxlanVNI")
    vxlan_port: int | None = setting("VXLANPort", Int(1, 65535), None, field="vxlanPort")
    vxlan_mtu: int | None = setting("VXLANMTU", Int(0), None, field="vxlanMTU")
    allow_vxlan_packets_from_workloads: bool | None = setting("AllowVXLANPacketsFromWorkloads", Bool(), None,
                                                              field="allowVXLANPacketsFromWorkloads")
    allow_ipip_packets_from_workloads: bool | None = setting("AllowIPIPPacketsFromWorkloads", Bool(), None,
                                                             field="allowIPIPPacketsFromWorkloads")
    ipip_enabled: bool | None = setting("IpInIpEnabled", Bool(), None, field="ipipEnabled")
    ipip_mtu: int | None = setting("IpInIpMtu", Int(0), None, field="ipipMTU")
    ipip_tunnel_addr: str | None = setting("IpInIpTunnelAddr", Str(), None)
    nftables_refresh_interval: float | None = setting("NftablesRefreshInterval", Duration(), None)
    route_refresh_interval: float | None = setting("RouteRefreshInterval", Duration(), None)
    log_prefix: str | None = setting("LogPrefix", Str(), None)
    iptables_mark_mask: int | None = setting("IptablesMarkMask", Int(0, 0xFFFFFFFF), None)
    device_route_protocol: int | None = setting("DeviceRouteProtocol", Int(0, 255), None)
    nat_outgoing_address: str | None = setting("NATOutgoingAddress", Str(), None, field="natOutgoingAddress")


SPEC: SettingsSpec[FelixSettings] = SettingsSpec(
    FelixSettings, env_prefix="FELIX_", config_file=DEFAULT_CONFIG_FILE, program="calico-felix",
    description="Felix: programs this node's policy, routes and interfaces", resource_kind="FelixConfiguration",
)

# The dataplane parameters (see the module docstring), by attribute name.
DATAPLANE_ATTRS: frozenset[str] = frozenset(
    b.attr for b in SPEC.bound if b.param.default is None
)
_FIELD_OF = {b.attr: b.field for b in SPEC.bound}
_KNOWN_FIELDS = {b.field.lower(): b.field for b in SPEC.bound if b.field and not b.param.local}
_LOCAL_SOURCES = (SourceKind.CONFIG_FILE, SourceKind.ENVIRONMENT, SourceKind.FLAG)


def local_overlay(loaded: Loaded[FelixSettings]) -> dict[str, Any]:
    """The dataplane parameters set by the config file, environment or flags, keyed by resource field."""
    out: dict[str, Any] = {}
    for b in SPEC.bound:
        if b.attr not in DATAPLANE_ATTRS:
            continue
        if loaded.sources[b.param.name].kind in _LOCAL_SOURCES:
            out[b.field] = getattr(loaded.settings, b.attr)
    return out


def known_fields(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a FelixConfiguration spec that this daemon's settings read (others are the dataplane's
    business or unused); matched case-insensitively, returned under the settings' spelling."""
    out: dict[str, Any] = {}
    for key, value in spec.items():
        field = _KNOWN_FIELDS.get(key.lower())
        if field is not None and value is not None:
            out[field] = value
    return out


def datastore_layers(default: Mapping[str, Any] | None, node: Mapping[str, Any] | None,
                     hostname: str) -> list[tuple[str, dict[str, Any]]]:
    """The FelixConfiguration layers in ascending precedence, as ``SettingsSpec.load`` takes them."""
    layers = []
    if default:
        layers.append(("FelixConfiguration default", known_fields(default)))
    if node:
        layers.append((f"FelixConfiguration node.{hostname}", known_fields(node)))
    return layers


def daemon_values(settings: FelixSettings) -> dict[str, Any]:
    """The daemon parameters' values (those whose change needs a restart), by Calico name."""
    names = {b.attr: b.param.name for b in SPEC.bound}
    return {names[f.name]: getattr(settings, f.name) for f in dataclasses.fields(settings)
            if f.name in names and f.name not in DATAPLANE_ATTRS}


def restart_reasons(running: FelixSettings, candidate: FelixSettings) -> list[str]:
    """Names of the daemon parameters that differ; a non-empty answer means "restart"."""
    old, new = daemon_values(running), daemon_values(candidate)
    return sorted(name for name in old if old[name] != new[name])


def region_string(region: str) -> str:
    """The region segment of Felix's status keys (Calico's ``model.RegionString``)."""
    return f"openstack-region-{region}" if region else "no-region"


def datastore_env(settings: FelixSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The datastore variables ``backend_from_env`` reads, with Felix's own parameters taking precedence."""
    names = ("DATASTORE_TYPE", "CALICO_DB", "ETCD_ENDPOINTS", "ETCD_CA_CERT_FILE", "ETCD_CERT_FILE",
             "ETCD_KEY_FILE", "KUBECONFIG")
    env = {name: environ[name] for name in names if environ.get(name)}
    overrides = {"DATASTORE_TYPE": settings.datastore_type, "ETCD_ENDPOINTS": settings.etcd_endpoints,
                 "ETCD_CA_CERT_FILE": settings.etcd_ca_file, "ETCD_CERT_FILE": settings.etcd_cert_file,
                 "ETCD_KEY_FILE": settings.etcd_key_file}
    env.update({k: v for k, v in overrides.items() if v})
    return env


def field_name(attr: str) -> str:
    """The FelixConfiguration field of a settings attribute."""
    return _FIELD_OF[attr]


@dataclass
class RestartRequest:
    """Set when a datastore config change needs a restart; ``datastore`` is the config that caused it."""

    requested: bool = False
    reasons: list[str] = dataclasses.field(default_factory=list)
    datastore: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass
class StartContext:
    """What the command line hands the wiring besides the settings."""

    argv: list[str]
    environ: dict[str, str]
    hostname: str
    datastore_env: dict[str, str]
    overlay: dict[str, Any]
    notes: list[str] = dataclasses.field(default_factory=list)
    restart: RestartRequest = dataclasses.field(default_factory=RestartRequest)


async def read_felix_configuration(backend: Backend, hostname: str) -> dict[str, dict[str, Any]]:
    """The specs of FelixConfiguration ``default`` and ``node.<hostname>`` that exist, by name.

    Raw stored values, read by key, each validated as the syncer validates it: the fast path
    (:func:`libcalico.syncer.fastpath.accepts`) vouches for the common form without the models;
    anything else goes through the model, so the resource models (and pydantic) are imported only
    for a resource outside that form. An invalid resource (which the calculation graph would treat
    as deleted) raises ValidationError naming the resource and the field.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in ("default", f"node.{hostname}"):
        try:
            kv = await backend.get(ResourceKey(FELIX_CONFIGURATIONS, name).path)
        except NotFound:
            continue
        check_felix_configuration(name, kv.value)
        spec = kv.value.get("spec")
        out[name] = dict(spec) if isinstance(spec, dict) else {}
    return out


def check_felix_configuration(name: str, value: Any) -> None:
    """Raise ValidationError unless ``value`` is a valid FelixConfiguration stored under ``name``."""
    from libcalico.syncer.fastpath import accepts  # pure Python, no models

    source = f"FelixConfiguration({name})"
    if not isinstance(value, dict):
        raise ValidationError("", f"a resource must be a map, not {type(value).__name__}", source=source)
    meta = value.get("metadata")
    if value.get("kind") != "FelixConfiguration" or not isinstance(meta, dict) or meta.get("name") != name:
        raise ValidationError("metadata.name", "the value is not the FelixConfiguration its key names",
                              source=source)
    if accepts("FelixConfiguration", value):
        return
    # The model: only for values outside the fast path.
    from libcalico.resources.base import parse_resource

    try:
        parse_resource(value)
    except ValidationError as exc:
        raise exc.with_source(source) from None
