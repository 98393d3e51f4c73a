"""One compiled :class:`Rule` → nftables rule text (the bodies, without comments).

How it works: the ``inet calico`` table sees both IP versions, so a rule that
matches addresses, IP sets, ICMP or an explicit IP version is rendered once
per IP version it can match (``ip saddr @cali40s-x`` / ``ip6 saddr
@cali60s-x``); a rule with none of those is rendered once for both. Where the
messages say "any of" across different kinds of match (port ranges OR named
ports), the rule is rendered once per alternative, all with the same verdict.

Verdicts use two packet-mark bits (Felix's): ``allow`` sets the accept bit and
returns, ``pass`` sets the pass bit and returns, ``deny`` drops (or rejects),
``log`` logs (with a counter) and continues. In a *final* chain (inbound policy
and profile chains: nothing is evaluated after them in their base chain),
``allow`` is a plain ``accept``, so the endpoint chain needs no "return if
accepted" rule after each jump.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from services.felix.dataplane import names
from services.felix.dataplane.errors import RenderError
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import PortRange, Rule

ICMP, ICMPV6 = 1, 58
_PORT_PROTOCOLS = "{ 6, 17, 132, 136 }"  # tcp, udp, sctp, udplite: the protocols with ports
_PORT_PROTOCOLS_MATCH = f"meta l4proto {_PORT_PROTOCOLS}"
_IP: dict[int | None, str] = {4: "ip", 6: "ip6"}
_NFPROTO = {4: "meta nfproto ipv4", 6: "meta nfproto ipv6"}
_NO_ALTERNATIVES: list[list[str]] = [[]]


@dataclass(slots=True)
class RenderedChain:
    """The rule bodies of one chain plus the nftables sets they reference."""

    rules: list[str] = field(default_factory=list)
    set_refs: set[str] = field(default_factory=set)


class RuleRenderer:
    """Renders rules with one configuration (marks, log prefix, deny action).

    ``interval(set_id, version)`` says whether an IP set is currently held in an
    interval set (it has wider nets) rather than a plain one; the rule names
    the matching set (see :mod:`ipsets`). Unknown: plain.
    """

    def __init__(self, settings: DataplaneSettings,
                 interval: Callable[[str, int], bool] | None = None) -> None:
        self.settings = settings
        self.accept = settings.accept_mark
        self.pass_ = settings.pass_mark
        self._interval = interval

    # Verdicts -------------------------------------------------------------
    def allow_verdict(self) -> str:
        """Set the accept bit and return to the endpoint chain."""
        return f"meta mark set meta mark | {self.accept:#010x} return"

    def pass_verdict(self) -> str:
        """Set the pass bit and return to the endpoint chain."""
        return f"meta mark set meta mark | {self.pass_:#010x} return"

    def deny_verdict(self) -> str:
        """Drop, or reject when iptablesFilterDenyAction is Reject."""
        return "reject" if self.settings.deny_action == "Reject" else "drop"

    def log_statement(self) -> str:
        """Log with Felix's prefix (and count, so logging is observable inside a namespace)."""
        return f'counter log prefix "{self.settings.log_prefix}: " level info'

    def _verdict(self, action: str, where: str, final: bool = False) -> str:
        action = action.lower()
        if action == "allow":
            return "accept" if final else self.allow_verdict()
        if action == "deny":
            return self.deny_verdict()
        if action in ("pass", "next-tier"):
            return self.pass_verdict()
        if action == "log":
            return self.log_statement()
        raise RenderError(where, f"unknown action {action!r} (expected allow, deny, pass or log)")

    # Chains ---------------------------------------------------------------
    def render_rules(self, rules: Iterable[Rule], where: str, final: bool = False) -> RenderedChain:
        """All rules of one policy or profile direction, in order (``final``: see the module docstring)."""
        out = RenderedChain()
        for index, rule in enumerate(rules):
            rule_where = f"{where} rule {index}" + (f" ({rule.rule_id})" if rule.rule_id else "")
            out.rules.extend(self.render_rule(rule, rule_where, out.set_refs, final))
        return out

    def render_rule(self, rule: Rule, where: str, set_refs: set[str], final: bool = False) -> list[str]:
        """The nft rule bodies for one rule (none when it can match no packet)."""
        _validate(rule, where)
        verdict = self._verdict(rule.action, where, final)
        families = _families(rule)
        if families is None:
            return [" ".join([*body, verdict]) for body in self._bodies(rule, None, set_refs)]
        out: list[str] = []
        for version in families:
            out.extend(" ".join([*body, verdict]) for body in self._bodies(rule, version, set_refs))
        return out

    def _bodies(self, rule: Rule, version: int | None, set_refs: set[str]) -> list[list[str]]:
        common: list[str] = []
        ip = _IP.get(version, "")
        if version is not None:
            common.append(_NFPROTO[version])
        if rule.protocol is not None:
            common.append(f"meta l4proto {rule.protocol}")
        if rule.not_protocol is not None:
            common.append(f"meta l4proto != {rule.not_protocol}")
        if rule.src_nets or rule.not_src_nets or rule.src_ip_set_ids or rule.not_src_ip_set_ids:
            if not self._addresses(common, ip, "saddr", rule.src_nets, rule.not_src_nets, rule.src_ip_set_ids,
                                   rule.not_src_ip_set_ids, version, set_refs):
                return []  # only nets of the other IP version: cannot match here
        if rule.dst_nets or rule.not_dst_nets or rule.dst_ip_set_ids or rule.not_dst_ip_set_ids:
            if not self._addresses(common, ip, "daddr", rule.dst_nets, rule.not_dst_nets, rule.dst_ip_set_ids,
                                   rule.not_dst_ip_set_ids, version, set_refs):
                return []
        if rule.protocol is None and (rule.src_ports or rule.dst_ports or rule.not_src_ports or rule.not_dst_ports):
            common.append(_PORT_PROTOCOLS_MATCH)
        if rule.not_src_ports:
            common.append(f"th sport != {_port_literal(rule.not_src_ports)}")
        for set_id in rule.not_src_named_port_ip_set_ids:
            name = self._set(set_id, version, True, set_refs)
            common.append(f"{ip} saddr . meta l4proto . th sport != @{name}")
        if rule.not_dst_ports:
            common.append(f"th dport != {_port_literal(rule.not_dst_ports)}")
        for set_id in rule.not_dst_named_port_ip_set_ids:
            name = self._set(set_id, version, True, set_refs)
            common.append(f"{ip} daddr . meta l4proto . th dport != @{name}")
        if rule.icmp_type is not None or rule.not_icmp_type is not None:
            common.extend(_icmp(rule, version))
        src = rule.src_ports or rule.src_named_port_ip_set_ids
        dst = rule.dst_ports or rule.dst_named_port_ip_set_ids
        if not (src or dst):
            return [common]
        src_alts = self._port_alternatives("sport", "saddr", rule.src_ports, rule.src_named_port_ip_set_ids,
                                           version, set_refs) if src else _NO_ALTERNATIVES
        dst_alts = self._port_alternatives("dport", "daddr", rule.dst_ports, rule.dst_named_port_ip_set_ids,
                                           version, set_refs) if dst else _NO_ALTERNATIVES
        return [[*common, *src_alt, *dst_alt] for src_alt, dst_alt in itertools.product(src_alts, dst_alts)]

    def _addresses(self, common: list[str], ip: str, direction: str, nets: tuple[str, ...],
                   not_nets: tuple[str, ...], set_ids: tuple[str, ...], not_set_ids: tuple[str, ...],
                   version: int | None, set_refs: set[str]) -> bool:
        """Append one direction's address matches; False when ``nets`` has none of this IP version."""
        if nets:
            mine = _nets_of(nets, version)
            if not mine:
                return False
            common.append(f"{ip} {direction} {_set_literal(mine)}")
        if not_nets:
            mine_not = _nets_of(not_nets, version)
            if mine_not:
                common.append(f"{ip} {direction} != {_set_literal(mine_not)}")
        for set_id in set_ids:
            common.append(f"{ip} {direction} @{self._set(set_id, version, False, set_refs)}")
        for set_id in not_set_ids:
            common.append(f"{ip} {direction} != @{self._set(set_id, version, False, set_refs)}")
        return True

    def _port_alternatives(self, port_dir: str, addr_dir: str, ranges: tuple[PortRange, ...],
                           named: tuple[str, ...], version: int | None, set_refs: set[str]) -> list[list[str]]:
        alts: list[list[str]] = []
        if ranges:
            alts.append([f"th {port_dir} {_port_literal(ranges)}"])
        ip = _IP.get(version, "")
        for set_id in named:
            name = self._set(set_id, version, True, set_refs)
            alts.append([f"{ip} {addr_dir} . meta l4proto . th {port_dir} @{name}"])
        return alts or [[]]

    def _set(self, set_id: str, version: int | None, named_port: bool, set_refs: set[str]) -> str:
        assert version is not None  # rules with sets are always rendered per IP version
        interval = not named_port and self._interval is not None and self._interval(set_id, version)
        name = names.ipset_name(set_id, version, named_port, interval)
        set_refs.add(name)
        return name


@functools.lru_cache(maxsize=65536)
def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a CIDR once (rules repeat the same nets a lot)."""
    return ipaddress.ip_network(text, strict=False)


def _validate(rule: Rule, where: str) -> None:
    for label, proto in (("protocol", rule.protocol), ("notProtocol", rule.not_protocol)):
        if proto is not None and not 0 <= proto <= 255:
            raise RenderError(where, f"{label} {proto} is not a protocol number 0-255")
    if rule.src_ports or rule.dst_ports or rule.not_src_ports or rule.not_dst_ports:
        for label, ranges in (("srcPorts", rule.src_ports), ("dstPorts", rule.dst_ports),
                              ("notSrcPorts", rule.not_src_ports), ("notDstPorts", rule.not_dst_ports)):
            for port_range in ranges:
                if not 0 <= port_range.first <= port_range.last <= 65535:
                    raise RenderError(where, f"{label} range {port_range.first}-{port_range.last} "
                                             "is not within 0-65535")
    if (rule.icmp_type is not None or rule.icmp_code is not None or rule.not_icmp_type is not None
            or rule.not_icmp_code is not None):
        _validate_icmp(rule, where)
    if rule.ip_version is not None and rule.ip_version not in (4, 6):
        raise RenderError(where, f"ipVersion {rule.ip_version} is not 4 or 6")
    if rule.src_nets or rule.dst_nets or rule.not_src_nets or rule.not_dst_nets:
        for label, nets in (("srcNets", rule.src_nets), ("dstNets", rule.dst_nets),
                            ("notSrcNets", rule.not_src_nets), ("notDstNets", rule.not_dst_nets)):
            for net in nets:
                try:
                    _net(net)
                except ValueError:
                    raise RenderError(where, f"{label} entry {net!r} is not a CIDR") from None
    for ids in (rule.src_ip_set_ids, rule.dst_ip_set_ids, rule.not_src_ip_set_ids, rule.not_dst_ip_set_ids,
                rule.src_named_port_ip_set_ids, rule.dst_named_port_ip_set_ids,
                rule.not_src_named_port_ip_set_ids, rule.not_dst_named_port_ip_set_ids):
        if ids and "" in ids:
            raise RenderError(where, "empty IP set id")


def _validate_icmp(rule: Rule, where: str) -> None:
    icmp_fields = (rule.icmp_type, rule.icmp_code, rule.not_icmp_type, rule.not_icmp_code)
    if rule.protocol not in (ICMP, ICMPV6):
        raise RenderError(where, "icmp type/code need protocol ICMP (1) or ICMPv6 (58)")
    if rule.icmp_code is not None and rule.icmp_type is None:
        raise RenderError(where, "icmp code given without icmp type")
    if rule.not_icmp_code is not None and rule.not_icmp_type is None:
        raise RenderError(where, "notICMP code given without notICMP type")
    for value in icmp_fields:
        if value is not None and not 0 <= value <= 255:
            raise RenderError(where, f"icmp type/code {value} is not within 0-255")


def _families(rule: Rule) -> list[int] | None:
    """The IP versions to render for, or None when one version-agnostic rendering will do."""
    specific = bool(
        rule.ip_version or rule.protocol in (ICMP, ICMPV6)
        or rule.src_nets or rule.dst_nets or rule.not_src_nets or rule.not_dst_nets
        or rule.src_ip_set_ids or rule.dst_ip_set_ids or rule.not_src_ip_set_ids or rule.not_dst_ip_set_ids
        or rule.src_named_port_ip_set_ids or rule.dst_named_port_ip_set_ids
        or rule.not_src_named_port_ip_set_ids or rule.not_dst_named_port_ip_set_ids
    )
    if not specific:
        return None
    families = {4, 6}
    if rule.ip_version:
        families &= {rule.ip_version}
    if rule.protocol == ICMP:
        families &= {4}
    elif rule.protocol == ICMPV6:
        families &= {6}
    for nets in (rule.src_nets, rule.dst_nets):
        if nets:
            families &= {_net(n).version for n in nets}
    return sorted(families)


@functools.lru_cache(maxsize=16384)
def _nets_of(nets: tuple[str, ...], version: int | None) -> tuple[str, ...]:
    """The nets of one IP version (None: all), collapsed (rules repeat the same lists a lot)."""
    parsed = [_net(n) for n in nets]
    mine = [n for n in parsed if version is None or n.version == version]
    out: list[str] = []
    for ver in (4, 6):
        group = [n for n in mine if n.version == ver]
        out.extend(str(n) for n in ipaddress.collapse_addresses(group))  # type: ignore[type-var]
    return tuple(out)


def _set_literal(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def merge_port_ranges(ranges: Iterable[PortRange]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping, non-adjacent port ranges (nft rejects overlapping set elements)."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted((r.first, r.last) for r in ranges):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged


@functools.lru_cache(maxsize=16384)
def _port_literal(ranges: tuple[PortRange, ...]) -> str:
    items = [str(a) if a == b else f"{a}-{b}" for a, b in merge_port_ranges(ranges)]
    return _set_literal(items)


def _icmp(rule: Rule, version: int | None) -> list[str]:
    kw = "icmpv6" if version == 6 else "icmp"
    out: list[str] = []
    if rule.icmp_type is not None:
        out.append(f"{kw} type {rule.icmp_type}")
        if rule.icmp_code is not None:
            out.append(f"{kw} code {rule.icmp_code}")
    if rule.not_icmp_type is not None:
        if rule.not_icmp_code is not None:
            out.append(f"{kw} type . {kw} code != {{ {rule.not_icmp_type} . {rule.not_icmp_code} }}")
        else:
            out.append(f"{kw} type != {rule.not_icmp_type}")
    return out
