"""IP set members → nftables set elements (one set per IP set id and IP version).

How it works: members arrive as strings (``10.65.0.2/32``, ``10.0.0.0/8``,
``fd00::1/128``, or ``10.65.0.2,tcp:8080`` for named ports). Each is parsed
once (a bounded cache shares the parse between the many sets an address is
in). The elements to program are the members of one IP version, written the
way ``nft`` lists them (a host address without ``/32``).

The kind of nft set follows the content: while every member of a version is
a single address, the set is a plain hash set (``cali40s-<id>``); once a
wider net is among them, an interval set (``cali40i-<id>``) minus any net
already covered by a larger member (interval sets reject overlaps). Plain
sets matter for speed: before it adds or deletes any element, nft 1.0.6
reads every element of every interval set in the table (measured: 140 ms
per change with 47,000 members in interval sets, 1.2 ms in hash sets), and
loading them is 2.5x slower.
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import re
import socket
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from services.felix.dataplane import names
from services.felix.dataplane.errors import RenderError
from services.felix.messages import IPSetType

_PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132, "udplite": 136}


@dataclass(frozen=True, slots=True)
class SetDef:
    """An nftables set's declaration."""

    name: str
    type: str
    interval: bool

    def declaration(self) -> str:
        """The ``{ type …; flags …; }`` block for ``add set``."""
        flags = " flags interval;" if self.interval else ""
        return f"{{ type {self.type};{flags} }}"


@dataclass(frozen=True, slots=True)
class MapDef:
    """A verdict map keyed by interface name."""

    name: str
    type: str = "ifname : verdict"

    def declaration(self) -> str:
        """The ``{ type … }`` block for ``add map``."""
        return f"{{ type {self.type}; }}"


@functools.lru_cache(maxsize=1 << 16)
def setdef_for(name: str) -> SetDef:
    """The declaration implied by a set's name prefix (see :mod:`names`); made once per name (a set is
    refreshed at every change of its members)."""
    if name.startswith("cali40s-"):
        return SetDef(name, "ipv4_addr", False)
    if name.startswith("cali60s-"):
        return SetDef(name, "ipv6_addr", False)
    if name.startswith(("cali40i-", "cali40-")):
        return SetDef(name, "ipv4_addr", True)
    if name.startswith(("cali60i-", "cali60-")):
        return SetDef(name, "ipv6_addr", True)
    if name.startswith("cali40n-"):
        return SetDef(name, "ipv4_addr . inet_proto . inet_service", False)
    if name.startswith("cali60n-"):
        return SetDef(name, "ipv6_addr . inet_proto . inet_service", False)
    raise RenderError(name, "not a Calico set name")


class _Member(NamedTuple):
    """One parsed member (a tuple: half the cost of a frozen dataclass to make, 10,000 at a time)."""

    version: int
    start: int
    end: int
    text: str
    kind: int  # 2 * version, plus 1 for a net wider than one address (named-port members: never)


_TEXT = operator.itemgetter(3)
_KIND = operator.itemgetter(4)
_new_member = tuple.__new__  # _new_member(_Member, (...)): half the cost of _Member(...), 20,000 at a time


def _fast_host_v4(member: str) -> _Member | None:
    """``a.b.c.d`` or ``a.b.c.d/nn`` without ipaddress (most members are pod IPs)."""
    addr, slash, length = member.partition("/")
    try:
        packed = _inet_pton(_AF_INET, addr)  # accepts only the canonical dotted quad (no leading zeros)
    except OSError:
        return None
    value = _from_bytes(packed, "big")
    if not slash or length == "32":
        return _new_member(_Member, (4, value, value, addr, 8))
    if not (length.isascii() and length.isdigit() and len(length) <= 2 and int(length) < 32):
        return None
    host_bits = 32 - int(length)
    start = value >> host_bits << host_bits
    network = addr if start == value else _inet_ntop(_AF_INET, start.to_bytes(4, "big"))
    return _new_member(_Member, (4, start, start | ((1 << host_bits) - 1), f"{network}/{int(length)}", 9))


_inet_pton, _inet_ntop, _AF_INET, _from_bytes = socket.inet_pton, socket.inet_ntop, socket.AF_INET, int.from_bytes


def parse_member(member: str, set_type: IPSetType, where: str = "") -> _Member:
    """Parse one member string of a set of ``set_type``; raise RenderError when malformed."""
    cache = _PARSED[set_type]
    parsed = cache.get(member)
    if parsed is None:
        parsed = _parse(member, set_type)
        if parsed is None:
            expected = "a CIDR or address" if set_type is IPSetType.NET else "addr,proto:port (e.g. 10.0.0.1,tcp:80)"
            raise RenderError(where or "IP set", f"member {member!r} is not {expected}")
        if len(cache) >= _PARSED_LIMIT:
            cache.clear()
        cache[member] = parsed
    return parsed


# Parsed members, shared by every set an address is in (an address is typically in several).
_PARSED: dict[IPSetType, dict[str, _Member]] = {t: {} for t in IPSetType}
_PARSED_LIMIT = 1 << 17


def _fast_named_port_v4(member: str) -> _Member | None:
    """``a.b.c.d,tcp:80`` without ipaddress (most named-port members)."""
    addr_text, _, proto_port = member.partition(",")
    proto_text, _, port_text = proto_port.rpartition(":")
    proto = _PROTOCOLS.get(proto_text.lower() or "tcp")
    if proto is None or not (port_text.isascii() and port_text.isdigit()):
        return None
    port = int(port_text)
    if port > 65535:
        return None
    if "/" in addr_text:
        host = _fast_host_v4(addr_text)
        if host is None or host.start != host.end:
            return None
        addr_text = host.text
    else:  # the usual bare address: only checked (a third of the cost of parsing it as a host member)
        try:
            _inet_pton(_AF_INET, addr_text)
        except OSError:
            return None
    return _new_member(_Member, (4, 0, -1, f"{addr_text} . {proto} . {port}", 8))


def _parse(member: str, set_type: IPSetType) -> _Member | None:
    """The parsed member, or None when it is malformed."""
    fast = (_fast_host_v4 if set_type is IPSetType.NET else _fast_named_port_v4)(member.strip())
    if fast is not None:
        return fast
    try:
        if set_type is IPSetType.NET:
            net = ipaddress.ip_network(member.strip(), strict=False)
            host = net.prefixlen == net.max_prefixlen
            text = str(net.network_address) if host else str(net)
            return _Member(net.version, int(net.network_address), int(net.broadcast_address), text,
                           2 * net.version + (not host))
        addr_text, _, proto_port = member.strip().partition(",")
        proto_text, _, port_text = proto_port.rpartition(":")
        addr = ipaddress.ip_address(addr_text.split("/")[0])
        proto = _PROTOCOLS.get(proto_text.lower() or "tcp")
        port = int(port_text)
        if proto is None or not 0 <= port <= 65535:
            raise ValueError(member)
        return _Member(addr.version, 0, -1, f"{addr} . {proto} . {port}", 2 * addr.version)
    except ValueError:
        return None


class IPSetMembers:
    """The members of one IP set id and the nft elements they make, per IP version."""

    __slots__ = ("type", "set_id", "variants", "_members", "_lazy", "_nets", "_kinds", "_cache")

    def __init__(self, set_type: IPSetType, set_id: str) -> None:
        self.type = set_type
        self.set_id = set_id
        self._members: dict[str, _Member] = {}
        self._lazy: frozenset[str] | None = None  # members set by a bulk replace, parsed on the first delta
        self._nets = [0, 0, 0, 0, 0, 0, 0]  # members wider than one address, indexed by IP version
        self._kinds: set[int] | None = set()  # the _Member.kinds among the members (None: look again)
        self._cache: dict[int, frozenset[str]] = {}
        self.variants = names.ipset_variants(set_id)  # every nft set name of this id (see set_names)

    def __len__(self) -> int:
        return len(self._lazy) if self._lazy is not None else len(self._members)

    def interval(self, version: int) -> bool:
        """Whether the IPv``version`` members need an interval set (some member is a wider net)."""
        return self._nets[version] > 0

    def set_names(self) -> tuple[str, str]:
        """The nft set names (IPv4, IPv6) that hold this id now (the kind follows the members)."""
        variants, nets = self.variants, self._nets  # (ordered as names.ipset_variants: 4 s/i/n, 6 s/i/n)
        if self.type is IPSetType.IP_AND_PORT:
            return variants[2], variants[5]
        return variants[1 if nets[4] else 0], variants[4 if nets[6] else 3]

    def replace(self, members: frozenset[str]) -> None:
        """Set the whole membership (on failure, the old one stays)."""
        elements = _bulk_elements(members, self.type)
        if elements is not None:  # all IPv4 single addresses (the usual case): elements without a parse each
            self._lazy, self._members = members, {}
            self._kinds, self._nets = {8}, [0, 0, 0, 0, 0, 0, 0]
            self._cache.clear()
            self._cache[4], self._cache[6] = elements, _EMPTY
            return
        self._parse_all(members)
        self._lazy = None

    def _parse_all(self, members: frozenset[str]) -> None:
        """Parse every member (the general case; and a bulk-replaced set at its first delta)."""
        cache = _PARSED[self.type]
        known = cache.get
        mine = {member: known(member) for member in members}  # most members are in other sets too
        fresh = [member for member, parsed in mine.items() if parsed is None]
        if fresh:
            fast = _fast_host_v4 if self.type is IPSetType.NET else _fast_named_port_v4
            if len(cache) + len(fresh) >= _PARSED_LIMIT:
                cache.clear()
            for member in fresh:
                cache[member] = mine[member] = fast(member) or parse_member(member, self.type, f"IP set {self.set_id}")
        self._members = cast(dict[str, _Member], mine)
        self._kinds = kinds = set(map(_KIND, self._members.values()))  # one pass in C (half a Counter's cost)
        if 9 in kinds or 13 in kinds:  # nets among them (rare): count them
            counts = Counter(map(_KIND, self._members.values()))
            self._nets = [0, 0, 0, 0, counts[9], 0, counts[13]]
        else:
            self._nets = [0, 0, 0, 0, 0, 0, 0]
        self._cache.clear()

    def update(self, added: frozenset[str], removed: frozenset[str]) -> None:
        """Apply a delta (removals first; on failure nothing changes)."""
        if self._lazy is not None:  # (once per set, for the bulk replace: 1-2.8 ms for 3,000 members)
            self._parse_all(self._lazy)
            self._lazy = None
        cache = _PARSED[self.type]
        parsed_added = [(member, cache.get(member) or parse_member(member, self.type, f"IP set {self.set_id}"))
                        for member in added]
        mine, nets = self._members, self._nets
        for member in removed:
            old = mine.pop(member, None)
            if old is not None and old.kind & 1:
                nets[old.version] -= 1
        for member, parsed in parsed_added:
            previous = mine.get(member)
            if previous is not None and previous.kind & 1:
                nets[previous.version] -= 1
            mine[member] = parsed
            if parsed.kind & 1:
                nets[parsed.version] += 1
        self._kinds = None
        self._cache.clear()

    def elements(self, version: int) -> frozenset[str]:
        """The elements of the IPv``version`` set, without overlaps."""
        cached = self._cache.get(version)
        if cached is not None:
            return cached
        values = self._members.values()
        kinds = self._kinds
        if kinds is None:
            self._kinds = kinds = set(map(_KIND, values))
        for ver in (4, 6):  # both at once: both are asked for
            if 2 * ver not in kinds and 2 * ver + 1 not in kinds:
                self._cache[ver] = _EMPTY
            elif 2 * ver + 1 in kinds:  # nets: without the members they cover
                self._cache[ver] = frozenset(deoverlap([m for m in values if m.version == ver]))
            elif len(kinds) == 1:  # all of this version, single addresses (the common case): one pass in C
                self._cache[ver] = frozenset(map(_TEXT, values))
            else:
                self._cache[ver] = frozenset([m.text for m in values if m.version == ver])
        return self._cache[version]


_EMPTY: frozenset[str] = frozenset()
_HOST_V4: dict[str, str] = {}  # "a.b.c.d/32" member -> its element, checked (shared by every set it is in)
_inet_pton_v4 = functools.partial(socket.inet_pton, socket.AF_INET)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"  # as inet_pton: no leading zeros
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]|0)"
_NAMED_PORTS_V4 = re.compile(rf"(?:(?:{_OCTET}\.){{3}}{_OCTET},(?:tcp|udp|sctp|udplite):{_PORT}\n)*")
_PROTO_TEXT = ((",tcp:", " . 6 . "), (",udp:", " . 17 . "), (",sctp:", " . 132 . "), (",udplite:", " . 136 . "))


def _bulk_elements(members: frozenset[str], set_type: IPSetType) -> frozenset[str] | None:
    """The IPv4 elements when every member is written the usual way (``a.b.c.d/32``, ``a.b.c.d,tcp:80``),
    worked out over the members' joined text instead of one by one; None otherwise (then each is parsed).
    e2e world (48,956 members in 649 sets), folding them: 31 -> 15 ms CPU (HEAD vs this, offline, gc off)."""
    if not members:
        return None
    if set_type is IPSetType.NET:
        if len(_HOST_V4) >= _PARSED_LIMIT:
            _HOST_V4.clear()
        fresh = members.difference(_HOST_V4)  # (in C, with the members' cached hashes)
        if fresh:
            text = "\n".join(fresh) + "\n"
            if text.count("\n") != len(fresh) or text.count("/32\n") != len(fresh):  # a line break in a
                return None  # member, or one not ending in /32 (each line break follows one)
            addrs = text[:-4].split("/32\n")
            try:
                deque(map(_inet_pton_v4, addrs), 0)  # what _fast_host_v4 checks, in a loop in C
            except (OSError, ValueError):
                return None
            _HOST_V4.update(zip(fresh, addrs, strict=True))  # (a set iterates in the same order twice)
        return frozenset(map(_HOST_V4.__getitem__, members))
    text = "\n".join(members) + "\n"
    if text.count("\n") != len(members) or _NAMED_PORTS_V4.fullmatch(text) is None:
        return None
    for proto, number in _PROTO_TEXT:
        if proto in text:
            text = text.replace(proto, number)
    return frozenset(text[:-1].split("\n"))


def deoverlap(members: list[_Member]) -> list[str]:
    """Drop members covered by another member (CIDR blocks are either nested or disjoint)."""
    out: list[str] = []
    covered_until = -1
    for member in sorted(members, key=lambda m: (m.start, -m.end)):
        if member.start <= covered_until:
            continue
        out.append(member.text)
        covered_until = member.end
    return out


def net_elements(cidrs: list[str], version: int) -> frozenset[str]:
    """De-overlapped elements for a list of CIDRs of one version (pool sets, VXLAN hosts)."""
    parsed = [parse_member(c, IPSetType.NET) for c in cidrs]
    return frozenset(deoverlap([m for m in parsed if m.version == version]))


def normalize_element(elem: Any) -> str:
    """One element of ``nft -j`` output, written the way this module writes elements."""
    if isinstance(elem, str | int):
        return str(elem)
    if isinstance(elem, dict):
        if "elem" in elem:
            return normalize_element(elem["elem"].get("val"))
        if "prefix" in elem:
            return f"{elem['prefix']['addr']}/{elem['prefix']['len']}"
        if "range" in elem:
            low, high = elem["range"]
            return f"{normalize_element(low)}-{normalize_element(high)}"
        if "concat" in elem:
            return " . ".join(normalize_element(part) for part in elem["concat"])
    return repr(elem)


def normalize_verdict(verdict: Any) -> str:
    """A verdict of ``nft -j`` map output as text (``jump cali-tw-x``)."""
    if isinstance(verdict, dict):
        for kind in ("jump", "goto"):
            if kind in verdict:
                return f"{kind} {verdict[kind]['target']}"
        if len(verdict) == 1:
            return next(iter(verdict))
    return repr(verdict)
