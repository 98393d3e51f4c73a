"""The FelixConfiguration kind (``default`` for the cluster, ``node.<name>`` per node).

Fields are Calico's (``api/pkg/apis/projectcalico/v3/felixconfig.go``), declared as
one table: name and type. Nothing is defaulted into the stored resource: a
field left out means "Felix's default", which Felix's own settings apply.
Enum fields whose CRD pattern is case-insensitive (``(?i)``) accept any case.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, PlainValidator

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import (
    KindBase,
    Loc,
    Port,
    SpecModel,
    check_label_name,
    duration_seconds,
    int_range,
    non_negative_duration,
    parse_cidr_or_ip,
    raise_problems,
)

U32 = 0xFFFFFFFF


def enum(what: str, *values: str, any_case: bool = False) -> Any:
    """A string limited to ``values`` or empty (meaning Felix's default); ``any_case`` ignores case."""
    wanted = {v.lower(): v for v in values} if any_case else {v: v for v in values}
    wanted[""] = ""

    def check(value: Any) -> str:
        key = value.lower() if any_case and isinstance(value, str) else value
        if not isinstance(value, str) or key not in wanted:
            raise ValueError(f"unknown {what} {value!r} (expected {', '.join(values)})")
        return value

    return Annotated[str, PlainValidator(check)]


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, not {value!r}")
    return value


def _regexp(value: Any) -> str:
    _string(value)
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return value


_KV_RE = re.compile(r"^\s*(\w+)=(.*)$")


def _key_value_list(value: Any) -> str:
    _string(value)
    for item in value.split(","):
        if item and not _KV_RE.fullmatch(item):
            raise ValueError(f"{value!r} is not a comma-separated list of key=value pairs")
    return value


_IFACE_RE = re.compile(r"^[a-zA-Z0-9_.-]{1,15}$")
_IFACE_FILTER_RE = re.compile(r"^[a-zA-Z0-9:._+-]{1,15}$")
_PROMETHEUS_HOST_RE = re.compile(r"^[a-zA-Z0-9:._+-]{1,64}$")


def _matching(pattern: re.Pattern[str], what: str) -> Any:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise ValueError(f"invalid {what} {value!r}")
        return value

    return Annotated[str, PlainValidator(check)]


def _ip_of(version: int) -> Any:
    def check(value: Any) -> str:
        _string(value)
        try:
            ok = ipaddress.ip_address(value).version == version
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{value!r} is not a valid IPv{version} address")
        return value

    return Annotated[str, PlainValidator(check)]


def _cidr_list_item(value: Any) -> str:
    parse_cidr_or_ip(value)
    return str(value)


Str = Annotated[str, PlainValidator(_string)]
Duration = Annotated[str, PlainValidator(non_negative_duration)]
Regexp = Annotated[str, PlainValidator(_regexp)]
KeyValueList = Annotated[str, PlainValidator(_key_value_list)]
Interface = _matching(_IFACE_RE, "interface name")
IfaceFilter = _matching(_IFACE_FILTER_RE, "interface filter")
CIDRItem = Annotated[str, PlainValidator(_cidr_list_item)]
PortNo = int_range("port", 0, 65535)
Int = int_range("value", -(2**31), 2**31 - 1)
NonNegative = int_range("value", 0, 2**31 - 1)
U32Int = int_range("value", 0, U32)
LogLevel = enum("log level", "Trace", "Debug", "Info", "Warning", "Error", "Fatal", any_case=True)
EnabledDisabled = enum("value", "Enabled", "Disabled")
AcceptReturn = enum("action", "Accept", "Return", any_case=True)
DropReject = enum("action", "Drop", "Reject", any_case=True)


def _proto_port_protocol(value: Any) -> str:
    if not isinstance(value, str) or value.upper() not in ("TCP", "UDP", "SCTP"):
        raise ValueError(f"unknown protocol {value!r} (expected TCP, UDP or SCTP)")
    return value


def _optional_cidr(value: Any) -> str:
    if value == "":
        return value
    parse_cidr_or_ip(value)
    return str(value)


class ProtoPort(SpecModel):
    """A failsafe port: protocol, port and optional CIDR."""

    protocol: Annotated[str, PlainValidator(_proto_port_protocol)] | None = None
    port: PortNo  # type: ignore[valid-type]
    net: Annotated[str, PlainValidator(_optional_cidr)] | None = None


class RouteTableRange(SpecModel):
    """A range of routing table indices (deprecated form: within 1-250)."""

    min: U32Int  # type: ignore[valid-type]
    max: U32Int  # type: ignore[valid-type]


_HTO_NAME_RE = re.compile(r"^[a-zA-Z0-9_ -]+$")


class HealthTimeoutOverride(SpecModel):
    """An override of one internal watchdog timeout."""

    name: _matching(_HTO_NAME_RE, "health timeout name")  # type: ignore[valid-type]
    timeout: Duration


_CT_TIMEOUT_RE = re.compile(r"^(([0-9]*(\.[0-9]*)?(ms|s|h|m|us)+)+|Auto)$")
CTTimeout = _matching(_CT_TIMEOUT_RE, "conntrack timeout")


class BPFConntrackTimeouts(SpecModel):
    """Overrides of the BPF conntrack timers (a duration or ``Auto`` each)."""

    creationGracePeriod: CTTimeout | None = None  # type: ignore[valid-type]
    tcpSynSent: CTTimeout | None = None  # type: ignore[valid-type]
    tcpEstablished: CTTimeout | None = None  # type: ignore[valid-type]
    tcpFinsSeen: CTTimeout | None = None  # type: ignore[valid-type]
    tcpResetSeen: CTTimeout | None = None  # type: ignore[valid-type]
    udpTimeout: CTTimeout | None = None  # type: ignore[valid-type]
    genericTimeout: CTTimeout | None = None  # type: ignore[valid-type]
    icmpTimeout: CTTimeout | None = None  # type: ignore[valid-type]


FIELDS: dict[str, Any] = {
    # process, datastore, health, metrics
    "useInternalDataplaneDriver": bool, "dataplaneDriver": Str, "dataplaneWatchdogTimeout": Duration,
    "featureDetectOverride": KeyValueList, "featureGates": KeyValueList,
    "healthEnabled": bool, "healthHost": Str, "healthPort": PortNo,
    "healthTimeoutOverrides": list[HealthTimeoutOverride],
    "prometheusMetricsEnabled": bool, "prometheusMetricsHost": _matching(_PROMETHEUS_HOST_RE, "host"),
    "prometheusMetricsPort": PortNo, "prometheusGoMetricsEnabled": bool,
    "prometheusProcessMetricsEnabled": bool, "prometheusWireGuardMetricsEnabled": bool,
    "goGCThreshold": int_range("goGCThreshold", -1, 2**31 - 1),
    "goMemoryLimitMB": int_range("goMemoryLimitMB", -1, 2**31 - 1),
    "goMaxProcs": int_range("goMaxProcs", -1, 2**31 - 1),
    "reportingInterval": Duration, "reportingTTL": Duration,
    "endpointReportingEnabled": bool, "endpointReportingDelay": Duration, "endpointStatusPathPrefix": Str,
    "usageReportingEnabled": bool, "usageReportingInitialDelay": Duration, "usageReportingInterval": Duration,
    "requireMTUFile": bool, "mtuIfacePattern": Regexp,
    # logging
    "logPrefix": Str, "logFilePath": Str, "logSeverityFile": LogLevel, "logSeverityScreen": LogLevel,
    "logSeveritySys": LogLevel, "logDebugFilenameRegex": Regexp,
    "logActionRateLimit": Str, "logActionRateLimitBurst": NonNegative, "logDropActionOverride": bool,
    # dataplane: common
    "ipv6Support": bool, "routeRefreshInterval": Duration, "interfaceRefreshInterval": Duration,
    "netlinkTimeout": Duration, "interfacePrefix": Str, "interfaceExclude": Str,
    "defaultEndpointToHostAction": enum("action", "Drop", "Accept", "Return", any_case=True),
    "failsafeInboundHostPorts": list[ProtoPort], "failsafeOutboundHostPorts": list[ProtoPort],
    "kubeNodePortRanges": list[Port], "policySyncPathPrefix": Str,
    "natPortRange": Port, "natOutgoingAddress": _ip_of(4),
    "natOutgoingExclusions": enum("natOutgoingExclusions", "IPPoolsOnly", "IPPoolsAndHostIPs"),
    "deviceRouteSourceAddress": _ip_of(4), "deviceRouteSourceAddressIPv6": _ip_of(6),
    "deviceRouteProtocol": int_range("deviceRouteProtocol", 0, 255), "removeExternalRoutes": bool,
    "programClusterRoutes": EnabledDisabled, "ipForwarding": EnabledDisabled,
    "externalNodesList": list[CIDRItem], "disableConntrackInvalidCheck": bool,
    "routeSource": enum("routeSource", "WorkloadIPs", "CalicoIPAM", any_case=True),
    "routeTableRanges": list[RouteTableRange], "routeTableRange": RouteTableRange, "routeSyncDisabled": bool,
    "serviceLoopPrevention": enum("serviceLoopPrevention", "Drop", "Reject", "Disabled", any_case=True),
    "workloadSourceSpoofing": enum("workloadSourceSpoofing", "Disabled", "Any", any_case=True),
    "floatingIPs": EnabledDisabled, "sidecarAccelerationEnabled": bool,
    "metadataAddr": Str, "metadataPort": PortNo, "openstackRegion": Str,
    "windowsManageFirewallRules": EnabledDisabled, "cgroupV2Path": Str,
    # iptables / nftables
    "chainInsertMode": enum("chainInsertMode", "Insert", "Append", any_case=True),
    "iptablesRefreshInterval": Duration, "iptablesPostWriteCheckInterval": Duration,
    "iptablesLockFilePath": Str, "iptablesLockTimeout": Duration, "iptablesLockProbeInterval": Duration,
    "ipsetsRefreshInterval": Duration, "maxIpsetSize": NonNegative,
    "iptablesBackend": enum("iptablesBackend", "Auto", "Legacy", "NFT", any_case=True),
    "iptablesFilterAllowAction": AcceptReturn, "iptablesMangleAllowAction": AcceptReturn,
    "iptablesFilterDenyAction": DropReject, "iptablesMarkMask": U32Int,
    "iptablesNATOutgoingInterfaceFilter": IfaceFilter,
    "nftablesMode": enum("nftablesMode", "Disabled", "Enabled", "Auto"), "nftablesRefreshInterval": Duration,
    "nftablesFilterAllowAction": AcceptReturn, "nftablesMangleAllowAction": AcceptReturn,
    "nftablesFilterDenyAction": DropReject, "nftablesMarkMask": U32Int,
    # XDP
    "xdpEnabled": bool, "genericXDPEnabled": bool, "xdpRefreshInterval": Duration,
    # overlays
    "ipipEnabled": bool, "ipipMTU": NonNegative, "vxlanEnabled": bool, "vxlanMTU": NonNegative,
    "vxlanMTUV6": NonNegative, "vxlanPort": PortNo, "vxlanVNI": int_range("vxlanVNI", 0, 2**24 - 1),
    "allowVXLANPacketsFromWorkloads": bool, "allowIPIPPacketsFromWorkloads": bool,
    "wireguardEnabled": bool, "wireguardEnabledV6": bool, "wireguardThreadingEnabled": bool,
    "wireguardListeningPort": int_range("port", 1, 65535), "wireguardListeningPortV6": int_range("port", 1, 65535),
    "wireguardRoutingRulePriority": int_range("wireguardRoutingRulePriority", 1, 32765),
    "wireguardInterfaceName": Interface, "wireguardInterfaceNameV6": Interface,
    "wireguardMTU": NonNegative, "wireguardMTUV6": NonNegative, "wireguardHostEncryptionEnabled": bool,
    "wireguardKeepAlive": Duration,
    # eBPF
    "bpfEnabled": bool, "bpfDisableUnprivileged": bool,
    "bpfLogLevel": enum("bpfLogLevel", "Off", "Info", "Debug", any_case=True),
    "bpfConntrackLogLevel": enum("bpfConntrackLogLevel", "Off", "Debug"),
    "bpfConntrackMode": enum("bpfConntrackMode", "Auto", "Userspace", "BPFProgram"),
    "bpfConntrackTimeouts": BPFConntrackTimeouts, "bpfLogFilters": dict[str, str], "bpfCTLBLogFilter": Str,
    "bpfDataIfacePattern": Regexp, "bpfL3IfacePattern": Regexp, "bpfConnectTimeLoadBalancingEnabled": bool,
    "bpfConnectTimeLoadBalancing": enum("bpfConnectTimeLoadBalancing", "TCP", "Enabled", "Disabled"),
    "bpfHostNetworkedNATWithoutCTLB": EnabledDisabled,
    "bpfExternalServiceMode": enum("bpfExternalServiceMode", "Tunnel", "DSR", any_case=True),
    "bpfDSROptoutCIDRs": list[CIDRItem], "bpfExtToServiceConnmark": U32Int,
    "bpfKubeProxyIptablesCleanupEnabled": bool, "bpfKubeProxyMinSyncPeriod": Duration,
    "bpfKubeProxyEndpointSlicesEnabled": bool, "bpfKubeProxyHealthzPort": PortNo, "bpfPSNATPorts": Port,
    "bpfMapSizeNATFrontend": NonNegative, "bpfMapSizeNATBackend": NonNegative, "bpfMapSizeNATAffinity": NonNegative,
    "bpfMapSizeRoute": NonNegative, "bpfMapSizeConntrack": NonNegative, "bpfMapSizePerCpuConntrack": NonNegative,
    "bpfMapSizeConntrackScaling": enum("bpfMapSizeConntrackScaling", "Disabled", "DoubleIfFull", any_case=True),
    "bpfMapSizeConntrackCleanupQueue": int_range("bpfMapSizeConntrackCleanupQueue", 1, 2**31 - 1),
    "bpfMapSizeIPSets": NonNegative, "bpfMapSizeIfState": NonNegative, "bpfHostConntrackBypass": bool,
    "bpfEnforceRPF": enum("bpfEnforceRPF", "Disabled", "Strict", "Loose", any_case=True),
    "bpfPolicyDebugEnabled": bool, "bpfForceTrackPacketsFromIfaces": list[IfaceFilter],  # type: ignore[valid-type]
    "bpfDisableGROForIfaces": Regexp, "bpfExcludeCIDRsFromNAT": list[CIDRItem], "bpfExportBufferSizeMB": NonNegative,
    "bpfRedirectToPeer": enum("bpfRedirectToPeer", "Enabled", "Disabled", "L2Only"),
    "bpfProfiling": EnabledDisabled, "bpfAttachType": enum("bpfAttachType", "TCX", "TC"),
    # flow logs, AWS, debug
    "flowLogsPolicyEvaluationMode": enum("flowLogsPolicyEvaluationMode", "None", "Continuous"),
    "flowLogsFlushInterval": Duration, "flowLogsCollectorDebugTrace": bool, "flowLogsGoldmaneServer": Str,
    "flowLogsLocalReporter": EnabledDisabled,
    "awsSrcDstCheck": enum("awsSrcDstCheck", "DoNothing", "Enable", "Disable"),
    "debugMemoryProfilePath": Str, "debugDisableLogDropping": bool, "debugSimulateCalcGraphHangAfter": Duration,
    "debugSimulateDataplaneHangAfter": Duration, "debugSimulateDataplaneApplyDelay": Duration,
    "debugHost": Str, "debugPort": PortNo,
}


def _spec_problems(spec: pydantic.BaseModel) -> list[tuple[Loc, str]]:
    values = {name: getattr(spec, name) for name in FIELDS}
    problems: list[tuple[Loc, str]] = []
    ranges = values["kubeNodePortRanges"]
    if ranges is not None:
        if len(ranges) > 7:
            problems.append((("kubeNodePortRanges",), "node port ranges list is too long (max 7)"))
        for i, port in enumerate(ranges):
            if isinstance(port, str) and ":" not in port:
                problems.append((("kubeNodePortRanges", i), "node port ranges should not contain named ports"))
    for i, cidr in enumerate(values["externalNodesList"] or []):
        if parse_cidr_or_ip(cidr).version != 4:
            problems.append((("externalNodesList", i), "has invalid IPv6 CIDR (only IPv4 is supported)"))
    region = values["openstackRegion"]
    if region:
        if len(region) > 63 - len("openstack-region-"):
            problems.append((("openstackRegion",), "is too long"))
        else:
            try:
                check_label_name(region, "openstackRegion")
            except ValueError:
                problems.append((("openstackRegion",), "must be a valid DNS label"))
    single, many = values["routeTableRange"], values["routeTableRanges"]
    if single is not None and many is not None:
        problems.append((("routeTableRange",), "cannot be set when routeTableRanges is also set"))
    if single is not None and not (1 <= single.min <= single.max <= 250):
        problems.append((("routeTableRange",), "must be a range of route table indices within 1..250"))
    total = 0
    for i, rng in enumerate(many or []):
        if rng.min > rng.max:
            problems.append((("routeTableRanges", i), "min value cannot be greater than max value"))
        if rng.min < 1:
            problems.append((("routeTableRanges", i), "cannot target indices < 1"))
        total += max(0, rng.max - rng.min + 1)
    if total > 0xFFFF:
        problems.append((("routeTableRanges",), "targets too many tables"))
    for key in values["bpfLogFilters"] or {}:
        if not _IFACE_RE.fullmatch(key):
            problems.append((("bpfLogFilters", key), f"invalid interface name {key!r}"))
    return problems


def _checks(self: pydantic.BaseModel) -> pydantic.BaseModel:
    raise_problems(_spec_problems(self))
    return self


FelixConfigurationSpec: type[SpecModel] = pydantic.create_model(  # type: ignore[call-overload]
    "FelixConfigurationSpec",
    __base__=SpecModel,
    __doc__="Spec of a FelixConfiguration; every field optional.",
    __validators__={"_checks": pydantic.model_validator(mode="after")(_checks)},
    **{name: (kind | None, None) for name, kind in FIELDS.items()},
)


@register
class FelixConfiguration(KindBase):
    """Felix settings for the cluster (``default``) or one node (``node.<name>``)."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="FelixConfiguration", plural="felixconfigurations", namespaced=False,
        aliases=("felixconfiguration", "felixconfigurations", "felixconfig", "felixconfigs"),
    )
    kind: Literal["FelixConfiguration"] = "FelixConfiguration"
    spec: FelixConfigurationSpec = Field(default_factory=FelixConfigurationSpec)


def duration_of(spec: Any, name: str) -> float | None:
    """Seconds in a duration field of a FelixConfiguration spec, or None when unset."""
    value = getattr(spec, name)
    return None if value is None else duration_seconds(value)
