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
"""

from __future__ import annotations

import dataclasses

from libcalico.resources.rules import EntityRule, ServiceAccountMatch
from libcalico.selector import Selector, parse
from libcalico.selector.ast import All, And, Compare, Global, Has, InSet, Node, Not, Or, quote

NAMESPACE_LABEL = "projectcalico.org/namespace"
SERVICE_ACCOUNT_LABEL = "projectcalico.org/serviceaccount"
ORCHESTRATOR_LABEL = "projectcalico.org/orchestrator"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."

ALL = parse("all()")


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


def _text(node: Node) -> str:
    return str(Selector(node))


def namespace_scope(namespace_selector: str) -> str:
    """The endpoint selector for a rule's ``namespaceSelector`` (``pcns.`` keys; ``all()``, ``global()`` rewritten)."""
    root = parse(namespace_selector).root
    return _text(rewrite(root, NAMESPACE_PREFIX, all_to=Has(NAMESPACE_LABEL), global_to=Not(Has(NAMESPACE_LABEL))))


def in_namespace(namespace: str) -> str:
    """The selector of everything in one namespace."""
    return f"{NAMESPACE_LABEL} == {quote(namespace)}"


def service_account_selector(match: ServiceAccountMatch) -> str:
    """The endpoint selector for a rule's ``serviceAccounts`` match ("" when it restricts nothing)."""
    out = _text(rewrite(parse(match.selector).root, SERVICE_ACCOUNT_PREFIX)) if match.selector else ""
    if not match.names:
        return out
    names = ", ".join(quote(n) for n in sorted(set(match.names)))
    by_name = str(parse(f"{SERVICE_ACCOUNT_LABEL} in {{{names}}}"))
    return f"({out}) && ({by_name})" if out else by_name


def entity_selector(entity: EntityRule, namespace: str | None) -> str:
    """One selector for what an entity rule's selector fields match, scoped as Calico scopes it ("" for none)."""
    ns_sel = ""
    if entity.namespaceSelector:
        ns_sel = namespace_scope(entity.namespaceSelector)
    elif namespace:
        ns_sel = in_namespace(namespace)
    parts = []
    if entity.serviceAccounts is not None:
        sa = service_account_selector(entity.serviceAccounts)
        if sa:
            parts.append(sa)
    if entity.selector:
        parts.append(entity.selector)
    selector = parts[0] if len(parts) == 1 else ("(" + ") && (".join(parts) + ")" if parts else "")
    if ns_sel and (selector or entity.notSelector or entity.namespaceSelector):
        selector = f"({ns_sel}) && ({selector})" if selector else ns_sel
    return selector


def _append(current: str, extra: str) -> str:
    return f"({current}) && {extra}" if current else extra


def policy_selector(
    selector: str | None,
    namespace: str | None,
    namespace_selector: str | None = None,
    service_account_selector: str | None = None,
) -> Selector:
    """The endpoint selector of a whole policy: its selector scoped to its namespace and service accounts."""
    text = selector or ""
    if namespace:
        text = _append(text, in_namespace(namespace))
    if namespace_selector:
        root = rewrite(parse(namespace_selector).root, NAMESPACE_PREFIX, all_to=Has(NAMESPACE_LABEL))
        text = _append(text, _text(root))
    if service_account_selector:
        # A GlobalNetworkPolicy's all() means "has a service account"; a NetworkPolicy's stays all().
        all_to = None if namespace else Has(SERVICE_ACCOUNT_LABEL)
        root = rewrite(parse(service_account_selector).root, SERVICE_ACCOUNT_PREFIX, all_to=all_to)
        text = _append(text, _text(root))
    return parse(text) if text else ALL
