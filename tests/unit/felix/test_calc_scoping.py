"""Selector scoping builds the very trees Calico's text recipe gives.

Calico scopes a rule or policy by writing ``(<a>) && (<b>)`` text and parsing
it; :mod:`services.felix.calc.scoping` builds the trees directly. The reference
below is that text recipe (the graph's previous implementation); for random
selectors, namespaces, namespace and service-account selectors the two must
give equal trees (structure, canonical text, unique id), since the unique id
names the IP set.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.selector import Selector, parse
from libcalico.selector.ast import All, And, Compare, Has, Node, Not, quote
from services.felix.calc import rules
from services.felix.calc.scoping import (
    NAMESPACE_LABEL,
    NAMESPACE_PREFIX,
    SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_PREFIX,
    entity_selector,
    namespace_scope,
    policy_selector,
    rewrite,
    service_account_selector,
)
from tests.unit.selector_strategies import render, trees

# ------------------------------------------------------- the text recipe


def _text(node: Node) -> str:
    return str(Selector(node))


def ref_namespace_scope(text: str) -> str:
    root = parse(text).root
    return _text(rewrite(root, NAMESPACE_PREFIX, all_to=Has(NAMESPACE_LABEL), global_to=Not(Has(NAMESPACE_LABEL))))


def ref_service_accounts(match: dict[str, Any]) -> str:
    out = _text(rewrite(parse(match["selector"]).root, SERVICE_ACCOUNT_PREFIX)) if match.get("selector") else ""
    if not match.get("names"):
        return out
    names = ", ".join(quote(n) for n in sorted(set(match["names"])))
    by_name = str(parse(f"{SERVICE_ACCOUNT_LABEL} in {{{names}}}"))
    return f"({out}) && ({by_name})" if out else by_name


def ref_entity(entity: dict[str, Any], namespace: str | None) -> Selector | None:
    """The positive selector of one side of a rule, notSelector folded in, as Calico writes it."""
    ns_sel = ""
    if entity.get("namespaceSelector"):
        ns_sel = ref_namespace_scope(entity["namespaceSelector"])
    elif namespace:
        ns_sel = f"{NAMESPACE_LABEL} == {quote(namespace)}"
    parts = []
    if entity.get("serviceAccounts") is not None:
        sa = ref_service_accounts(entity["serviceAccounts"])
        if sa:
            parts.append(sa)
    if entity.get("selector"):
        parts.append(entity["selector"])
    selector = parts[0] if len(parts) == 1 else ("(" + ") && (".join(parts) + ")" if parts else "")
    if ns_sel and (selector or entity.get("notSelector") or entity.get("namespaceSelector")):
        selector = f"({ns_sel}) && ({selector})" if selector else ns_sel
    if selector and entity.get("notSelector"):
        selector = f"({selector}) && (!({entity['notSelector']}))"
    return parse(selector) if selector else None


def ref_policy(selector: str | None, namespace: str | None, ns_selector: str | None, sa_selector: str | None) -> Selector:
    def append(current: str, extra: str) -> str:
        return f"({current}) && {extra}" if current else extra

    text = selector or ""
    if namespace:
        text = append(text, f"{NAMESPACE_LABEL} == {quote(namespace)}")
    if ns_selector:
        text = append(text, _text(rewrite(parse(ns_selector).root, NAMESPACE_PREFIX, all_to=Has(NAMESPACE_LABEL))))
    if sa_selector:
        all_to = None if namespace else Has(SERVICE_ACCOUNT_LABEL)
        text = append(text, _text(rewrite(parse(sa_selector).root, SERVICE_ACCOUNT_PREFIX, all_to=all_to)))
    return parse(text) if text else parse("all()")


# ------------------------------------------------------------ generators

# Selector text in many spellings, including "!(!x)" trees whose printed form re-parses to something else.
texts = st.builds(lambda tree, seed: render(tree, random.Random(seed)), trees, st.integers(0, 2**16))
maybe_text = st.one_of(st.none(), st.just(""), texts)
namespaces = st.sampled_from([None, "", "default", "prod-1", 'we"ird'])


@st.composite
def entities(draw: st.DrawFn) -> dict[str, Any]:
    entity: dict[str, Any] = {}
    for field in ("selector", "namespaceSelector", "notSelector"):
        value = draw(maybe_text)
        if value is not None:
            entity[field] = value
    if draw(st.booleans()):
        sa: dict[str, Any] = {}
        if draw(st.booleans()):
            sa["names"] = draw(st.lists(st.sampled_from(["a", "b", "c'd", ""]), max_size=3))
        value = draw(maybe_text)
        if value is not None:
            sa["selector"] = value
        entity["serviceAccounts"] = sa
    return entity


def same(got: Selector | None, want: Selector | None) -> None:
    if want is None:
        assert got is None
        return
    assert got is not None
    assert got.root == want.root and str(got) == str(want) and got.unique_id() == want.unique_id()


# ----------------------------------------------------------------- tests


@settings(max_examples=600, deadline=None)
@given(entities(), namespaces)
def test_entity_selector_builds_calicos_tree(entity: dict[str, Any], namespace: str | None) -> None:
    want = ref_entity(entity, namespace)
    sets: dict[str, Any] = {}
    side = rules._side(entity, namespace, "tcp", sets)
    positive = entity_selector(entity, namespace)
    if positive is not None and entity.get("notSelector"):
        positive = rules._with_negation(positive, parse(entity["notSelector"]))
    same(positive, want)
    if want is not None:
        assert side[2] == (want.unique_id(),)  # the rule's source/destination set is that selector's


@settings(max_examples=600, deadline=None)
@given(maybe_text, namespaces, maybe_text, maybe_text)
def test_policy_selector_builds_calicos_tree(selector: str | None, namespace: str | None, ns_selector: str | None,
                                             sa_selector: str | None) -> None:
    same(policy_selector(selector, namespace, ns_selector, sa_selector),
         ref_policy(selector, namespace, ns_selector, sa_selector))


@settings(max_examples=300, deadline=None)
@given(texts)
def test_namespace_scope_text_is_calicos(text: str) -> None:
    assert namespace_scope(text) == str(parse(ref_namespace_scope(text)))


def test_service_account_selector_text() -> None:
    match = {"names": ["b", "a", "b"], "selector": "!(!has(x))"}
    assert service_account_selector(match) == str(parse(ref_service_accounts(match)))
    assert service_account_selector({}) == ""


def test_double_negation_collapses_as_parsing_does() -> None:
    """``!(!has(x))`` prints as ``!!has(pcns.x)``, which Calico re-parses as ``has(pcns.x)``."""
    got = entity_selector({"namespaceSelector": "!(!has(x))"}, None)
    assert got is not None and got.root == Has("pcns.x")
    assert policy_selector(None, None, "!(!has(x))", None).root == Has("pcns.x")


def test_whitespace_selector_is_all_not_an_error() -> None:
    """A blank selector parses as all(); combined with a namespace it stays all() inside the &&."""
    got = policy_selector("  ", "ns", None, None)
    assert got.root == And((All(), Compare(NAMESPACE_LABEL, "==", "ns")))
    assert entity_selector({"selector": " "}, "ns") == Selector(And((Compare(NAMESPACE_LABEL, "==", "ns"), All())))
