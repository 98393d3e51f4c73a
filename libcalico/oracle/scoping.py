"""How Calico scopes selectors before Felix sees them (libcalico-go's syncer update processors).

A v3 policy is not evaluated as written. Before Felix gets it, the update processors rewrite it:

- NetworkPolicy ``selector``: ``(<selector>) && projectcalico.org/namespace == '<ns>'``, then the
  ``serviceAccountSelector`` with every label key prefixed ``pcsa.`` is and-ed on.
- GlobalNetworkPolicy ``selector``: the ``namespaceSelector`` with keys prefixed ``pcns.`` is
  and-ed on and every ``all()`` becomes ``has(projectcalico.org/namespace)``; then the same for
  ``serviceAccountSelector`` (``pcsa.``, ``has(projectcalico.org/serviceaccount)``).
- A rule's source/destination: ``serviceAccounts`` become ``pcsa.``-prefixed selectors and
  ``projectcalico.org/serviceaccount in {names}``; ``namespaceSelector`` becomes a ``pcns.``
  selector (``all()`` → ``has(projectcalico.org/namespace)``, ``global()`` →
  ``!has(projectcalico.org/namespace)``); in a NetworkPolicy without a namespaceSelector the
  rule is limited to the policy's namespace as soon as any selector field is used. The
  ``notSelector`` is never scoped.
- Felix then folds a rule side's notSelector into its positive selector when there is one:
  ``(<selector>) && (!(<notSelector>))`` (``felix/calc/rule_scanner.go``).

Namespace and service-account labels reach endpoints through the ``kns.<ns>`` and
``ksa.<ns>.<sa>`` profiles' ``labelsToApply`` (``pcns.*``, ``pcsa.*``).
"""

from __future__ import annotations

import dataclasses
from functools import lru_cache

from libcalico.resources.policy import GlobalNetworkPolicy, NetworkPolicy
from libcalico.resources.rules import EntityRule
from libcalico.selector import Selector, parse
from libcalico.selector.ast import All, And, Compare, Global, Has, InSet, Node, Not, Or

LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
NAMESPACE_PREFIX = "pcns."
SERVICE_ACCOUNT_PREFIX = "pcsa."
ALL = Selector(All())


def _tree(text: str | None) -> Node | None:
    """The parsed tree of a selector field; None when the field is unset or empty (Go's "")."""
    if text is None or not text.strip():
        return None
    return parse(text).root


def _rewrite(node: Node, prefix: str = "", all_to: Node | None = None, global_to: Node | None = None) -> Node:
    """Prefix every label key and replace all()/global(), as Calico's PrefixVisitor and string replaces do."""
    if isinstance(node, All):
        return all_to if all_to is not None else node
    if isinstance(node, Global):
        return global_to if global_to is not None else node
    if isinstance(node, Has | Compare | InSet):
        return dataclasses.replace(node, key=prefix + node.key) if prefix else node
    if isinstance(node, Not):
        return Not(_rewrite(node.operand, prefix, all_to, global_to))
    if isinstance(node, And | Or):
        return type(node)(tuple(_rewrite(o, prefix, all_to, global_to) for o in node.operands))
    raise TypeError(f"unknown selector node {type(node).__name__}")


def _and(*nodes: Node | None) -> Node | None:
    present = [n for n in nodes if n is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else And(tuple(present))


@lru_cache(maxsize=65536)
def _compiled(text: str, node: Node) -> Selector:
    return Selector(node)


def compiled(node: Node) -> Selector:
    """A Selector for a built tree (cached by its canonical text)."""
    return _compiled(str(node), node)


def policy_selector(policy: NetworkPolicy | GlobalNetworkPolicy) -> Selector:
    """The endpoint selector Felix evaluates for a policy, after Calico's namespace and SA scoping."""
    spec = policy.spec
    root = _tree(spec.selector)
    if isinstance(policy, NetworkPolicy):
        namespace = policy.metadata.namespace or "default"
        root = _and(root, Compare(LABEL_NAMESPACE, "==", namespace))
        sa = _tree(spec.serviceAccountSelector)
        if sa is not None:
            root = _and(root, _rewrite(sa, SERVICE_ACCOUNT_PREFIX))
    else:
        ns_sel = _tree(policy.spec.namespaceSelector)
        if ns_sel is not None:
            root = _and(root, _rewrite(ns_sel, NAMESPACE_PREFIX))
            assert root is not None
            root = _rewrite(root, all_to=Has(LABEL_NAMESPACE))
        sa = _tree(spec.serviceAccountSelector)
        if sa is not None:
            root = _and(root, _rewrite(sa, SERVICE_ACCOUNT_PREFIX))
            assert root is not None
            root = _rewrite(root, all_to=Has(LABEL_SERVICE_ACCOUNT))
    return ALL if root is None else compiled(root)


def _service_account_tree(entity: EntityRule) -> Node | None:
    match = entity.serviceAccounts
    if match is None:
        return None
    selector = _tree(match.selector)
    prefixed = _rewrite(selector, SERVICE_ACCOUNT_PREFIX) if selector is not None else None
    if not match.names:
        return prefixed
    names = InSet(LABEL_SERVICE_ACCOUNT, tuple(sorted(set(match.names))))
    return _and(prefixed, names)


def entity_selectors(entity: EntityRule | None, namespace: str) -> tuple[Selector | None, Selector | None]:
    """(positive, negated) selectors of one side of a rule, as Felix renders them into IP sets.

    ``namespace`` is the NetworkPolicy's namespace, or "" for global policies and profiles.
    When both exist the negated selector is folded into the positive one and None is returned
    for it, as Felix's rule scanner does.
    """
    if entity is None:
        return None, None
    ns_text = entity.namespaceSelector if entity.namespaceSelector and entity.namespaceSelector.strip() else None
    scope: Node | None = None
    if ns_text is not None:
        ns_tree = _tree(ns_text)
        assert ns_tree is not None
        scope = _rewrite(ns_tree, NAMESPACE_PREFIX, all_to=Has(LABEL_NAMESPACE),
                         global_to=Not(Has(LABEL_NAMESPACE)))
    elif namespace:
        scope = Compare(LABEL_NAMESPACE, "==", namespace)
    selector = _and(_service_account_tree(entity), _tree(entity.selector))
    negated = _tree(entity.notSelector)
    if scope is not None and (selector is not None or negated is not None or ns_text is not None):
        selector = _and(scope, selector)
    if selector is not None and negated is not None:
        selector = And((selector, Not(negated)))
        negated = None
    return (compiled(selector) if selector is not None else None,
            compiled(negated) if negated is not None else None)
