"""One policy or profile rule, compiled as Felix renders it, and matched against a packet.

A rule matches when every criterion it sets matches (``felix/rules/policy.go``):

- ``ipVersion`` different from the packet's: the rule is not rendered for that family.
- ``nets``/``notNets`` of each side keep only the CIDRs of the packet's family; a list left
  empty by that filter removes the rule from the family, as does a catch-all CIDR
  (``0.0.0.0/0``, ``::/0``) in a ``notNets``.
- ``protocol``/``notProtocol`` compare protocol numbers; ``icmp``/``notICMP`` the type and code.
- source/destination ``nets``: the address is in one of them; ``notNets``: in none.
- ``selector`` (scoped, see :mod:`.scoping`): the address is in the selector's IP set;
  ``notSelector`` (when there is no positive selector): it is not.
- ``ports``: a numeric port or range contains the port, or a named port's set holds
  (address, port); ``notPorts``: none of them does.
- ``services``: depends on Kubernetes Service endpoints, which the oracle does not see.

``http`` matches are enforced by the application layer, not by Felix's dataplane, which
matches the rest of the rule; the oracle does the same.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from libcalico.oracle.flow import ICMP_PROTOCOLS, IPNetwork, Packet
from libcalico.oracle.inventory import Inventory, Tri, coverage
from libcalico.oracle.scoping import ALL, entity_selectors
from libcalico.resources.fields import protocol_number
from libcalico.resources.rules import EntityRule, ICMPFields, Rule
from libcalico.selector import Selector

Outcome = tuple[Tri, str]
YES: Outcome = (Tri.YES, "")


def _no(reason: str) -> Outcome:
    return (Tri.NO, reason)


def both(outcomes: Iterable[Outcome]) -> Outcome:
    """All must match: NO wins, then MAYBE (with its reasons), else YES."""
    maybes = []
    for tri, reason in outcomes:
        if tri is Tri.NO:
            return (tri, reason)
        if tri is Tri.MAYBE:
            maybes.append(reason)
    return (Tri.MAYBE, "; ".join(maybes)) if maybes else YES


def either(outcomes: Iterable[Outcome]) -> Outcome:
    """One must match: YES wins, then MAYBE, else NO."""
    maybes, last = [], ""
    for tri, reason in outcomes:
        if tri is Tri.YES:
            return YES
        if tri is Tri.MAYBE:
            maybes.append(reason)
        last = reason
    return (Tri.MAYBE, "; ".join(maybes)) if maybes else (Tri.NO, last)


def negate(outcome: Outcome, what: str) -> Outcome:
    """The opposite match (MAYBE stays MAYBE)."""
    tri, reason = outcome
    if tri is Tri.YES:
        return _no(f"{what} matched")
    if tri is Tri.NO:
        return YES
    return outcome


@dataclass(frozen=True)
class Ports:
    """A rule's port list split as Felix splits it: numeric ranges and port names."""

    ranges: tuple[tuple[int, int], ...] = ()
    names: tuple[str, ...] = ()

    @classmethod
    def parse(cls, values: Iterable[int | str] | None) -> Ports:
        """Split validated rule ports (numbers, ``"lo:hi"`` ranges, names)."""
        ranges, names = [], []
        for value in values or ():
            if isinstance(value, int):
                ranges.append((value, value))
            elif ":" in value:
                low, high = value.split(":", 1)
                ranges.append((int(low), int(high)))
            elif value.isdigit():
                ranges.append((int(value), int(value)))
            else:
                names.append(value)
        return cls(tuple(ranges), tuple(names))

    def __bool__(self) -> bool:
        return bool(self.ranges or self.names)


@dataclass(frozen=True)
class Side:
    """The source or destination criteria of a compiled rule."""

    nets: tuple[IPNetwork, ...] | None = None
    not_nets: tuple[IPNetwork, ...] | None = None
    selector: Selector | None = None
    not_selector: Selector | None = None
    ports: Ports = Ports()
    not_ports: Ports = Ports()
    services: bool = False

    @classmethod
    def compile(cls, entity: EntityRule | None, namespace: str) -> Side:
        """Compile one EntityRule of a rule owned by ``namespace`` ("" when global)."""
        if entity is None:
            return cls()
        selector, negated = entity_selectors(entity, namespace)

        def nets(texts: list[str] | None) -> tuple[IPNetwork, ...] | None:
            return tuple(ipaddress.ip_network(t, strict=False) for t in texts) if texts else None

        return cls(nets(entity.nets), nets(entity.notNets), selector, negated,
                   Ports.parse(entity.ports), Ports.parse(entity.notPorts), entity.services is not None)


def _icmp(fields: ICMPFields | None) -> tuple[int | None, int | None] | None:
    if fields is None or fields.type is None:
        return None
    return (fields.type, fields.code)


@dataclass(frozen=True)
class CompiledRule:
    """A rule ready to match packets."""

    index: int
    action: str
    ip_version: int | None
    protocol: int | None
    not_protocol: int | None
    icmp: tuple[int | None, int | None] | None
    not_icmp: tuple[int | None, int | None] | None
    source: Side
    destination: Side
    http: bool

    @classmethod
    def compile(cls, rule: Rule, index: int, namespace: str) -> CompiledRule:
        """Compile a validated v3 rule; ``namespace`` is the owning NetworkPolicy's, or ""."""
        return cls(index, rule.action, rule.ipVersion, protocol_number(rule.protocol),
                   protocol_number(rule.notProtocol), _icmp(rule.icmp), _icmp(rule.notICMP),
                   Side.compile(rule.source, namespace), Side.compile(rule.destination, namespace),
                   rule.http is not None)

    @property
    def named_port_protocol(self) -> int:
        """The protocol named ports are looked up with: UDP or SCTP when the rule says so, else TCP."""
        return self.protocol if self.protocol in (17, 132) else 6

    def match(self, packet: Packet, inventory: Inventory) -> Outcome:
        """Whether this rule matches the packet (MAYBE with a reason when the flow does not decide it)."""
        if self.ip_version is not None and self.ip_version != packet.version:
            return _no(f"rule is for IPv{self.ip_version} only")
        filtered: dict[str, tuple[IPNetwork, ...] | None] = {}
        for role, side in (("source", self.source), ("destination", self.destination)):
            for field, negated in (("nets", False), ("not_nets", True)):
                nets = getattr(side, field)
                if nets is None:
                    filtered[f"{role}.{field}"] = None
                    continue
                kept = tuple(n for n in nets if n.version == packet.version)
                if not kept:
                    return _no(f"rule has no {role} {field} of IPv{packet.version}: not rendered for it")
                if negated and any(n.prefixlen == 0 for n in kept):
                    return _no(f"rule negates a catch-all {role} CIDR: Felix drops it")
                filtered[f"{role}.{field}"] = kept
        if self.protocol is not None and packet.protocol != self.protocol:
            return _no("protocol differs")
        if self.not_protocol is not None and packet.protocol == self.not_protocol:
            return _no("notProtocol matched")
        checks = [self._icmp_check(self.icmp, packet, False), self._icmp_check(self.not_icmp, packet, True)]
        if any(t is Tri.NO for t, _ in checks):
            return both(checks)
        src = self._side("source", self.source, packet.source, packet.source_port, filtered, inventory)
        dst = self._side("destination", self.destination, packet.destination, packet.destination_port,
                         filtered, inventory)
        return both([*checks, src, dst])

    @staticmethod
    def _icmp_check(icmp: tuple[int | None, int | None] | None, packet: Packet, negated: bool) -> Outcome:
        if icmp is None:
            return YES
        what = "notICMP" if negated else "icmp"
        if packet.protocol not in ICMP_PROTOCOLS:
            return _no(f"{what} needs an ICMP packet")
        want_type, want_code = icmp
        if packet.icmp_type is None:
            return (Tri.MAYBE, f"the rule's {what} matches ICMP type {want_type} and the flow gives no ICMP type")
        matched = packet.icmp_type == want_type
        if matched and want_code is not None:
            if packet.icmp_code is None:
                return (Tri.MAYBE, f"the rule's {what} matches ICMP code {want_code} and the flow gives no code")
            matched = packet.icmp_code == want_code
        if matched != negated:
            return YES
        return _no(f"{what} differs")

    def _side(self, role: str, side: Side, address: IPNetwork, port: int | None,
              filtered: dict[str, tuple[IPNetwork, ...] | None], inventory: Inventory) -> Outcome:
        checks: list[Outcome] = []
        nets = filtered[f"{role}.nets"]
        if nets is not None:
            checks.append(_covered(coverage(address, nets), f"{role} {address} vs the rule's {role} nets"))
        not_nets = filtered[f"{role}.not_nets"]
        if not_nets is not None:
            checks.append(negate(_covered(coverage(address, not_nets),
                                          f"{role} {address} vs the rule's {role} notNets"), f"{role} notNets"))
        if side.selector is not None:
            checks.append(_covered(inventory.in_ip_set(address, side.selector),
                                   f"{role} {address} vs the IP set of {side.selector}"))
        if side.not_selector is not None:
            checks.append(negate(_covered(inventory.in_ip_set(address, side.not_selector),
                                          f"{role} {address} vs the IP set of {side.not_selector}"),
                                 f"{role} notSelector"))
        if side.ports:
            checks.append(self._ports(role, side.ports, side.selector, address, port, inventory))
        if side.not_ports:
            checks.append(negate(self._ports(role, side.not_ports, side.selector, address, port, inventory),
                                 f"{role} notPorts"))
        if side.services:
            checks.append((Tri.MAYBE, f"the rule's {role} matches a Kubernetes Service, whose endpoints "
                                      "the oracle does not see"))
        return both(checks)

    def _ports(self, role: str, ports: Ports, selector: Selector | None, address: IPNetwork, port: int | None,
               inventory: Inventory) -> Outcome:
        options: list[Outcome] = []
        if ports.ranges:
            if port is None:
                options.append((Tri.MAYBE, f"the rule matches {role} ports and the flow gives no {role} port"))
            elif any(low <= port <= high for low, high in ports.ranges):
                options.append(YES)
            else:
                options.append(_no(f"{role} port differs"))
        for name in ports.names:
            tri = inventory.in_named_port_set(address, port, selector or ALL, self.named_port_protocol, name)
            if tri is Tri.MAYBE:
                options.append((Tri.MAYBE, f"named {role} port {name!r}: the flow gives no {role} port"
                                if port is None else f"named {role} port {name!r}: {address} is a range"))
            else:
                options.append((tri, f"named {role} port {name!r} differs"))
        return either(options)


def _covered(tri: Tri, what: str) -> Outcome:
    if tri is Tri.MAYBE:
        return (Tri.MAYBE, f"{what}: only part of the range is covered")
    return (tri, f"{what}: no match")
