"""Calico's IPAM datastore keys (``/calico/ipam/v2/...``), built and parsed.

::

    /calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26        a block: its allocations
    /calico/ipam/v2/host/<node>/ipv4/block/10.0.0.0-26       a node's affinity to that block
    /calico/ipam/v2/handle/<handle id>                       block CIDR -> count for one handle
    /calico/ipam/v2/config                                   strict_affinity, auto_allocate_blocks, ...
"""

from __future__ import annotations

import ipaddress

from libcalico.datastore.keys import IPAM_ROOT

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

CONFIG_KEY = f"{IPAM_ROOT}config"
HANDLE_PREFIX = f"{IPAM_ROOT}handle/"
HOST_PREFIX = f"{IPAM_ROOT}host/"
ASSIGNMENT_PREFIX = f"{IPAM_ROOT}assignment/"


def cidr_segment(net: IPNetwork) -> str:
    """The key segment of a block CIDR: ``10.0.0.0/26`` becomes ``10.0.0.0-26``."""
    return f"{net.network_address}-{net.prefixlen}"


def parse_cidr_segment(segment: str) -> IPNetwork:
    """The CIDR a key segment names; raise ValueError for anything else."""
    addr, sep, plen = segment.rpartition("-")
    if not sep:
        raise ValueError(f"{segment!r} is not a block CIDR segment")
    return ipaddress.ip_network(f"{addr}/{plen}")


def block_prefix(version: int) -> str:
    """Where every block of one IP version lives."""
    return f"{ASSIGNMENT_PREFIX}ipv{version}/block/"


def block_key(net: IPNetwork) -> str:
    """The key of one block."""
    return f"{block_prefix(net.version)}{cidr_segment(net)}"


def parse_block_key(key: str) -> IPNetwork:
    """The CIDR of a block key; raise ValueError for any other key."""
    for version in (4, 6):
        prefix = block_prefix(version)
        if key.startswith(prefix):
            return parse_cidr_segment(key[len(prefix):])
    raise ValueError(f"{key!r} is not an IPAM block key")


def affinity_prefix(host: str | None = None, version: int | None = None) -> str:
    """Where the affinities of every host, of one host, or of one host and version live."""
    if host is None:
        return HOST_PREFIX
    if version is None:
        return f"{HOST_PREFIX}{host}/"
    return f"{HOST_PREFIX}{host}/ipv{version}/block/"


def affinity_key(host: str, net: IPNetwork) -> str:
    """The key of one host's affinity to one block."""
    return f"{affinity_prefix(host, net.version)}{cidr_segment(net)}"


def parse_affinity_key(key: str) -> tuple[str, IPNetwork]:
    """The host and block CIDR of an affinity key; raise ValueError for any other key."""
    if not key.startswith(HOST_PREFIX):
        raise ValueError(f"{key!r} is not an IPAM affinity key")
    parts = key[len(HOST_PREFIX):].split("/")
    if len(parts) != 4 or parts[1] not in ("ipv4", "ipv6") or parts[2] != "block" or not parts[0]:
        raise ValueError(f"{key!r} is not an IPAM affinity key")
    return parts[0], parse_cidr_segment(parts[3])


def handle_key(handle: str) -> str:
    """The key of one handle."""
    if not handle or "/" in handle:
        raise ValueError(f"invalid IPAM handle {handle!r}: must be non-empty and contain no '/'")
    return f"{HANDLE_PREFIX}{handle}"


def parse_handle_key(key: str) -> str:
    """The handle id of a handle key; raise ValueError for any other key."""
    if not key.startswith(HANDLE_PREFIX) or "/" in key[len(HANDLE_PREFIX):]:
        raise ValueError(f"{key!r} is not an IPAM handle key")
    return key[len(HANDLE_PREFIX):]
