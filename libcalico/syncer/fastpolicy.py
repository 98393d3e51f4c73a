"""Fast acceptance of policies and profiles (see :mod:`.fastpath`): never more lenient than the models.

Restates, for the plain form, ``policy.NetworkPolicy``, ``policy.GlobalNetworkPolicy``,
``profile.Profile`` and their rules (``rules.Rule``, ``EntityRule``, ``ICMPFields``,
``ServiceAccountMatch``, ``RuleMetadata``, ``rule_problems``). Not restated, so answered
False (the model decides): HTTP matches, service matches, a NetworkPolicy's ``status``.
Selectors are checked by the very parser the models call (its results are cached, so the
calculation graph's own parse of the same text is free).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from libcalico.protocols import PROTOCOL_NUMBERS
from libcalico.syncer.fastpath import (
    ANNOTATION_KEYS,
    MEMO_LIMIT,
    NAMES,
    NETS,
    PORT_NAMES,
    V3,
    labels_ok,
    metadata_ok,
    subdomain,
)

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = rf"{_LABEL}(?:\.{_LABEL})*"
_NP_NAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})?|(?:knp|ossg)\.default\.{_SUBDOMAIN}", re.ASCII)
_GNP_NAME_RE = re.compile(rf"(?:{_LABEL}\.)?{_LABEL}", re.ASCII)
GLOBAL_SELECTOR = "global()"

_ACTIONS = frozenset({"Allow", "Deny", "Log", "Pass"})
_PORT_PROTOCOLS = frozenset({6, 17, 132})
_ICMP_V4, _ICMP_V6 = 1, 58
_RULE = frozenset({"action", "ipVersion", "protocol", "icmp", "notProtocol", "notICMP", "source", "destination",
                   "metadata"})
_RULE_METADATA = frozenset({"annotations"})
_ENTITY = frozenset({"nets", "selector", "namespaceSelector", "ports", "notNets", "notSelector", "notPorts",
                     "serviceAccounts"})
_ICMP = frozenset({"type", "code"})
_SERVICE_ACCOUNTS = frozenset({"names", "selector"})
_POLICY_SPEC = frozenset({"tier", "order", "ingress", "egress", "selector", "types", "serviceAccountSelector",
                          "performanceHints"})
_GLOBAL_SPEC = _POLICY_SPEC | {"doNotTrack", "preDNAT", "applyOnForward", "namespaceSelector"}
_PROFILE_SPEC = frozenset({"ingress", "egress", "labelsToApply"})
_TOP = frozenset({"apiVersion", "kind", "metadata", "spec"})
_TYPES = frozenset({"Ingress", "Egress"})
_HINTS = frozenset({"AssumeNeededOnEveryNode"})
_EMPTY: dict[str, Any] = {}

_selectors_ok: set[str] = set()


def selector_ok(text: Any) -> bool:
    """A selector the models' parser accepts (fields.check_selector)."""
    if text.__class__ is not str:
        return False
    if text in _selectors_ok:
        return True
    from libcalico.selector import parse

    try:
        parse(text)
    except (ValueError, TypeError, RecursionError):  # SelectorError is a ValueError: let the model decide
        return False
    if len(_selectors_ok) >= MEMO_LIMIT:
        _selectors_ok.clear()
    _selectors_ok.add(text)
    return True


def _protocol_number(value: Any) -> int:
    """The number of a valid protocol (fields._protocol, protocol_number); 0 when not the plain form."""
    cls = value.__class__
    if cls is int:
        return value if 0 < value < 256 else 0
    if cls is str:
        number = PROTOCOL_NUMBERS.get(value)
        if number is not None:
            return number
        if value.isascii() and value.isdigit() and 0 < int(value) < 256:
            return int(value)
    return 0


def port_ok(port: Any) -> bool:
    """A rule port: number, ``min:max`` range or port name (fields._rule_port), ASCII digits only."""
    cls = port.__class__
    if cls is int:
        return 0 < port < 65536
    if cls is not str or not port or not port.isascii():
        return False
    if ":" in port:
        low, _, high = port.partition(":")
        return (low.isdigit() and high.isdigit() and 0 < int(low) <= int(high) < 65536)
    if port.isdigit():
        return 0 < int(port) < 65536
    return port in PORT_NAMES.ok or PORT_NAMES(port)


def _ports_ok(ports: Any) -> bool:
    if ports.__class__ is not list or len(ports) > 50:
        return False
    for port in ports:
        if not port_ok(port):
            return False
    return True


def _nets_versions(nets: Any) -> set[int] | None:
    """The IP versions of a list of masked networks (fields.Net), None when not all valid."""
    if nets.__class__ is not list or len(nets) > 256:
        return None
    known = NETS.known
    versions = set()
    for net in nets:
        if net.__class__ is not str:
            return None
        version = known.get(net) or NETS(net)
        if not version:
            return None
        versions.add(version)
    return versions


def _icmp_ok(icmp: Any) -> bool:
    if icmp.__class__ is not dict or not icmp.keys() <= _ICMP:
        return False
    kind, code = icmp.get("type"), icmp.get("code")
    if kind is not None and (kind.__class__ is not int or not 0 <= kind <= 254):
        return False
    if code is not None and (code.__class__ is not int or not 0 <= code <= 255 or kind is None):
        return False
    return True


def _entity(entity: Any, has_ports: list[bool], versions: list[set[int]]) -> bool:
    """An EntityRule; notes whether it matches on ports and the (non-empty) IP versions of its nets.

    Only the fields the map has are looked at (a rule side has one or two of
    eight: ~0.7 µs less a side than asking for each).
    """
    if entity.__class__ is not dict or not entity.keys() <= _ENTITY:
        return False
    for field, value in entity.items():
        if value is None:
            continue
        if field == "selector" or field == "notSelector":
            if not (value in _selectors_ok or selector_ok(value)) or GLOBAL_SELECTOR in value:
                return False
        elif field == "ports" or field == "notPorts":
            if not _ports_ok(value):
                return False
            if value:
                has_ports.append(True)
        elif field == "nets" or field == "notNets":
            found = _nets_versions(value)
            if found is None:
                return False
            if found:
                versions.append(found)
        elif field == "namespaceSelector":
            if not (value in _selectors_ok or selector_ok(value)) or (
                    "global(" in value and value.strip() != GLOBAL_SELECTOR):
                return False
        else:  # serviceAccounts
            if value.__class__ is not dict or not value.keys() <= _SERVICE_ACCOUNTS:
                return False
            names = value.get("names")
            if names is not None and (names.__class__ is not list or any(n.__class__ is not str for n in names)):
                return False
            text = value.get("selector")
            if text is not None and not selector_ok(text):
                return False
    return True


def rule_ok(rule: Any) -> bool:
    """A Rule of the plain form, with Calico's cross-field checks (rules.rule_problems)."""
    if rule.__class__ is not dict or not rule.keys() <= _RULE:
        return False
    get = rule.get
    action = get("action")
    if action.__class__ is not str or action not in _ACTIONS:
        return False
    ip_version = get("ipVersion")
    if ip_version is not None and (ip_version.__class__ is not int or ip_version not in (4, 6)):
        return False
    protocol, not_protocol = get("protocol"), get("notProtocol")
    proto = 0
    if protocol is not None:
        proto = _protocol_number(protocol)
        if not proto:
            return False
    not_proto = 0
    if not_protocol is not None:
        not_proto = _protocol_number(not_protocol)
        if not not_proto:
            return False
    icmp, not_icmp = get("icmp"), get("notICMP")
    if icmp is not None and (not _icmp_ok(icmp) or proto not in (_ICMP_V4, _ICMP_V6)):
        return False
    if not_icmp is not None and not _icmp_ok(not_icmp):
        return False
    if ip_version is not None:
        for number in (proto, not_proto):
            if (number == _ICMP_V4 and ip_version != 4) or (number == _ICMP_V6 and ip_version != 6):
                return False
    metadata = get("metadata")
    if metadata is not None and not _rule_metadata_ok(metadata):
        return False
    has_ports: list[bool] = []
    versions: list[set[int]] = []  # the IP versions of each side's nets and notNets that have any
    source, destination = get("source"), get("destination")
    if (source is not None and not _entity(source, has_ports, versions)) or (
            destination is not None and not _entity(destination, has_ports, versions)):
        return False
    if has_ports and proto not in _PORT_PROTOCOLS:
        return False
    if versions:  # (an empty set of versions passes both checks: only the non-empty ones are kept)
        seen: set[int] = set()
        for found in versions:
            if ip_version is not None and found - {ip_version}:
                return False
            if len(found | seen) > 1:
                return False
            seen |= found
    return True


def _rule_metadata_ok(metadata: Any) -> bool:
    """RuleMetadata: annotations whose keys, lower-cased, are qualified names."""
    if metadata.__class__ is not dict or not metadata.keys() <= _RULE_METADATA:
        return False
    annotations = metadata.get("annotations")
    if annotations is None:
        return True
    if annotations.__class__ is not dict:
        return False
    for key, value in annotations.items():
        if key.__class__ is not str or value.__class__ is not str or (
                key not in ANNOTATION_KEYS.ok and not ANNOTATION_KEYS(key)):
            return False
    return True


def _rules_ok(rules: Any, limit: int | None) -> bool:
    if rules.__class__ is not list or (limit is not None and len(rules) > limit):
        return False
    for rule in rules:
        if not rule_ok(rule):
            return False
    return True


def order_ok(order: Any) -> bool:
    """A policy or tier order (fields._order): a finite number, not a bool (nor an int too large for a float)."""
    if order.__class__ is not int and order.__class__ is not float:
        return False
    try:
        return math.isfinite(order)
    except OverflowError:
        return False


def _unique_choices(items: Any, allowed: frozenset[str], nonempty: bool) -> bool:
    if items.__class__ is not list or (nonempty and not items):
        return False
    for item in items:
        if item.__class__ is not str or item not in allowed:
            return False
    return len(set(items)) == len(items)


def _top(value: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The spec (a map; ``{}`` when left out, as the models default it), or None when not the plain form."""
    if value.get("kind") != kind or value.get("apiVersion") != V3 or not value.keys() <= _TOP:
        return None
    spec = value.get("spec", _EMPTY)
    return spec if spec.__class__ is dict else None


def _policy(kind: str, glob: bool) -> Callable[[dict[str, Any]], bool]:
    pattern = _GNP_NAME_RE if glob else _NP_NAME_RE
    fields = _GLOBAL_SPEC if glob else _POLICY_SPEC
    limit = 1024 if glob else None

    def name_ok(name: str) -> bool:
        return len(name) <= 253 and pattern.fullmatch(name) is not None

    def check(value: dict[str, Any]) -> bool:
        spec = _top(value, kind)
        if spec is None or not spec.keys() <= fields or not metadata_ok(value.get("metadata"), not glob, name_ok):
            return False
        get = spec.get
        tier = get("tier", "default")  # not optional: a null tier is invalid
        if tier.__class__ is not str or (tier not in NAMES.ok and not NAMES(tier)):
            return False
        order = get("order")
        if order is not None and not order_ok(order):
            return False
        for field in ("selector", "serviceAccountSelector", "namespaceSelector"):
            text = get(field)
            if text is not None and (not selector_ok(text) or GLOBAL_SELECTOR in text):
                return False
        types = get("types")
        if types is not None and not _unique_choices(types, _TYPES, True):
            return False
        hints = get("performanceHints")
        if hints is not None and not _unique_choices(hints, _HINTS, False):
            return False
        ingress, egress = get("ingress"), get("egress")
        if (ingress is not None and not _rules_ok(ingress, limit)) or (
                egress is not None and not _rules_ok(egress, limit)):
            return False
        if glob:
            flags = [get(field) for field in ("doNotTrack", "preDNAT", "applyOnForward")]
            if any(f is not None and f.__class__ is not bool for f in flags):
                return False
            do_not_track, pre_dnat, apply_on_forward = flags
            if do_not_track and pre_dnat:
                return False
            if pre_dnat and (egress or "Egress" in (types or ())):
                return False
            if not apply_on_forward and (do_not_track or pre_dnat):
                return False
        return True

    return check


def _profile(value: dict[str, Any]) -> bool:
    spec = _top(value, "Profile")
    if spec is None or not spec.keys() <= _PROFILE_SPEC or not metadata_ok(value.get("metadata"), False, subdomain):
        return False
    get = spec.get
    ingress, egress = get("ingress"), get("egress")
    if (ingress is not None and not _rules_ok(ingress, 1024)) or (egress is not None and not _rules_ok(egress, 1024)):
        return False
    labels = get("labelsToApply")
    return labels is None or labels_ok(labels)


CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "NetworkPolicy": _policy("NetworkPolicy", False),
    "GlobalNetworkPolicy": _policy("GlobalNetworkPolicy", True),
    "Profile": _profile,
}
