"""Fast acceptance of the cluster's infrastructure kinds (see :mod:`.fastpath`): never more lenient than the models.

Restates, for the plain form, ``networkset.NetworkSet`` and ``GlobalNetworkSet``,
``policy.Tier``, ``ippool.IPPool``, ``node.Node``, ``endpoint.HostEndpoint`` and
``cluster.ClusterInformation``: every field, the
defaults the models fill in before their cross-field checks (an IPPool's block
size and allowed uses, a Tier's fixed orders) and those checks. Where a model is
lenient in a way that is awkward to restate (non-ASCII digits in an AS number,
Unicode case folding) the answer is False and the model decides.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from libcalico.syncer.fastpath import (
    CIDRS,
    NAMES,
    PORT_NAMES,
    V3,
    Versions,
    dns_label,
    metadata_ok,
    subdomain,
)
from libcalico.syncer.fastpolicy import order_ok, selector_ok

_EMPTY: dict[str, Any] = {}
_TOP = frozenset({"apiVersion", "kind", "metadata", "spec"})
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}", re.ASCII)  # fields.MAC
_INTERFACE_RE = re.compile(r"[a-zA-Z0-9_.-]{1,15}", re.ASCII)  # endpoint._interface
_WG_KEY_RE = re.compile(r"[A-Za-z0-9+/]{43}=", re.ASCII)  # node.WireguardKey
_ASDOT_RE = re.compile(r"([0-9]+)\.([0-9]+)", re.ASCII)
U32 = 0xFFFFFFFF


def ip_version(text: str) -> int:
    """The version of an IP address (fields._ip), 0 when it is not one."""
    try:
        return ipaddress.ip_address(text).version
    except ValueError:
        return 0


ADDRESSES = Versions(ip_version)


def address_of(value: Any, version: int) -> bool:
    """An IP address string of ``version`` (fields.IPv4Address / IPv6Address; 0: either)."""
    if value.__class__ is not str:
        return False
    found = ADDRESSES.known.get(value)
    if found is None:
        found = ADDRESSES(value)
    return found != 0 and (version == 0 or found == version)


def cidr_of(value: Any, version: int) -> bool:
    """A CIDR or address string, host bits allowed, of ``version`` (fields.CIDR; 0: either)."""
    if value.__class__ is not str:
        return False
    found = CIDRS.known.get(value) or CIDRS(value)
    return found != 0 and (version == 0 or found == version)


def optional_bool(value: Any) -> bool:
    """``bool | None``: a JSON boolean or null (strict models take no 0/1 or "true")."""
    return value is None or value.__class__ is bool


def optional_text(value: Any) -> bool:
    """``str | None``."""
    return value is None or value.__class__ is str


def top(value: dict[str, Any], kind: str, fields: frozenset[str] = _TOP, spec_required: bool = False
        ) -> dict[str, Any] | None:
    """The spec (``{}`` when left out and the model defaults it), or None when not the plain form."""
    if value.get("kind") != kind or value.get("apiVersion") != V3 or not value.keys() <= fields:
        return None
    spec = value.get("spec") if spec_required else value.get("spec", _EMPTY)
    return spec if spec.__class__ is dict else None


def _names(names: Any) -> bool:
    if names.__class__ is not list:
        return False
    for name in names:
        if name.__class__ is not str or (name not in NAMES.ok and not NAMES(name)):
            return False
    return True


# ---------------------------------------------------------------- Tier (policy.Tier)

# policy.STATIC_TIER_ORDERS (a test keeps them equal).
STATIC_TIER_ORDERS = {"default": 1_000_000.0, "kube-admin": 1_000.0, "kube-baseline": 10_000_000.0}
_TIER_SPEC = frozenset({"order", "defaultAction"})
_TIER_ACTIONS = frozenset({"Deny", "Pass"})


def _tier(value: dict[str, Any]) -> bool:
    spec = top(value, "Tier")
    meta: Any = value.get("metadata")
    if spec is None or not spec.keys() <= _TIER_SPEC or not metadata_ok(meta, False, dns_label):
        return False
    order, action = spec.get("order"), spec.get("defaultAction")
    if order is not None and not order_ok(order):
        return False
    if action is not None and (action.__class__ is not str or action not in _TIER_ACTIONS):
        return False
    fixed = STATIC_TIER_ORDERS.get(meta["name"])
    return fixed is None or order is None or float(order) == fixed


# ---------------------------------------------------------------- IPPool (ippool.IPPoolSpec)

# Each spec part's fields in the model's order (fastview lists them so), and as a set.
POOL_FIELDS = ("cidr", "vxlanMode", "ipipMode", "natOutgoing", "disabled", "disableBGPExport", "blockSize",
               "nodeSelector", "namespaceSelector", "allowedUses", "assignmentMode")
POOL_SPEC = frozenset(POOL_FIELDS)
ENCAP_MODES = frozenset({"Always", "CrossSubnet", "Never"})
ALLOWED_USES = frozenset({"Workload", "Tunnel", "LoadBalancer"})
ASSIGNMENT_MODES = frozenset({"Automatic", "Manual"})
DEFAULT_USES = ("Workload", "Tunnel")
_V4_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
_V6_LINK_LOCAL = ipaddress.ip_network("fe80::/10")


def pool_network(cidr: Any) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    """The network of a valid pool CIDR (ippool._pool_cidr: masked, not link-local), else None."""
    if cidr.__class__ is not str or "/" not in cidr:
        return None
    try:
        net = ipaddress.ip_network(cidr, strict=False)
        if ipaddress.ip_address(cidr.split("/", 1)[0]) != net.network_address:
            return None
    except ValueError:
        return None
    if net.overlaps(_V4_LINK_LOCAL if net.version == 4 else _V6_LINK_LOCAL):
        return None
    return net


def pool_setting(spec: dict[str, Any], field: str, default: str) -> Any:
    """A mode or selector with Calico's default (an empty string means the default, as the model reads it)."""
    value = spec.get(field, default)
    return default if value == "" else value


def _ippool(value: dict[str, Any]) -> bool:
    spec = top(value, "IPPool", spec_required=True)
    if spec is None or not spec.keys() <= POOL_SPEC or not metadata_ok(value.get("metadata"), False, subdomain):
        return False
    net = pool_network(spec.get("cidr"))
    if net is None:
        return False
    vxlan, ipip = pool_setting(spec, "vxlanMode", "Never"), pool_setting(spec, "ipipMode", "Never")
    if vxlan.__class__ is not str or vxlan not in ENCAP_MODES or ipip.__class__ is not str or ipip not in ENCAP_MODES:
        return False
    mode = pool_setting(spec, "assignmentMode", "Automatic")
    if mode.__class__ is not str or mode not in ASSIGNMENT_MODES:
        return False
    node_selector = pool_setting(spec, "nodeSelector", "all()")
    namespace_selector = spec.get("namespaceSelector")
    if not selector_ok(node_selector) or (namespace_selector is not None and not selector_ok(namespace_selector)):
        return False
    get = spec.get
    disabled, no_export = get("disabled"), get("disableBGPExport")
    if get("natOutgoing", False).__class__ is not bool or not optional_bool(disabled) or not optional_bool(no_export):
        return False
    block = get("blockSize")
    if block is not None and (block.__class__ is not int or not 0 <= block <= 128):
        return False
    uses = get("allowedUses")
    if uses is not None and (uses.__class__ is not list or not all(
            use.__class__ is str and use in ALLOWED_USES for use in uses)):
        return False
    # The model's after-validator: defaults first, then the cross-field checks.
    v4 = net.version == 4
    block = block or (26 if v4 else 122)
    low, high = (20, 32) if v4 else (116, 128)
    if not low <= block <= high or (not disabled and net.prefixlen > block):
        return False
    if (vxlan != "Never" and ipip != "Never") or (not v4 and ipip != "Never"):
        return False
    uses = uses or DEFAULT_USES
    if len(set(uses)) != len(uses):
        return False
    if "LoadBalancer" in uses:
        return (len(uses) == 1 and ipip == "Never" and vxlan == "Never" and not no_export
                and node_selector == "all()")
    return True


# ---------------------------------------------------------------- Node (node.Node)

NODE_TOP = _TOP | {"status"}
NODE_FIELDS = ("bgp", "ipv4VXLANTunnelAddr", "vxlanTunnelMACAddr", "ipv6VXLANTunnelAddr", "vxlanTunnelMACAddrV6",
               "orchRefs", "wireguard", "addresses", "interfaceName")
BGP_FIELDS = ("asNumber", "ipv4Address", "ipv6Address", "ipv4IPIPTunnelAddr", "routeReflectorClusterID")
WIREGUARD_FIELDS = ("interfaceIPv4Address", "interfaceIPv6Address")
STATUS_FIELDS = ("wireguardPublicKey", "wireguardPublicKeyV6", "podCIDRs")
ORCH_REF_FIELDS = ("nodeName", "orchestrator")
ADDRESS_FIELDS = ("address", "type")
NODE_SPEC, NODE_BGP, NODE_WIREGUARD, NODE_STATUS, ORCH_REF, NODE_ADDRESS = map(frozenset, (
    NODE_FIELDS, BGP_FIELDS, WIREGUARD_FIELDS, STATUS_FIELDS, ORCH_REF_FIELDS, ADDRESS_FIELDS))
ADDRESS_TYPES = frozenset({"CalicoNodeIP", "InternalIP", "ExternalIP"})


def as_number(value: Any) -> int | None:
    """The number of a valid AS number (fields._as_number), ASCII digits only; None otherwise."""
    cls = value.__class__
    if cls is int:
        return value if 0 <= value <= U32 else None
    if cls is not str or not value.isascii():
        return None
    if value.isdigit():
        number = int(value)
        return number if number <= U32 else None
    found = _ASDOT_RE.fullmatch(value)
    if found is None:
        return None
    high, low = int(found.group(1)), int(found.group(2))
    return (high << 16) | low if high <= 0xFFFF and low <= 0xFFFF else None


def _optional_address(value: Any, version: int) -> bool:
    return value is None or address_of(value, version)


def _optional_mac(value: Any) -> bool:
    return value is None or (value.__class__ is str and _MAC_RE.fullmatch(value) is not None)


def _node_bgp(bgp: Any) -> bool:
    if bgp.__class__ is not dict or not bgp.keys() <= NODE_BGP:
        return False
    get = bgp.get
    number = get("asNumber")
    if number is not None and as_number(number) is None:
        return False
    v4, v6 = get("ipv4Address"), get("ipv6Address")
    if (v4 is not None and not cidr_of(v4, 4)) or (v6 is not None and not cidr_of(v6, 6)):
        return False
    if not _optional_address(get("ipv4IPIPTunnelAddr"), 4) or not _optional_address(
            get("routeReflectorClusterID"), 4):
        return False
    return any(v is not None for v in bgp.values())  # "bgp must not be empty"


def _list_of(items: Any, check: Callable[[Any], bool]) -> bool:
    if items.__class__ is not list:
        return False
    for item in items:
        if not check(item):
            return False
    return True


def _orch_ref(ref: Any) -> bool:
    return (ref.__class__ is dict and ref.keys() <= ORCH_REF and ref.get("orchestrator").__class__ is str
            and optional_text(ref.get("nodeName")))


def _node_address(addr: Any) -> bool:
    if addr.__class__ is not dict or not addr.keys() <= NODE_ADDRESS or not cidr_of(addr.get("address"), 0):
        return False
    kind = addr.get("type")
    return kind is None or (kind.__class__ is str and kind in ADDRESS_TYPES)


def _wg_key(value: Any) -> bool:
    return value is None or (value.__class__ is str and _WG_KEY_RE.fullmatch(value) is not None)


def _node(value: dict[str, Any]) -> bool:
    spec = top(value, "Node", NODE_TOP)
    if spec is None or not spec.keys() <= NODE_SPEC or not metadata_ok(value.get("metadata"), False, subdomain):
        return False
    get = spec.get
    bgp = get("bgp")
    if bgp is not None and not _node_bgp(bgp):
        return False
    if not (_optional_address(get("ipv4VXLANTunnelAddr"), 4) and _optional_address(get("ipv6VXLANTunnelAddr"), 6)
            and _optional_mac(get("vxlanTunnelMACAddr")) and _optional_mac(get("vxlanTunnelMACAddrV6"))
            and optional_text(get("interfaceName"))):
        return False
    refs, addresses, wireguard = get("orchRefs"), get("addresses"), get("wireguard")
    if (refs is not None and not _list_of(refs, _orch_ref)) or (
            addresses is not None and not _list_of(addresses, _node_address)):
        return False
    if wireguard is not None and (wireguard.__class__ is not dict or not wireguard.keys() <= NODE_WIREGUARD
                                  or not _optional_address(wireguard.get("interfaceIPv4Address"), 4)
                                  or not _optional_address(wireguard.get("interfaceIPv6Address"), 6)):
        return False
    status = value.get("status")
    if status is None:
        return True
    if status.__class__ is not dict or not status.keys() <= NODE_STATUS:
        return False
    cidrs = status.get("podCIDRs")
    return (_wg_key(status.get("wireguardPublicKey")) and _wg_key(status.get("wireguardPublicKeyV6"))
            and (cidrs is None or _list_of(cidrs, lambda c: cidr_of(c, 0))))


# ---------------------------------------------------------------- HostEndpoint (endpoint.HostEndpoint)

HEP_FIELDS = ("node", "interfaceName", "expectedIPs", "profiles", "ports")
PORT_FIELDS = ("name", "protocol", "port")
HEP_SPEC, ENDPOINT_PORT = frozenset(HEP_FIELDS), frozenset(PORT_FIELDS)
# Protocols a named port may have (endpoint.EndpointPort: TCP, UDP or SCTP), in the forms taken here.
_PORT_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP", "6", "17", "132"})
_PORT_PROTOCOL_NUMBERS = frozenset({6, 17, 132})


def _endpoint_port(port: Any) -> bool:
    if port.__class__ is not dict or not port.keys() <= ENDPOINT_PORT:
        return False
    name, protocol, number = port.get("name"), port.get("protocol"), port.get("port")
    if name.__class__ is not str or (name not in PORT_NAMES.ok and not PORT_NAMES(name)):
        return False
    if not ((protocol.__class__ is str and protocol in _PORT_PROTOCOLS)
            or (protocol.__class__ is int and protocol in _PORT_PROTOCOL_NUMBERS)):
        return False
    return number.__class__ is int and 0 < number < 65536


def _host_endpoint(value: dict[str, Any]) -> bool:
    spec = top(value, "HostEndpoint", spec_required=True)
    if spec is None or not spec.keys() <= HEP_SPEC or not metadata_ok(value.get("metadata"), False, subdomain):
        return False
    get = spec.get
    node, iface, ips = get("node"), get("interfaceName"), get("expectedIPs")
    if node.__class__ is not str or (node not in NAMES.ok and not NAMES(node)):
        return False  # "no node has been specified" when left out
    if iface is not None and (iface.__class__ is not str or (iface != "*" and _INTERFACE_RE.fullmatch(iface) is None)):
        return False
    if ips is not None and not _list_of(ips, lambda ip: address_of(ip, 0)):
        return False
    if not iface and not ips:
        return False  # "no interface or expected IPs have been specified"
    profiles, ports = get("profiles"), get("ports")
    return (profiles is None or _names(profiles)) and (ports is None or _list_of(ports, _endpoint_port))


# ---------------------------------------------------------------- ClusterInformation (cluster.ClusterInformation)

CLUSTER_INFO_SPEC = frozenset({"clusterGUID", "clusterType", "calicoVersion", "datastoreReady", "variant"})


def _only_default(name: str) -> bool:
    return name == "default"


def _cluster_information(value: dict[str, Any]) -> bool:
    spec = top(value, "ClusterInformation")
    if (spec is None or not spec.keys() <= CLUSTER_INFO_SPEC
            or not metadata_ok(value.get("metadata"), False, _only_default)):
        return False
    get = spec.get
    return (optional_text(get("clusterGUID")) and optional_text(get("clusterType"))
            and optional_text(get("calicoVersion")) and optional_text(get("variant"))
            and optional_bool(get("datastoreReady")))


# ---------------------------------------------------------------- NetworkSet, GlobalNetworkSet


def _network_set(kind: str, namespaced: bool) -> Callable[[dict[str, Any]], bool]:
    def check(value: dict[str, Any]) -> bool:
        if value.get("kind") != kind or value.get("apiVersion") != V3:
            return False
        spec = value.get("spec", _EMPTY)
        meta: Any = value.get("metadata")
        if spec.__class__ is not dict or not value.keys() <= _TOP or not metadata_ok(meta, namespaced, subdomain):
            return False
        labels = meta.get("labels")
        if labels is not None and RESERVED_NAMESPACE_LABEL in labels:
            return False
        if not spec.keys() <= _NETSET_SPEC:
            return False
        nets = spec.get("nets")
        if nets is None:
            return True
        if nets.__class__ is not list:
            return False
        known = CIDRS.known
        for net in nets:
            if net.__class__ is not str or not (known.get(net) or CIDRS(net)):
                return False
        return True

    return check


_NETSET_SPEC = frozenset({"nets"})
RESERVED_NAMESPACE_LABEL = "projectcalico.org/namespace"  # networkset.RESERVED_NAMESPACE_LABEL


CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "NetworkSet": _network_set("NetworkSet", True),
    "GlobalNetworkSet": _network_set("GlobalNetworkSet", False),
    "Tier": _tier,
    "IPPool": _ippool,
    "Node": _node,
    "HostEndpoint": _host_endpoint,
    "ClusterInformation": _cluster_information,
}
