"""What the calculation graph tells the dataplane (Calico's ``felix/proto`` messages, as dataclasses).

How it works::

    syncer updates ──► calc graph (pure) ──► messages below ──► dataplane (nftables, routes, links)

The calculation graph resolves everything the kernel cannot: selectors become
IP-set ids, named ports become IP-set ids of (address, protocol, port) members,
policies are ordered into tiers per endpoint. The dataplane only renders and
applies. Every message is a frozen dataclass; ids are strings.

Rule semantics (one :class:`Rule` matches a packet when ALL of its non-empty
fields match):

- ``src_nets``/``dst_nets``: the address is in ANY of the nets;
  ``not_src_nets``/``not_dst_nets``: in NONE of them.
- ``src_ip_set_ids``/``dst_ip_set_ids``: the address is in EVERY listed set
  (a rule's selector, namespace selector and service-account selector are
  combined into one set by the graph, so there is usually one);
  ``not_*_ip_set_ids``: in NONE of them.
- ``src_ports``/``dst_ports`` and ``*_named_port_ip_set_ids``: the port is in
  ANY of the ranges OR (address, protocol, port) is in ANY of the named-port
  sets; ``not_*`` variants: in none of the ranges and none of the sets.
- ``protocol``: number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 132 SCTP, 136 UDPLite).
- ``icmp_type``/``icmp_code`` (code only with type); ``not_icmp_*`` likewise.
- ``action``: ``allow`` (accept for this direction, stop), ``deny`` (drop), ``log``
  (log and continue), ``pass`` (skip the rest of this tier, go to the next).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

# Every message class has a docstring: @dataclass gives one without it an inspect.signature() text,
# ~50 us a class at import (~1 ms of start-up for this module, measured).


class IPSetType(enum.Enum):
    NET = "net"  # members are CIDRs (endpoint addresses as /32 or /128, network-set nets)
    IP_AND_PORT = "ip-and-port"  # members are "addr,proto:port" for named ports


@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive port range; ``first == last`` for a single port."""

    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule; see the module docstring for the matching semantics."""

    action: str
    ip_version: int | None = None
    protocol: int | None = None
    not_protocol: int | None = None
    src_nets: tuple[str, ...] = ()
    not_src_nets: tuple[str, ...] = ()
    src_ip_set_ids: tuple[str, ...] = ()
    not_src_ip_set_ids: tuple[str, ...] = ()
    src_ports: tuple[PortRange, ...] = ()
    not_src_ports: tuple[PortRange, ...] = ()
    src_named_port_ip_set_ids: tuple[str, ...] = ()
    not_src_named_port_ip_set_ids: tuple[str, ...] = ()
    dst_nets: tuple[str, ...] = ()
    not_dst_nets: tuple[str, ...] = ()
    dst_ip_set_ids: tuple[str, ...] = ()
    not_dst_ip_set_ids: tuple[str, ...] = ()
    dst_ports: tuple[PortRange, ...] = ()
    not_dst_ports: tuple[PortRange, ...] = ()
    dst_named_port_ip_set_ids: tuple[str, ...] = ()
    not_dst_named_port_ip_set_ids: tuple[str, ...] = ()
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp_type: int | None = None
    not_icmp_code: int | None = None
    # Where the rule came from, for logs and "why was this dropped": e.g. "default/np1/ingress/0".
    rule_id: str = ""


@dataclass(frozen=True, slots=True)
class PolicyID:
    """A policy's identity: its tier and its name."""

    tier: str
    name: str  # namespaced policies: "<namespace>/<name>"; staged policies never reach the dataplane


@dataclass(frozen=True, slots=True)
class ActivePolicyUpdate:
    """A policy that applies to a local endpoint, with its compiled rules (new or changed)."""

    id: PolicyID
    inbound_rules: tuple[Rule, ...]
    outbound_rules: tuple[Rule, ...]
    namespace: str | None = None
    # GlobalNetworkPolicy doNotTrack / preDNAT (host endpoints only; see HostEndpoint's extra tier lists).
    untracked: bool = False
    pre_dnat: bool = False


@dataclass(frozen=True, slots=True)
class ActivePolicyRemove:
    """A policy no longer applies to any local endpoint."""

    id: PolicyID


@dataclass(frozen=True, slots=True)
class ActiveProfileUpdate:
    """A profile that applies to a local endpoint, with its compiled rules (new or changed)."""

    id: str  # profile name, e.g. "kns.default"
    inbound_rules: tuple[Rule, ...]
    outbound_rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class ActiveProfileRemove:
    """A profile no longer applies to any local endpoint."""

    id: str


@dataclass(frozen=True, slots=True)
class IPSetUpdate:
    """Replace a set's whole membership (first time it is needed, or after a resync)."""

    id: str
    type: IPSetType
    members: frozenset[str]


@dataclass(frozen=True, slots=True)
class IPSetDeltaUpdate:
    """Members added to and removed from a set the dataplane already has."""

    id: str
    added: frozenset[str]
    removed: frozenset[str]


@dataclass(frozen=True, slots=True)
class IPSetRemove:
    """A set is no longer referenced."""

    id: str


@dataclass(frozen=True, slots=True)
class TierInfo:
    """The policies of one tier that apply to an endpoint, in order, per direction."""

    name: str
    ingress_policies: tuple[str, ...]  # PolicyID.name values, ordered
    egress_policies: tuple[str, ...]
    default_action: str = "deny"  # "deny" or "pass" (Tier.spec.defaultAction)


@dataclass(frozen=True, slots=True)
class WorkloadEndpointID:
    """A workload endpoint's identity."""

    orchestrator: str
    workload: str  # "<namespace>/<pod>"
    endpoint: str  # "eth0"


@dataclass(frozen=True, slots=True)
class WorkloadEndpoint:
    """A local workload endpoint: its interface, addresses, profiles and policy tiers."""

    name: str  # host-side interface, e.g. "cali1234567890a"
    mac: str | None
    ipv4_nets: tuple[str, ...]
    ipv6_nets: tuple[str, ...]
    profile_ids: tuple[str, ...]
    tiers: tuple[TierInfo, ...]
    state: str = "active"
    # The key in the datastore, for status reporting.
    key: str = ""
    allow_spoofed_source_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class WorkloadEndpointUpdate:
    """A local workload endpoint, new or changed."""

    id: WorkloadEndpointID
    endpoint: WorkloadEndpoint


@dataclass(frozen=True, slots=True)
class WorkloadEndpointRemove:
    """A local workload endpoint is gone."""

    id: WorkloadEndpointID


@dataclass(frozen=True, slots=True)
class HostEndpoint:
    """A host endpoint of this node: its interface, expected addresses, profiles and policy tiers."""

    name: str  # interface name, or "*" for all host interfaces
    expected_ipv4_addrs: tuple[str, ...]
    expected_ipv6_addrs: tuple[str, ...]
    profile_ids: tuple[str, ...]
    tiers: tuple[TierInfo, ...]
    key: str = ""
    # Calico's extra host-endpoint tier lists: doNotTrack policies (raw table), preDNAT policies
    # (ingress, before DNAT) and the applyOnForward subset of ``tiers`` (forwarded traffic).
    untracked_tiers: tuple[TierInfo, ...] = ()
    pre_dnat_tiers: tuple[TierInfo, ...] = ()
    forward_tiers: tuple[TierInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class HostEndpointUpdate:
    """A host endpoint of this node, new or changed."""

    id: str  # the HostEndpoint resource name
    endpoint: HostEndpoint


@dataclass(frozen=True, slots=True)
class HostEndpointRemove:
    """A host endpoint of this node is gone."""

    id: str


class RouteType(enum.Enum):
    LOCAL_WORKLOAD = "local-workload"
    REMOTE_WORKLOAD = "remote-workload"  # a remote node's block (or borrowed /32) via VXLAN
    LOCAL_HOST = "local-host"
    REMOTE_HOST = "remote-host"


@dataclass(frozen=True, slots=True)
class RouteUpdate:
    """A route to program (or to know about, for a local workload), new or changed."""

    type: RouteType
    dst: str  # CIDR
    dst_node_name: str = ""
    dst_node_ip: str = ""
    nat_outgoing: bool = False
    ip_pool_type: str = ""  # "vxlan", "ipip", "none"
    local_workload: bool = False
    # The destination node's address is in this node's own subnet (for CrossSubnet encapsulation).
    same_subnet: bool = False


@dataclass(frozen=True, slots=True)
class RouteRemove:
    """A route is gone."""

    dst: str


@dataclass(frozen=True, slots=True)
class VXLANTunnelEndpointUpdate:
    """A node's VXLAN tunnel endpoint, new or changed."""

    node: str
    mac: str
    ipv4_addr: str  # the node's VTEP (tunnel) address
    parent_device_ip: str  # the node's underlay address


@dataclass(frozen=True, slots=True)
class VXLANTunnelEndpointRemove:
    """A node's VXLAN tunnel endpoint is gone."""

    node: str


@dataclass(frozen=True, slots=True)
class IPAMPoolUpdate:
    """An IP pool, new or changed."""

    id: str  # pool name
    cidr: str
    masquerade: bool
    ipip_mode: str = "Never"
    vxlan_mode: str = "Never"


@dataclass(frozen=True, slots=True)
class IPAMPoolRemove:
    """An IP pool is gone."""

    id: str


@dataclass(frozen=True, slots=True)
class ConfigUpdate:
    """The effective Felix configuration (merged from every source) changed."""

    config: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EndpointsReady:
    """Before the first InSync: the configuration, pools and every local endpoint of the first complete
    snapshot have been sent, final; its policies, profiles and IP sets follow, then InSync."""


@dataclass(frozen=True, slots=True)
class PoliciesReady:
    """Before the first InSync, after EndpointsReady: every active policy and profile of the first complete
    snapshot has been sent, compiled; its IP sets, routes and the rest follow, then InSync."""


@dataclass(frozen=True, slots=True)
class InSync:
    """The graph has sent everything for the first complete snapshot."""


Message = (
    ActivePolicyUpdate | ActivePolicyRemove | ActiveProfileUpdate | ActiveProfileRemove
    | IPSetUpdate | IPSetDeltaUpdate | IPSetRemove
    | WorkloadEndpointUpdate | WorkloadEndpointRemove | HostEndpointUpdate | HostEndpointRemove
    | RouteUpdate | RouteRemove | VXLANTunnelEndpointUpdate | VXLANTunnelEndpointRemove
    | IPAMPoolUpdate | IPAMPoolRemove | ConfigUpdate | EndpointsReady | PoliciesReady | InSync
)
