"""Rule compilation: v3 policy and profile rules → dataplane rules whose selectors are IP-set ids.

How it works (Calico's ``rule_scanner``)::

    v3 Rule ──► action, protocol numbers, ICMP, nets (normalised), numeric port ranges
            ──► source/destination selector fields ──(scoping)──► one positive selector
                + notSelector (folded into the positive one when there is one)
            ──► named ports ──► one IP set per (positive selector or all(), protocol, port name)

The positive selector's set is left out when the rule's ports are all named
(the named-port sets already hold only the selector's endpoints), as Calico
does.

Rules the dataplane cannot enforce here never widen what is allowed: an
``Allow``/``Pass``/``Log`` rule that matches on Kubernetes ``services`` or on
HTTP (application layer) is left out; a ``Deny`` rule that matches on
``services`` is kept without that match (it denies more, never less).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from libcalico.resources.fields import protocol_number
from libcalico.resources.rules import EntityRule, ICMPFields
from libcalico.resources.rules import Rule as V3Rule
from libcalico.selector import Selector, parse
from services.felix.calc.ipsets import IPSetDef
from services.felix.calc.scoping import ALL, entity_selector
from services.felix.messages import PortRange, Rule

ACTIONS = {"Allow": "allow", "Deny": "deny", "Log": "log", "Pass": "pass"}
NAMED_PORT_PROTOCOLS = {17: "udp", 132: "sctp"}  # anything else (TCP, unset) is "tcp"


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """One policy's or profile's rules, compiled, and the IP sets they reference."""

    inbound: tuple[Rule, ...]
    outbound: tuple[Rule, ...]
    ipsets: tuple[IPSetDef, ...]


def normalise_net(net: str) -> str:
    """A CIDR (or bare address) as its network: ``10.0.0.5/24`` → ``10.0.0.0/24``, ``10.0.0.1`` → ``10.0.0.1/32``."""
    return str(ipaddress.ip_network(net, strict=False))


def _nets(nets: list[str] | None) -> tuple[str, ...]:
    return tuple(normalise_net(n) for n in nets or ())


def _ports(ports: list[int | str] | None) -> tuple[tuple[PortRange, ...], tuple[str, ...]]:
    numeric: list[PortRange] = []
    named: list[str] = []
    for p in ports or ():
        if isinstance(p, int):
            numeric.append(PortRange(p, p))
        elif ":" in p:
            low, high = p.split(":", 1)
            numeric.append(PortRange(int(low), int(high)))
        elif p.isdigit():
            numeric.append(PortRange(int(p), int(p)))
        else:
            named.append(p)
    return tuple(numeric), tuple(named)


def _icmp(fields: ICMPFields | None) -> tuple[int | None, int | None]:
    if fields is None:
        return None, None
    return fields.type, fields.code


@dataclass(slots=True)
class _Side:
    """The compiled match of one side (source or destination) of a rule."""

    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    not_sets: tuple[str, ...] = ()
    ports: tuple[PortRange, ...] = ()
    not_ports: tuple[PortRange, ...] = ()
    named: tuple[str, ...] = ()
    not_named: tuple[str, ...] = ()


def _side(entity: EntityRule | None, namespace: str | None, proto: str, out: dict[str, IPSetDef]) -> _Side:
    if entity is None:
        return _Side()
    positive = entity_selector(entity, namespace)
    negative = entity.notSelector or ""
    if positive and negative:
        positive, negative = f"({positive}) && (!({negative}))", ""
    pos_sel: Selector | None = parse(positive) if positive else None
    ports, named_ports = _ports(entity.ports)
    not_ports, not_named_ports = _ports(entity.notPorts)

    def named_sets(names: tuple[str, ...]) -> tuple[str, ...]:
        ids = []
        for name in names:
            defn = IPSetDef(pos_sel or ALL, name, proto)
            out.setdefault(defn.id, defn)
            ids.append(defn.id)
        return tuple(ids)

    side = _Side(
        nets=_nets(entity.nets), not_nets=_nets(entity.notNets), ports=ports, not_ports=not_ports,
        named=named_sets(named_ports), not_named=named_sets(not_named_ports),
    )
    if pos_sel is not None and (ports or not named_ports):
        defn = IPSetDef(pos_sel)
        out.setdefault(defn.id, defn)
        side.sets = (defn.id,)
    if negative:
        defn = IPSetDef(parse(negative))
        out.setdefault(defn.id, defn)
        side.not_sets = (defn.id,)
    return side


def _enforceable(rule: V3Rule) -> tuple[bool, V3Rule]:
    """Whether to render the rule at all, and the rule to render (see the module docstring)."""
    services = any(e is not None and e.services is not None for e in (rule.source, rule.destination))
    if rule.action == "Deny":
        if not services:
            return True, rule
        update = {side: getattr(rule, side).model_copy(update={"services": None})
                  for side in ("source", "destination") if getattr(rule, side) is not None}
        return True, rule.model_copy(update=update)
    return not services and rule.http is None, rule


def compile_rule(rule: V3Rule, namespace: str | None, rule_id: str, out: dict[str, IPSetDef]) -> Rule | None:
    """Compile one rule, adding the IP sets it references to ``out``; None when it must be left out."""
    keep, rule = _enforceable(rule)
    if not keep:
        return None
    proto = protocol_number(rule.protocol)
    named_proto = NAMED_PORT_PROTOCOLS.get(proto or 0, "tcp")
    src = _side(rule.source, namespace, named_proto, out)
    dst = _side(rule.destination, namespace, named_proto, out)
    icmp_type, icmp_code = _icmp(rule.icmp)
    not_icmp_type, not_icmp_code = _icmp(rule.notICMP)
    return Rule(
        action=ACTIONS[rule.action],
        ip_version=rule.ipVersion,
        protocol=proto,
        not_protocol=protocol_number(rule.notProtocol),
        src_nets=src.nets, not_src_nets=src.not_nets,
        src_ip_set_ids=src.sets, not_src_ip_set_ids=src.not_sets,
        src_ports=src.ports, not_src_ports=src.not_ports,
        src_named_port_ip_set_ids=src.named, not_src_named_port_ip_set_ids=src.not_named,
        dst_nets=dst.nets, not_dst_nets=dst.not_nets,
        dst_ip_set_ids=dst.sets, not_dst_ip_set_ids=dst.not_sets,
        dst_ports=dst.ports, not_dst_ports=dst.not_ports,
        dst_named_port_ip_set_ids=dst.named, not_dst_named_port_ip_set_ids=dst.not_named,
        icmp_type=icmp_type, icmp_code=icmp_code,
        not_icmp_type=not_icmp_type, not_icmp_code=not_icmp_code,
        rule_id=rule_id,
    )


def compile_rules(
    ingress: list[V3Rule] | None, egress: list[V3Rule] | None, namespace: str | None, owner: str
) -> CompiledRules:
    """Compile a policy's or profile's rules; ``owner`` prefixes each rule id (``ns/name/ingress/0``)."""
    sets: dict[str, IPSetDef] = {}
    inbound = [compile_rule(r, namespace, f"{owner}/ingress/{i}", sets) for i, r in enumerate(ingress or ())]
    outbound = [compile_rule(r, namespace, f"{owner}/egress/{i}", sets) for i, r in enumerate(egress or ())]
    return CompiledRules(
        tuple(r for r in inbound if r is not None),
        tuple(r for r in outbound if r is not None),
        tuple(sets.values()),
    )


def deny_all(owner: str) -> CompiledRules:
    """The rules of a referenced profile that does not exist: drop everything (fail closed)."""
    return CompiledRules(
        (Rule(action="deny", rule_id=f"{owner}/missing/ingress"),),
        (Rule(action="deny", rule_id=f"{owner}/missing/egress"),),
        (),
    )
