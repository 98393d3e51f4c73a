"""Hypothesis strategies for selector tests: random syntax trees, their text, label sets, and a reference evaluator."""

from __future__ import annotations

import random
from collections.abc import Mapping

from hypothesis import strategies as st

from libcalico.selector.ast import All, And, Compare, Global, Has, InSet, Node, Not, Or

KEYS = ["a", "b", "c", "app.kubernetes.io/name", "x-y_z.1"]
# No value holds both quote kinds (Calico's literals cannot express that).
VALUES = ["", "v", "w", "v1", "vw", "q'", 'd"', "a b", "1.2"]
OPS = ["==", "!=", "contains", "starts with", "ends with"]

keys = st.sampled_from(KEYS)
values = st.sampled_from(VALUES)

leaves: st.SearchStrategy[Node] = st.one_of(
    st.builds(Has, keys),
    st.builds(Compare, keys, st.sampled_from(OPS), values),
    st.builds(
        lambda k, vs, neg: InSet(k, tuple(sorted(set(vs))), neg),
        keys,
        st.lists(values, max_size=4),
        st.booleans(),
    ),
    st.just(All()),
    st.just(Global()),
)


def _extend(children: st.SearchStrategy[Node]) -> st.SearchStrategy[Node]:
    group = st.lists(children, min_size=2, max_size=4).map(tuple)
    return st.one_of(st.builds(Not, children), st.builds(And, group), st.builds(Or, group))


trees: st.SearchStrategy[Node] = st.recursive(leaves, _extend, max_leaves=12)

label_sets: st.SearchStrategy[dict[str, str]] = st.dictionaries(keys, values, max_size=len(KEYS))


def _quote(value: str, rnd: random.Random) -> str:
    choices = [q for q in "\"'" if q not in value]
    return (q := rnd.choice(choices)) + value + q


def _ws(rnd: random.Random, need: bool = False) -> str:
    text = rnd.choice(["", "", " ", "  ", "\t"])
    return text or (" " if need else "")


_SPELLINGS = {
    "==": ["=="],
    "!=": ["!="],
    "contains": ["contains"],
    "starts with": ["starts with", "startswith", "starts  with"],
    "ends with": ["ends with", "endswith", "ends\twith"],
}


def render(node: Node, rnd: random.Random, top: bool = True) -> str:
    """Write ``node`` as selector text that parses back to the same meaning, with random spacing and spelling."""
    if isinstance(node, (And, Or)):
        sep = "&&" if isinstance(node, And) else "||"
        body = sep.join(_ws(rnd) + render(o, rnd, False) + _ws(rnd) for o in node.operands)
        return body if top and rnd.random() < 0.5 else "(" + body + ")"
    text = _render_operation(node, rnd)
    if rnd.random() < 0.15:
        text = "(" + _ws(rnd) + text + _ws(rnd) + ")"
    if rnd.random() < 0.1:
        text = "!!" + _ws(rnd) + text
    return text


def _render_operation(node: Node, rnd: random.Random) -> str:
    if isinstance(node, All):
        return rnd.choice(["all()", "all( )"])
    if isinstance(node, Global):
        return rnd.choice(["global()", "global(\t)"])
    if isinstance(node, Has):
        return "has(" + _ws(rnd) + node.key + _ws(rnd) + ")"
    if isinstance(node, Compare):
        op = rnd.choice(_SPELLINGS[node.op])
        need = op[0].isalpha()
        return node.key + _ws(rnd, need) + op + _ws(rnd) + _quote(node.value, rnd)
    if isinstance(node, InSet):
        items = list(node.values) + [v for v in node.values if rnd.random() < 0.3]
        rnd.shuffle(items)
        body = ("," + _ws(rnd)).join(_quote(v, rnd) for v in items)
        if items and rnd.random() < 0.2:
            body += ","
        op = rnd.choice(["not in", "notin", "not  in"]) if node.negated else "in"
        return node.key + _ws(rnd, True) + op + _ws(rnd) + "{" + _ws(rnd) + body + _ws(rnd) + "}"
    if isinstance(node, Not):
        return "!" + _ws(rnd) + render(node.operand, rnd, False)
    raise TypeError(node)


def reference_evaluate(node: Node, labels: Mapping[str, str]) -> bool:
    """Evaluate a tree by Calico's documented semantics, independently of the compiled code."""
    if isinstance(node, (All, Global)):
        return True
    if isinstance(node, Has):
        return node.key in labels
    if isinstance(node, Compare):
        if node.key not in labels:
            return node.op == "!="
        value = labels[node.key]
        return {
            "==": value == node.value,
            "!=": value != node.value,
            "contains": node.value in value,
            "starts with": value.startswith(node.value),
            "ends with": value.endswith(node.value),
        }[node.op]
    if isinstance(node, InSet):
        if node.key not in labels:
            return node.negated
        return (labels[node.key] in node.values) != node.negated
    if isinstance(node, Not):
        return not reference_evaluate(node.operand, labels)
    if isinstance(node, And):
        return all(reference_evaluate(o, labels) for o in node.operands)
    if isinstance(node, Or):
        return any(reference_evaluate(o, labels) for o in node.operands)
    raise TypeError(node)


def has_double_negation(node: Node) -> bool:
    """Whether a ``!`` applies directly to another ``!`` anywhere in the tree."""
    if isinstance(node, Not):
        return isinstance(node.operand, Not) or has_double_negation(node.operand)
    if isinstance(node, (And, Or)):
        return any(has_double_negation(o) for o in node.operands)
    return False


@st.composite
def selector_texts(draw: st.DrawFn) -> tuple[Node, str]:
    """Draw a random tree and one random spelling of it."""
    tree = draw(trees)
    rnd = draw(st.randoms(use_true_random=False))
    return tree, render(tree, rnd)
