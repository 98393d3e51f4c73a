"""Selector scoping: Calico's rewrite of v3 policy and rule selectors into plain label selectors.

How it works (Calico's ``updateprocessors``)::

    namespaceSelector  k == "v"   ──► pcns.k == "v"            (namespace labels, via the kns.<ns> profile)
                       all()      ──► has(projectcalico.org/namespace)     (anything in a namespace)
                       global()   ──► !has(projectcalico.org/namespace)    (HEPs, GlobalNetworkSets)
    serviceAccounts    selector   ──► pcsa.<key> ...            (service-account labels, via ksa.<ns>.<sa>)
                       names      ──► projectcalico.org/serviceaccount in {...}
    namespaced policy, no namespaceSelector ──► projectcalico.org/namespace == "<ns>"

An entity rule's selector, namespace selector and service-account match are
combined into one selector, whose unique id names the IP set.

Calico combines them as text (``(<a>) && (<b>)``) and parses the result; this
module builds the same syntax trees directly. Parentheses add no node, so the
text ``(<a>) && (<b>)`` parses to ``And(a, b)``; a rewritten tree is printed in
canonical form before Calico re-parses it, which collapses runs of ``!`` (the
only change printing and parsing make), so :func:`_reparsed` does the same.
The results are cached by their inputs: rules and policies repeat them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from libcalico.selector import Selector, parse
from libcalico.selector.ast import All, And, Compare, Global, Has, InSet, Node, Not, Or, quote

NAMESPACE_LABEL = "projectcalico.org/namespace"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."

ALL = parse("all()")
_CACHE_SIZE = 8192


def rewrite(node: Node, prefix: str, all_to: Node | None = None, global_to: Node | None = None) -> Node:
    """Return ``node`` with every label key prefixed, ``all()``/``global()`` replaced when asked."""
    if isinstance(node, All):
        return all_to if all_to is not None else node
    if isinstance(node, Global):
        return global_to if global_to is not None else node
    if isinstance(node, (Has, Compare, InSet)):
        return dataclasses.replace(node, key=prefix + node.key)
    if isinstance(node, Not):
        return Not(rewrite(node.operand, prefix, all_to, global_to))
    if isinstance(node, (And, Or)):
        return type(node)(tuple(rewrite(o, prefix, all_to, global_to) for o in node.operands))
    raise TypeError(f"unknown selector node {type(node).__name__}")


def _reparsed(node: Node) -> Node:
    """The tree that parsing ``str(node)`` gives: a run of ``!`` collapses to one or none."""
    if isinstance(node, Not):
        inner = node.operand
        if isinstance(inner, Not):
            return _reparsed(inner.operand)
        return Not(_reparsed(inner))
    if isinstance(node, (And, Or)):
        return type(node)(tuple(_reparsed(o) for o in node.operands))
    return node


def _and(first: Node, second: Node) -> Node:
    """The tree of the text ``(<first>) && (<second>)``."""
    return And((first, second))


def _root(text: str) -> Node:
    return parse(text).root


@lru_cache(maxsize=_CACHE_SIZE)
def _namespace_node(namespace_selector: str) -> Node:
    return _reparsed(rewrite(_root(namespace_selector), NAMESPACE_PREFIX, all_to=Has(NAMESPACE_LABEL),
                             global_to=Not(Has(NAMESPACE_LABEL))))


def namespace_scope(namespace_selector: str) -> str:
    """The endpoint selector for a rule's ``namespaceSelector`` (``pcns.`` keys; ``all()``, ``global()`` rewritten)."""
    return str(_namespace_node(namespace_selector))


def _in_namespace(namespace: str) -> Node:
    return Compare(NAMESPACE_LABEL, "==", namespace)


def in_namespace(namespace: str) -> str:
    """The selector of everything in one namespace."""
    return f"{NAMESPACE_LABEL} == {quote(namespace)}"


def _service_account_node(selector: str | None, names: tuple[str, ...] | None) -> Node | None:
    out = _reparsed(rewrite(_root(selector), SERVICE_ACCOUNT_PREFIX)) if selector else None
    if not names:
        return out
    by_name = InSet(SERVICE_ACCOUNT_LABEL, tuple(sorted(set(names))))
    return _and(out, by_name) if out is not None else by_name


def service_account_selector(match: Mapping[str, Any] | Any) -> str:
    """The endpoint selector for a rule's ``serviceAccounts`` match ("" when it restricts nothing)."""
    fields = _fields(match)
    node = _service_account_node(fields.get("selector"), tuple(fields.get("names") or ()))
    return "" if node is None else str(node)


def _fields(value: Mapping[str, Any] | Any) -> Mapping[str, Any]:
    """A stored map as it is, or a model as the same map."""
    if value.__class__ is dict:  # a stored map: no ABC check (~0.1 µs a rule side)
        return value
    return value if isinstance(value, Mapping) else value.model_dump()


def entity_selector(entity: Mapping[str, Any] | Any, namespace: str | None) -> Selector | None:
    """One selector for what an entity rule's selector fields match, scoped as Calico scopes it (None for none)."""
    e = _fields(entity)
    sa = e.get("serviceAccounts")
    sa_key = None if sa is None else (sa.get("selector") or None, tuple(sa.get("names") or ()))
    return _entity_selector(e.get("selector") or None, e.get("namespaceSelector") or None, sa_key,
                            bool(e.get("notSelector")), namespace)


@lru_cache(maxsize=_CACHE_SIZE)
def _entity_selector(selector: str | None, namespace_selector: str | None,
                     service_accounts: tuple[str | None, tuple[str, ...]] | None, negated: bool,
                     namespace: str | None) -> Selector | None:
    ns_part: Selector | None = None
    if namespace_selector:
        ns_part = _namespace_part(namespace_selector)
    elif namespace:
        ns_part = _namespace_equals(namespace)
    parts: list[Selector] = []
    if service_accounts is not None:
        sa = _service_account_node(*service_accounts)
        if sa is not None:
            parts.append(Selector(sa))
    if selector:
        parts.append(parse(selector))
    part = parts[0] if len(parts) == 1 else (_joined(*parts) if parts else None)
    if ns_part is not None and (part is not None or negated or namespace_selector):
        part = _joined(ns_part, part) if part is not None else ns_part
    return part


def _joined(first: Selector, *rest: Selector) -> Selector:
    """The selector of the text ``(<first>) && (<second>) ...``: ``And`` of their trees, its canonical text
    composed from theirs (``(a && b)``) rather than printed again (~0.5 µs a selector, on every cold start)."""
    parts = (first, *rest)
    return Selector(And(tuple(p.root for p in parts)), "(" + " && ".join(map(str, parts)) + ")")


@lru_cache(maxsize=_CACHE_SIZE)
def _namespace_part(namespace_selector: str) -> Selector:
    return Selector(_namespace_node(namespace_selector))


@lru_cache(maxsize=_CACHE_SIZE)
def _namespace_equals(namespace: str) -> Selector:
    return Selector(_in_namespace(namespace), in_namespace(namespace))


@lru_cache(maxsize=_CACHE_SIZE)
def _policy_part(text: str, prefix: str, all_to: Node | None) -> Selector:
    """A policy's namespaceSelector or serviceAccountSelector rewritten onto ``prefix``-ed keys."""
    return Selector(_reparsed(rewrite(_root(text), prefix, all_to=all_to)))


@lru_cache(maxsize=_CACHE_SIZE)
def policy_selector(
    selector: str | None,
    namespace: str | None,
    namespace_selector: str | None = None,
    service_account_selector: str | None = None,
) -> Selector:
    """The endpoint selector of a whole policy: its selector scoped to its namespace and service accounts."""
    part = parse(selector) if selector else None
    if namespace:
        part = _joined(part, _namespace_equals(namespace)) if part is not None else _namespace_equals(namespace)
    if namespace_selector:
        ns = _policy_part(namespace_selector, NAMESPACE_PREFIX, Has(NAMESPACE_LABEL))
        part = _joined(part, ns) if part is not None else ns
    if service_account_selector:
        # A GlobalNetworkPolicy's all() means "has a service account"; a NetworkPolicy's stays all().
        all_to = None if namespace else Has(SERVICE_ACCOUNT_LABEL)
        sa = _policy_part(service_account_selector, SERVICE_ACCOUNT_PREFIX, all_to)
        part = _joined(part, sa) if part is not None else sa
    return ALL if part is None else part
