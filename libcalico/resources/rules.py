"""Policy rules: Rule, EntityRule and their parts, with Calico's rule validation."""

from __future__ import annotations

import ipaddress
from typing import Literal

import pydantic

from libcalico.resources.fields import (
    Loc,
    Name,
    Net,
    Port,
    Protocol,
    Selector,
    SpecModel,
    choice,
    int_range,
    protocol_number,
    qualified_name_problem,
    raise_problems,
)

GLOBAL_SELECTOR = "global()"
GLOBAL_ONLY_IN_NAMESPACE_SELECTOR = "global() can only be used in an EntityRule namespaceSelector"
PORTS_NEED_PROTOCOL = "rules that specify ports must set protocol to TCP, UDP or SCTP"
ICMP_NEEDS_PROTOCOL = "rules that specify ICMP fields must set protocol to ICMP or ICMPv6"

PORT_PROTOCOLS = frozenset({6, 17, 132})  # TCP, UDP, SCTP: Calico's Protocol.SupportsPorts()
ICMP_V4, ICMP_V6 = 1, 58

Action = choice("action", "Allow", "Deny", "Log", "Pass")


class ICMPFields(SpecModel):
    """Match on ICMP type and code."""

    type: int_range("ICMP type", 0, 254) | None = None  # type: ignore[valid-type]
    code: int_range("ICMP code", 0, 255) | None = None  # type: ignore[valid-type]

    @pydantic.model_validator(mode="after")
    def _code_needs_type(self) -> ICMPFields:
        if self.code is not None and self.type is None:
            raise_problems([(("code",), "ICMP code specified without an ICMP type")])
        return self


class HTTPPath(SpecModel):
    """One HTTP path match: exactly one of ``exact`` or ``prefix``."""

    exact: str | None = None
    prefix: str | None = None

    @pydantic.model_validator(mode="after")
    def _one_of(self) -> HTTPPath:
        if self.exact and self.prefix:
            raise_problems([((), "invalid path match: both 'exact' and 'prefix' are set")])
        value = self.exact or self.prefix
        if not value:
            raise_problems([((), "invalid path match: either 'exact' or 'prefix' must be set")])
        assert value is not None
        field = "exact" if self.exact else "prefix"
        if len(value) > 1024:
            raise_problems([((field,), "path is longer than 1024 characters")])
        if not value.startswith("/") or any(c in value for c in "? #"):
            raise_problems([((field,), f"invalid path {value!r}: must start with '/' and not contain '?', '#' or spaces")])
        return self


class HTTPMatch(SpecModel):
    """Match on HTTP methods and paths (application layer policy)."""

    methods: list[str] | None = None
    paths: list[HTTPPath] | None = None

    @pydantic.model_validator(mode="after")
    def _checks(self) -> HTTPMatch:
        problems: list[tuple[Loc, str]] = []
        methods = self.methods or []
        if len(set(methods)) != len(methods):
            problems.append((("methods",), f"invalid methods (duplicates): {methods}"))
        if len(methods) > 20:
            problems.append((("methods",), "at most 20 methods are allowed"))
        if len(self.paths or []) > 20:
            problems.append((("paths",), "at most 20 paths are allowed"))
        raise_problems(problems)
        return self


class ServiceAccountMatch(SpecModel):
    """Match on the service account a pod runs as."""

    names: list[str] | None = None
    selector: Selector | None = None


class ServiceMatch(SpecModel):
    """Match on a Kubernetes Service."""

    name: Name | None = None
    namespace: Name | None = None


class RuleMetadata(SpecModel):
    """Extra information carried by a rule."""

    annotations: dict[str, str] | None = None

    @pydantic.model_validator(mode="after")
    def _keys(self) -> RuleMetadata:
        problems: list[tuple[Loc, str]] = []
        for key in self.annotations or {}:
            reason = qualified_name_problem(key.lower())
            if reason:
                problems.append((("annotations", key), f"invalid annotation {reason}"))
        raise_problems(problems)
        return self


class EntityRule(SpecModel):
    """Match criteria for the source or the destination of a packet."""

    nets: list[Net] | None = None
    selector: Selector | None = None
    namespaceSelector: Selector | None = None
    services: ServiceMatch | None = None
    ports: list[Port] | None = None
    notNets: list[Net] | None = None
    notSelector: Selector | None = None
    notPorts: list[Port] | None = None
    serviceAccounts: ServiceAccountMatch | None = None

    @pydantic.model_validator(mode="after")
    def _checks(self) -> EntityRule:
        problems: list[tuple[Loc, str]] = []
        for field in ("nets", "notNets"):
            if len(getattr(self, field) or []) > 256:
                problems.append(((field,), "at most 256 networks are allowed"))
        for field in ("ports", "notPorts"):
            if len(getattr(self, field) or []) > 50:
                problems.append(((field,), "at most 50 ports are allowed"))
        for field in ("selector", "notSelector"):
            if GLOBAL_SELECTOR in (getattr(self, field) or ""):
                problems.append(((field,), GLOBAL_ONLY_IN_NAMESPACE_SELECTOR))
        ns = self.namespaceSelector or ""
        if "global(" in ns and ns.strip() != GLOBAL_SELECTOR:
            problems.append((("namespaceSelector",), "global() cannot be combined with other selectors"))
        if self.services is not None:
            if not self.services.name:
                problems.append((("services", "name"), "must specify a service name"))
            if self.namespaceSelector:
                problems.append((("services",), "cannot specify namespaceSelector and services on the same rule"))
            if self.selector or self.notSelector:
                problems.append((("services",), "cannot specify selector/notSelector and services on the same rule"))
            if self.serviceAccounts is not None:
                problems.append((("services",), "cannot specify serviceAccounts and services on the same rule"))
            if self.nets or self.notNets:
                problems.append((("services",), "cannot specify nets/notNets and services on the same rule"))
        raise_problems(problems)
        return self


class Rule(SpecModel):
    """A set of match criteria and an action (Calico's v3 Rule)."""

    action: Action  # type: ignore[valid-type]
    ipVersion: Literal[4, 6] | None = None
    protocol: Protocol | None = None
    icmp: ICMPFields | None = None
    notProtocol: Protocol | None = None
    notICMP: ICMPFields | None = None
    source: EntityRule | None = None
    destination: EntityRule | None = None
    http: HTTPMatch | None = None
    metadata: RuleMetadata | None = None

    @pydantic.model_validator(mode="after")
    def _checks(self) -> Rule:
        raise_problems(rule_problems(self))
        return self

    def uses_ports(self) -> bool:
        """Whether any entity rule matches on ports."""
        return any(getattr(e, f) for e in (self.source, self.destination) if e for f in ("ports", "notPorts"))


def rule_problems(rule: Rule) -> list[tuple[Loc, str]]:
    """Calico's cross-field rule checks, each located at the field at fault."""
    problems: list[tuple[Loc, str]] = []
    proto = protocol_number(rule.protocol)
    not_proto = protocol_number(rule.notProtocol)
    if proto not in PORT_PROTOCOLS:
        for side in ("source", "destination"):
            entity: EntityRule | None = getattr(rule, side)
            for field in ("ports", "notPorts"):
                if entity is not None and getattr(entity, field):
                    problems.append(((side, field), PORTS_NEED_PROTOCOL))
    if rule.http is not None and rule.protocol is not None and proto != 6:
        problems.append((("protocol",), "rules that specify HTTP fields must set protocol to TCP or leave it empty"))
    if rule.http is not None and rule.action != "Allow":
        problems.append((("http",), "HTTP match is only valid on Allow rules"))
    if rule.icmp is not None and proto not in (ICMP_V4, ICMP_V6):
        problems.append((("icmp",), ICMP_NEEDS_PROTOCOL))
    if rule.ipVersion is not None:
        for field, number in (("protocol", proto), ("notProtocol", not_proto)):
            if number == ICMP_V4 and rule.ipVersion != 4:
                problems.append(((field,), "protocol ICMP requires ipVersion 4"))
            if number == ICMP_V6 and rule.ipVersion != 6:
                problems.append(((field,), "protocol ICMPv6 requires ipVersion 6"))
    seen: set[int] = set()
    for side in ("source", "destination"):
        entity = getattr(rule, side)
        if entity is None:
            continue
        for field in ("nets", "notNets"):
            versions = {ipaddress.ip_network(n, strict=False).version for n in getattr(entity, field) or []}
            if rule.ipVersion is not None and versions - {rule.ipVersion}:
                problems.append(((side, field), f"rule IP version {rule.ipVersion} doesn't match CIDR version"))
            elif versions and len(versions | seen) > 1:
                problems.append(((side, field), "rule contains both IPv4 and IPv6 CIDRs"))
            seen |= versions
    if rule.destination is not None and rule.destination.services is not None:
        if rule.destination.ports:
            problems.append((("destination", "ports"), "cannot specify ports with a service selector"))
        if rule.destination.notPorts:
            problems.append((("destination", "notPorts"), "cannot specify notPorts with a service selector"))
    return problems


def rules_direction_problems(ingress: list[Rule] | None, egress: list[Rule] | None,
                             needs_service_namespace: bool = False) -> list[tuple[Loc, str]]:
    """Checks that depend on a rule's direction (services, HTTP), located from the spec."""
    problems: list[tuple[Loc, str]] = []
    for i, r in enumerate(egress or []):
        if r.source is not None and r.source.services is not None:
            problems.append((("egress", i, "source", "services"), "not allowed in egress rule source"))
        if r.http is not None:
            problems.append((("egress", i, "http"), "not allowed in egress rules"))
        if needs_service_namespace and r.destination is not None and r.destination.services is not None \
                and not r.destination.services.namespace:
            problems.append((("egress", i, "destination", "services", "namespace"), "must specify a namespace"))
    for i, r in enumerate(ingress or []):
        if r.destination is not None and r.destination.services is not None:
            problems.append((("ingress", i, "destination", "services"), "not allowed in ingress rule destination"))
        if needs_service_namespace and r.source is not None and r.source.services is not None \
                and not r.source.services.namespace:
            problems.append((("ingress", i, "source", "services", "namespace"), "must specify a namespace"))
    return problems
