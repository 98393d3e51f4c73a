"""Property tests: selector text round-trips through its canonical form and evaluates as Calico defines."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.selector import SelectorError, make_unique_id, parse
from libcalico.selector.ast import Node
from libcalico.selector.parser import _Parser, parse_simple
from tests.unit.selector_strategies import (
    has_double_negation,
    label_sets,
    reference_evaluate,
    selector_texts,
)

LABEL_LISTS = st.lists(label_sets, min_size=1, max_size=8)


@settings(max_examples=400, deadline=None)
@given(selector_texts(), LABEL_LISTS)
def test_parsed_text_evaluates_like_its_tree(
    case: tuple[Node, str], labels: list[dict[str, str]]
) -> None:
    tree, text = case
    sel = parse(text)
    for lab in labels:
        want = reference_evaluate(tree, lab)
        assert sel.evaluate(lab) is want, (text, lab)
        assert sel.root.closure()(lab) is want, (text, lab)


@settings(max_examples=400, deadline=None)
@given(selector_texts(), LABEL_LISTS)
def test_canonical_form_evaluates_like_original(
    case: tuple[Node, str], labels: list[dict[str, str]]
) -> None:
    _, text = case
    sel = parse(text)
    canon = parse(str(sel))
    for lab in labels:
        assert canon.evaluate(lab) is sel.evaluate(lab), (text, str(sel), lab)


@settings(max_examples=400, deadline=None)
@given(selector_texts())
def test_canonical_form_is_a_fixed_point(case: tuple[Node, str]) -> None:
    _, text = case
    sel = parse(text)
    once = str(sel)
    twice = str(parse(once))
    # Calico prints a "!" applied to a parenthesised "!" as "!!", which then parses away;
    # apart from that, canonicalising is idempotent, and always is from the second round on.
    if not has_double_negation(sel.root):
        assert twice == once
        assert parse(once).unique_id() == sel.unique_id()
    assert str(parse(twice)) == twice


@settings(max_examples=200, deadline=None)
@given(selector_texts())
def test_unique_id_is_hash_of_canonical_form(case: tuple[Node, str]) -> None:
    sel = parse(case[1])
    assert sel.unique_id() == make_unique_id("s", str(sel))


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_printing_a_tree_parses_back_to_it(data: st.DataObject) -> None:
    from tests.unit.selector_strategies import trees

    tree = data.draw(trees)
    if has_double_negation(tree):
        return
    assert parse(str(tree)).root == tree


SELECTOR_ALPHABET = st.sampled_from(
    list("ab/.-_ ()!&|=\"'{},") + ["in", "not", "has(", "all()", "contains", "=="]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(SELECTOR_ALPHABET, max_size=20).map("".join))
def test_arbitrary_text_parses_or_raises_selector_error(text: str) -> None:
    try:
        sel = parse(text)
    except SelectorError as err:
        assert 0 <= err.position <= len(text)
        assert text[err.position :].startswith(err.token)
        return
    assert str(parse(str(sel))) == str(parse(str(parse(str(sel)))))


# The parser's fast path (regular expressions for `k == "v"`, `k != "v"`, `k in {...}` joined by &&) must
# build exactly the full parser's tree, and leave everything else (including every error) to it.
SIMPLE_KEYS = st.sampled_from(["a", "app.kubernetes.io/name", "x-y_z.1", "in", "has", "all", "ain", "notin"])
SIMPLE_VALUES = st.sampled_from(["", "v", "a b", "q'", 'd"', "&&", "}", ",", "in {"])
SPACE = st.sampled_from(["", " ", "\t", "  "])


@st.composite
def simple_texts(draw: st.DrawFn) -> str:
    def literal(value: str) -> str:
        quote = draw(st.sampled_from([q for q in "'\"" if q not in value]))
        return quote + value + quote

    parts = []
    for _ in range(draw(st.integers(1, 4))):
        key = draw(SIMPLE_KEYS)
        shape = draw(st.integers(0, 2))
        if shape < 2:
            op = "==" if shape == 0 else "!="
            parts.append(f"{draw(SPACE)}{key}{draw(SPACE)}{op}{draw(SPACE)}{literal(draw(SIMPLE_VALUES))}{draw(SPACE)}")
        else:
            items = [literal(v) for v in draw(st.lists(SIMPLE_VALUES, max_size=3))]
            body = ("," + draw(SPACE)).join(items) + (draw(st.sampled_from(["", ",", " , "])) if items else "")
            parts.append(f"{draw(SPACE)}{key} in{draw(SPACE)}{{{draw(SPACE)}{body}{draw(SPACE)}}}{draw(SPACE)}")
    text = "&&".join(parts)
    # Now and then, break it: the fast path must then step aside.
    mangle = draw(st.integers(0, 9))
    if mangle == 0:
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["&", "|", "!", "(", "\n", "'", "{", ","])) + text[cut:]
    elif mangle == 1:
        text = text.replace("&&", "||", 1)
    elif mangle == 2:
        text = text.replace(" in", "in", 1)
    return text


def full_parse(text: str) -> object:
    try:
        return _Parser(text).parse()
    except SelectorError as err:
        return ("error", err.position, err.reason)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(simple_texts(), selector_texts().map(lambda case: case[1])))
def test_fast_path_builds_the_parsers_tree_or_steps_aside(text: str) -> None:
    fast = parse_simple(text)
    full = full_parse(text)
    if fast is not None:
        assert fast == full, text
    if not isinstance(full, tuple):
        assert parse(text).root == full  # with or without the fast path, parse() gives the parser's tree


def test_fast_path_takes_the_common_shapes() -> None:
    for text in ["app == 'x'", "role == 'db' && env == \"prod\"", "app in {'a', 'b'}", "a != '' && b in {}"]:
        assert parse_simple(text) == _Parser(text).parse(), text
    for text in ["has(a)", "a == 'x' || b == 'y'", "!(a == 'x')", "a contains 'x'", "a not in {'x'}", ""]:
        assert parse_simple(text) is None, text
