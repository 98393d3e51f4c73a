"""Fast acceptance of FelixConfiguration (see :mod:`.fastpath`): never more lenient than the model.

The model (``libcalico/resources/felixconfig.py``) declares its ~150 fields as one
table of pydantic types. :data:`FIELDS` here is the same table described without
pydantic: one *shape* per field, a small tuple naming the model's field type and
its parameters (``("int", 0, 65535)``, ``("enum", ("Drop", "Reject"), True)``,
``("list", ("model", "ProtoPort"))``...); :data:`MODELS` describes the nested
models the same way. A test reads the model's table and derives each field's
shape from its pydantic type, and fails unless the two tables are equal field
by field, so they cannot drift apart. Each shape compiles once into a check,
restating the model's validator with equal or stricter rules (ASCII only where
the model folds Unicode case or digits); the model's cross-field checks
(``_spec_problems``) are restated in :func:`_cross_checks`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from libcalico.syncer.fastkinds import address_of, cidr_of, top
from libcalico.syncer.fastpath import CIDRS, dns_label, metadata_ok, subdomain
from libcalico.syncer.fastpolicy import port_ok

Shape = tuple[Any, ...]

BOOL: Shape = ("bool",)
STR: Shape = ("str",)
DURATION: Shape = ("duration",)  # felixconfig.Duration: a Go duration, not negative
REGEXP: Shape = ("regexp",)
KEY_VALUE_LIST: Shape = ("key-value-list",)
PORT: Shape = ("port",)  # fields.Port: number, "min:max" or port name
CIDR: Shape = ("cidr",)  # felixconfig.CIDRItem: a CIDR or address, host bits allowed
STR_MAP: Shape = ("str-map",)
PROTOCOL: Shape = ("protocol",)  # ProtoPort.protocol: TCP, UDP or SCTP in any case
CIDR_OR_EMPTY: Shape = ("cidr-or-empty",)  # ProtoPort.net


def integer(low: int, high: int) -> Shape:
    """felixconfig's ``int_range(what, low, high)``."""
    return ("int", low, high)


def enum(*values: str, any_case: bool = False) -> Shape:
    """felixconfig's ``enum(what, *values, any_case=...)`` (the empty string means Felix's default)."""
    return ("enum", values, any_case)


def matching(pattern: str) -> Shape:
    """felixconfig's ``_matching(re.compile(pattern), what)``."""
    return ("match", pattern)


def ip(version: int) -> Shape:
    """felixconfig's ``_ip_of(version)``."""
    return ("ip", version)


def list_of(shape: Shape) -> Shape:
    """``list[...]``."""
    return ("list", shape)


def model(name: str) -> Shape:
    """A nested model described in :data:`MODELS`."""
    return ("model", name)


I32 = 2**31 - 1
U32 = 0xFFFFFFFF
IFACE = r"^[a-zA-Z0-9_.-]{1,15}$"
IFACE_FILTER = r"^[a-zA-Z0-9:._+-]{1,15}$"
PROMETHEUS_HOST = r"^[a-zA-Z0-9:._+-]{1,64}$"
HEALTH_TIMEOUT_NAME = r"^[a-zA-Z0-9_ -]+$"
CT_TIMEOUT = r"^(([0-9]*(\.[0-9]*)?(ms|s|h|m|us)+)+|Auto)$"

PORT_NO = integer(0, 65535)
NON_NEGATIVE = integer(0, I32)
U32_INT = integer(0, U32)
LOG_LEVEL = enum("Trace", "Debug", "Info", "Warning", "Error", "Fatal", any_case=True)
ENABLED_DISABLED = enum("Enabled", "Disabled")
ACCEPT_RETURN = enum("Accept", "Return", any_case=True)
DROP_REJECT = enum("Drop", "Reject", any_case=True)
CT = matching(CT_TIMEOUT)

# Nested models: field -> (shape, required).
MODELS: dict[str, dict[str, tuple[Shape, bool]]] = {
    "ProtoPort": {"protocol": (PROTOCOL, False), "port": (PORT_NO, True), "net": (CIDR_OR_EMPTY, False)},
    "RouteTableRange": {"min": (U32_INT, True), "max": (U32_INT, True)},
    "HealthTimeoutOverride": {"name": (matching(HEALTH_TIMEOUT_NAME), True), "timeout": (DURATION, True)},
    "BPFConntrackTimeouts": {name: (CT, False) for name in (
        "creationGracePeriod", "tcpSynSent", "tcpEstablished", "tcpFinsSeen", "tcpResetSeen", "udpTimeout",
        "genericTimeout", "icmpTimeout")},
}

# felixconfig.FIELDS, in its order; every field optional (null: unset).
FIELDS: dict[str, Shape] = {
    # process, datastore, health, metrics
    "useInternalDataplaneDriver": BOOL, "dataplaneDriver": STR, "dataplaneWatchdogTimeout": DURATION,
    "featureDetectOverride": KEY_VALUE_LIST, "featureGates": KEY_VALUE_LIST,
    "healthEnabled": BOOL, "healthHost": STR, "healthPort": PORT_NO,
    "healthTimeoutOverrides": list_of(model("HealthTimeoutOverride")),
    "prometheusMetricsEnabled": BOOL, "prometheusMetricsHost": matching(PROMETHEUS_HOST),
    "prometheusMetricsPort": PORT_NO, "prometheusGoMetricsEnabled": BOOL,
    "prometheusProcessMetricsEnabled": BOOL, "prometheusWireGuardMetricsEnabled": BOOL,
    "goGCThreshold": integer(-1, I32), "goMemoryLimitMB": integer(-1, I32), "goMaxProcs": integer(-1, I32),
    "reportingInterval": DURATION, "reportingTTL": DURATION,
    "endpointReportingEnabled": BOOL, "endpointReportingDelay": DURATION, "endpointStatusPathPrefix": STR,
    "usageReportingEnabled": BOOL, "usageReportingInitialDelay": DURATION, "usageReportingInterval": DURATION,
    "requireMTUFile": BOOL, "mtuIfacePattern": REGEXP,
    # logging
    "logPrefix": STR, "logFilePath": STR, "logSeverityFile": LOG_LEVEL, "logSeverityScreen": LOG_LEVEL,
    "logSeveritySys": LOG_LEVEL, "logDebugFilenameRegex": REGEXP,
    "logActionRateLimit": STR, "logActionRateLimitBurst": NON_NEGATIVE, "logDropActionOverride": BOOL,
    # dataplane: common
    "ipv6Support": BOOL, "routeRefreshInterval": DURATION, "interfaceRefreshInterval": DURATION,
    "netlinkTimeout": DURATION, "interfacePrefix": STR, "interfaceExclude": STR,
    "defaultEndpointToHostAction": enum("Drop", "Accept", "Return", any_case=True),
    "failsafeInboundHostPorts": list_of(model("ProtoPort")), "failsafeOutboundHostPorts": list_of(model("ProtoPort")),
    "kubeNodePortRanges": list_of(PORT), "policySyncPathPrefix": STR,
    "natPortRange": PORT, "natOutgoingAddress": ip(4),
    "natOutgoingExclusions": enum("IPPoolsOnly", "IPPoolsAndHostIPs"),
    "deviceRouteSourceAddress": ip(4), "deviceRouteSourceAddressIPv6": ip(6),
    "deviceRouteProtocol": integer(0, 255), "removeExternalRoutes": BOOL,
    "programClusterRoutes": ENABLED_DISABLED, "ipForwarding": ENABLED_DISABLED,
    "externalNodesList": list_of(CIDR), "disableConntrackInvalidCheck": BOOL,
    "routeSource": enum("WorkloadIPs", "CalicoIPAM", any_case=True),
    "routeTableRanges": list_of(model("RouteTableRange")), "routeTableRange": model("RouteTableRange"),
    "routeSyncDisabled": BOOL,
    "serviceLoopPrevention": enum("Drop", "Reject", "Disabled", any_case=True),
    "workloadSourceSpoofing": enum("Disabled", "Any", any_case=True),
    "floatingIPs": ENABLED_DISABLED, "sidecarAccelerationEnabled": BOOL,
    "metadataAddr": STR, "metadataPort": PORT_NO, "openstackRegion": STR,
    "windowsManageFirewallRules": ENABLED_DISABLED, "cgroupV2Path": STR,
    # iptables / nftables
    "chainInsertMode": enum("Insert", "Append", any_case=True),
    "iptablesRefreshInterval": DURATION, "iptablesPostWriteCheckInterval": DURATION,
    "iptablesLockFilePath": STR, "iptablesLockTimeout": DURATION, "iptablesLockProbeInterval": DURATION,
    "ipsetsRefreshInterval": DURATION, "maxIpsetSize": NON_NEGATIVE,
    "iptablesBackend": enum("Auto", "Legacy", "NFT", any_case=True),
    "iptablesFilterAllowAction": ACCEPT_RETURN, "iptablesMangleAllowAction": ACCEPT_RETURN,
    "iptablesFilterDenyAction": DROP_REJECT, "iptablesMarkMask": U32_INT,
    "iptablesNATOutgoingInterfaceFilter": matching(IFACE_FILTER),
    "nftablesMode": enum("Disabled", "Enabled", "Auto"), "nftablesRefreshInterval": DURATION,
    "nftablesFilterAllowAction": ACCEPT_RETURN, "nftablesMangleAllowAction": ACCEPT_RETURN,
    "nftablesFilterDenyAction": DROP_REJECT, "nftablesMarkMask": U32_INT,
    # XDP
    "xdpEnabled": BOOL, "genericXDPEnabled": BOOL, "xdpRefreshInterval": DURATION,
    # overlays
    "ipipEnabled": BOOL, "ipipMTU": NON_NEGATIVE, "vxlanEnabled": BOOL, "vxlanMTU": NON_NEGATIVE,
    "vxlanMTUV6": NON_NEGATIVE, "vxlanPort": PORT_NO, "vxlanVNI": integer(0, 2**24 - 1),
    "allowVXLANPacketsFromWorkloads": BOOL, "allowIPIPPacketsFromWorkloads": BOOL,
    "wireguardEnabled": BOOL, "wireguardEnabledV6": BOOL, "wireguardThreadingEnabled": BOOL,
    "wireguardListeningPort": integer(1, 65535), "wireguardListeningPortV6": integer(1, 65535),
    "wireguardRoutingRulePriority": integer(1, 32765),
    "wireguardInterfaceName": matching(IFACE), "wireguardInterfaceNameV6": matching(IFACE),
    "wireguardMTU": NON_NEGATIVE, "wireguardMTUV6": NON_NEGATIVE, "wireguardHostEncryptionEnabled": BOOL,
    "wireguardKeepAlive": DURATION,
    # eBPF
    "bpfEnabled": BOOL, "bpfDisableUnprivileged": BOOL,
    "bpfLogLevel": enum("Off", "Info", "Debug", any_case=True),
    "bpfConntrackLogLevel": enum("Off", "Debug"),
    "bpfConntrackMode": enum("Auto", "Userspace", "BPFProgram"),
    "bpfConntrackTimeouts": model("BPFConntrackTimeouts"), "bpfLogFilters": STR_MAP, "bpfCTLBLogFilter": STR,
    "bpfDataIfacePattern": REGEXP, "bpfL3IfacePattern": REGEXP, "bpfConnectTimeLoadBalancingEnabled": BOOL,
    "bpfConnectTimeLoadBalancing": enum("TCP", "Enabled", "Disabled"),
    "bpfHostNetworkedNATWithoutCTLB": ENABLED_DISABLED,
    "bpfExternalServiceMode": enum("Tunnel", "DSR", any_case=True),
    "bpfDSROptoutCIDRs": list_of(CIDR), "bpfExtToServiceConnmark": U32_INT,
    "bpfKubeProxyIptablesCleanupEnabled": BOOL, "bpfKubeProxyMinSyncPeriod": DURATION,
    "bpfKubeProxyEndpointSlicesEnabled": BOOL, "bpfKubeProxyHealthzPort": PORT_NO, "bpfPSNATPorts": PORT,
    "bpfMapSizeNATFrontend": NON_NEGATIVE, "bpfMapSizeNATBackend": NON_NEGATIVE,
    "bpfMapSizeNATAffinity": NON_NEGATIVE, "bpfMapSizeRoute": NON_NEGATIVE, "bpfMapSizeConntrack": NON_NEGATIVE,
    "bpfMapSizePerCpuConntrack": NON_NEGATIVE,
    "bpfMapSizeConntrackScaling": enum("Disabled", "DoubleIfFull", any_case=True),
    "bpfMapSizeConntrackCleanupQueue": integer(1, I32),
    "bpfMapSizeIPSets": NON_NEGATIVE, "bpfMapSizeIfState": NON_NEGATIVE, "bpfHostConntrackBypass": BOOL,
    "bpfEnforceRPF": enum("Disabled", "Strict", "Loose", any_case=True),
    "bpfPolicyDebugEnabled": BOOL, "bpfForceTrackPacketsFromIfaces": list_of(matching(IFACE_FILTER)),
    "bpfDisableGROForIfaces": REGEXP, "bpfExcludeCIDRsFromNAT": list_of(CIDR), "bpfExportBufferSizeMB": NON_NEGATIVE,
    "bpfRedirectToPeer": enum("Enabled", "Disabled", "L2Only"),
    "bpfProfiling": ENABLED_DISABLED, "bpfAttachType": enum("TCX", "TC"),
    # flow logs, AWS, debug
    "flowLogsPolicyEvaluationMode": enum("None", "Continuous"),
    "flowLogsFlushInterval": DURATION, "flowLogsCollectorDebugTrace": BOOL, "flowLogsGoldmaneServer": STR,
    "flowLogsLocalReporter": ENABLED_DISABLED,
    "awsSrcDstCheck": enum("DoNothing", "Enable", "Disable"),
    "debugMemoryProfilePath": STR, "debugDisableLogDropping": BOOL, "debugSimulateCalcGraphHangAfter": DURATION,
    "debugSimulateDataplaneHangAfter": DURATION, "debugSimulateDataplaneApplyDelay": DURATION,
    "debugHost": STR, "debugPort": PORT_NO,
}

# ---------------------------------------------------------------- shapes -> checks

Check = Callable[[Any], bool]

# fields._DURATION_RE without the sign (a negative duration is for the model to judge) and with ASCII digits.
_DURATION_RE = re.compile(r"\+?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|μs|ms|s|m|h))+")
_KV_RE = re.compile(r"\s*(\w+)=(.*)", re.ASCII)  # felixconfig._KV_RE with ASCII \s and \w: never more
_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})


def _duration(value: Any) -> bool:
    return value.__class__ is str and (value == "0" or _DURATION_RE.fullmatch(value) is not None)


def _regexp(value: Any) -> bool:
    if value.__class__ is not str:
        return False
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError, ValueError):
        return False
    return True


def _key_value_list(value: Any) -> bool:
    if value.__class__ is not str:
        return False
    for item in value.split(","):
        if item and _KV_RE.fullmatch(item) is None:
            return False
    return True


def _str_map(value: Any) -> bool:
    return value.__class__ is dict and all(k.__class__ is str and v.__class__ is str for k, v in value.items())


def _protocol(value: Any) -> bool:
    return value.__class__ is str and value.isascii() and value.upper() in _PROTOCOLS


def _cidr_or_empty(value: Any) -> bool:
    return value == "" or cidr_of(value, 0)


_SIMPLE: dict[Shape, Check] = {
    BOOL: lambda v: v.__class__ is bool,
    STR: lambda v: v.__class__ is str,
    DURATION: _duration,
    REGEXP: _regexp,
    KEY_VALUE_LIST: _key_value_list,
    PORT: port_ok,
    CIDR: lambda v: cidr_of(v, 0),
    STR_MAP: _str_map,
    PROTOCOL: _protocol,
    CIDR_OR_EMPTY: _cidr_or_empty,
}


def compile_shape(shape: Shape) -> Check:
    """The check of one shape: True only for a (non-null) value the model's type accepts."""
    simple = _SIMPLE.get(shape)
    if simple is not None:
        return simple
    tag = shape[0]
    if tag == "int":
        low, high = shape[1], shape[2]
        return lambda v: v.__class__ is int and low <= v <= high
    if tag == "enum":
        values, any_case = shape[1], shape[2]
        allowed = frozenset(v.lower() for v in values) | {""} if any_case else frozenset(values) | {""}
        if any_case:
            return lambda v: v.__class__ is str and v.isascii() and v.lower() in allowed
        return lambda v: v.__class__ is str and v in allowed
    if tag == "match":
        match = re.compile(shape[1]).fullmatch
        return lambda v: v.__class__ is str and match(v) is not None
    if tag == "ip":
        version = shape[1]
        return lambda v: address_of(v, version)
    if tag == "list":
        item = compile_shape(shape[1])
        return lambda v: v.__class__ is list and all(map(item, v))
    if tag == "model":
        return _model_check(MODELS[shape[1]])
    raise ValueError(f"unknown field shape {shape!r}")


def _model_check(fields: dict[str, tuple[Shape, bool]]) -> Check:
    checks = {name: compile_shape(shape) for name, (shape, _) in fields.items()}
    required = tuple(name for name, (_, needed) in fields.items() if needed)

    def check(value: Any) -> bool:
        if value.__class__ is not dict or not value.keys() <= checks.keys():
            return False
        for name in required:
            if value.get(name) is None:
                return False
        for name, item in value.items():
            if item is not None and not checks[name](item):
                return False
        return True

    return check


_CHECKS: dict[str, Check] = {name: compile_shape(shape) for name, shape in FIELDS.items()}
_IFACE_MATCH = re.compile(IFACE).fullmatch
REGION_LIMIT = 63 - len("openstack-region-")


# ---------------------------------------------------------------- the resource


def spec_ok(spec: dict[str, Any]) -> bool:
    """A FelixConfiguration spec the model accepts: every field, then the cross-field checks."""
    checks = _CHECKS
    for name, value in spec.items():
        check = checks.get(name)
        if check is None or (value is not None and not check(value)):
            return False
    return _cross_checks(spec)


def _cross_checks(spec: dict[str, Any]) -> bool:
    """felixconfig._spec_problems, on a spec whose fields each passed their check."""
    get = spec.get
    ranges = get("kubeNodePortRanges")
    if ranges is not None:
        if len(ranges) > 7:
            return False
        for port in ranges:  # a name (not a number, not a range) is no node port range
            if port.__class__ is str and ":" not in port and not port.isdigit():
                return False
    for cidr in get("externalNodesList") or ():
        if CIDRS(cidr) != 4:
            return False
    region = get("openstackRegion")
    if region and (len(region) > REGION_LIMIT or not dns_label(region)):
        return False
    single, many = get("routeTableRange"), get("routeTableRanges")
    if single is not None and (many is not None or not 1 <= single["min"] <= single["max"] <= 250):
        return False
    total = 0
    for table in many or ():
        low, high = table["min"], table["max"]
        if low > high or low < 1:
            return False
        total += high - low + 1
    if total > 0xFFFF:
        return False
    filters = get("bpfLogFilters")
    return filters is None or all(_IFACE_MATCH(key) is not None for key in filters)


def _felix_configuration(value: dict[str, Any]) -> bool:
    spec = top(value, "FelixConfiguration")
    return spec is not None and metadata_ok(value.get("metadata"), False, subdomain) and spec_ok(spec)


CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {"FelixConfiguration": _felix_configuration}
