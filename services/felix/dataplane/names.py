"""Names of Calico's nftables objects (chains, sets, maps), following Felix's prefixes.

Chains: ``cali-tw-<iface>`` / ``cali-fw-<iface>`` (to / from a workload),
``cali-th-<iface>`` / ``cali-fh-<iface>`` (to / from a host endpoint),
``cali-pi-<tier>/<policy>`` / ``cali-po-…`` (policy inbound / outbound),
``cali-pri-<profile>`` / ``cali-pro-…`` (profile inbound / outbound).
Sets: ``cali40s-<id>`` / ``cali60s-<id>`` (the addresses of one IP set id, per IP
version, in a plain hash set), ``cali40i-`` / ``cali60i-`` (the same while the
set also holds wider nets: an interval set) and ``cali40n-`` / ``cali60n-``
(named-port members).

nftables identifiers may hold letters, digits and ``/ - _ .``; a name that
would need anything else (or is very long) is replaced by a stable hash,
``<prefix>_<base32 of sha224>``, as Felix does for iptables chain names.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re

TABLE_FAMILY = "inet"
TABLE_NAME = "calico"

_SAFE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9/_.\-]*$")
_IFACE = re.compile(r"^[A-Za-z0-9_.\-:@]{1,15}$")
MAX_READABLE = 200

# Interface name Felix uses for the all-interfaces host endpoint (too long to be a real interface).
ALL_INTERFACES = "any-interface-at-all"


def _name(prefix: str, text: str) -> str:
    return prefix + _suffix(text)


@functools.lru_cache(maxsize=1 << 15)
def _suffix(text: str) -> str:
    """``text`` itself, or ``_<hash>`` when it cannot be part of a name (computed once per text)."""
    if _SAFE.match(text) and len(text) <= MAX_READABLE:
        return text
    digest = hashlib.sha224(text.encode()).digest()
    return "_" + base64.b32encode(digest[:20]).decode().lower()  # 20 bytes: exactly the 32 characters kept


def valid_iface(name: str) -> bool:
    """True when ``name`` is a legal Linux interface name we can put in a rule."""
    return bool(_IFACE.match(name))


def policy_chain(tier: str, name: str, inbound: bool) -> str:
    """``cali-pi-<tier>/<name>`` (inbound) or ``cali-po-…`` (outbound)."""
    return _name("cali-pi-" if inbound else "cali-po-", f"{tier}/{name}")


def profile_chain(name: str, inbound: bool) -> str:
    """``cali-pri-<profile>`` (inbound) or ``cali-pro-<profile>`` (outbound)."""
    return _name("cali-pri-" if inbound else "cali-pro-", name)


def workload_chain(iface: str, to_workload: bool) -> str:
    """``cali-tw-<iface>`` (to the workload) or ``cali-fw-<iface>`` (from it)."""
    return _name("cali-tw-" if to_workload else "cali-fw-", iface)


def host_chain(iface: str, to_host_iface: bool) -> str:
    """``cali-th-<iface>`` (out of the host through it) or ``cali-fh-<iface>`` (into the host from it)."""
    return _name("cali-th-" if to_host_iface else "cali-fh-", iface)


def ipset_name(set_id: str, version: int, named_port: bool, interval: bool = False) -> str:
    """The nftables set holding the IPv``version`` members of IP set ``set_id``.

    ``interval``: the variant for members that include nets wider than one address.
    """
    kind = "n" if named_port else "i" if interval else "s"
    return _name(f"cali{version}0{kind}-", set_id)


def ipset_variants(set_id: str) -> tuple[str, ...]:
    """Every nftables set name IP set ``set_id`` can have (both versions, each kind)."""
    suffix = _suffix(set_id)
    return tuple(prefix + suffix for prefix in _IPSET_PREFIXES)


_IPSET_PREFIXES = tuple(f"cali{version}0{kind}-" for version in (4, 6) for kind in "sin")


# Static objects.
CHAIN_FORWARD = "filter-FORWARD"
CHAIN_INPUT = "filter-INPUT"
CHAIN_OUTPUT = "filter-OUTPUT"
CHAIN_POSTROUTING = "nat-POSTROUTING"
CHAIN_WL_TO_HOST = "cali-wl-to-host"
CHAIN_FAILSAFE_IN = "cali-failsafe-in"
CHAIN_FAILSAFE_OUT = "cali-failsafe-out"
CHAIN_NAT_OUTGOING = "cali-nat-outgoing"
MAP_FROM_WL = "cali-from-wl-dispatch"
MAP_TO_WL = "cali-to-wl-dispatch"
MAP_FROM_HEP = "cali-from-hep-dispatch"
MAP_TO_HEP = "cali-to-hep-dispatch"
SET_VXLAN_HOSTS = "cali40-all-vxlan-net"


def pool_set(version: int, masquerade_only: bool) -> str:
    """The set of IPAM pool CIDRs of one IP version (all pools, or the natOutgoing ones)."""
    return f"cali{version}0-{'masq' if masquerade_only else 'all'}-ipam-pools"
