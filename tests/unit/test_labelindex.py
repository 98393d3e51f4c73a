"""The label index agrees with brute-force evaluation after any sequence of changes."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.selector import parse
from libcalico.selector.labelindex import LabelIndex
from tests.unit.selector_strategies import label_sets, render, trees

SEL_IDS = st.integers(0, 5)
ITEM_IDS = st.integers(0, 8)

selector_text = st.builds(
    lambda tree, rnd: render(tree, rnd), trees, st.randoms(use_true_random=False)
)
# Selectors that exercise each way of indexing: by (key, value), by key, by scanning, never.
FIXED_SELECTORS = [
    "a == 'v'",
    "a in {'v', 'w'} && b != 'v'",
    "has(b) && c contains 'v'",
    "a != 'v'",
    "!has(a)",
    "a not in {'v'}",
    "a == 'v' || b == 'w'",
    "a == 'v' && a == 'w'",
    "",
    "global()",
]

ops = st.one_of(
    st.tuples(st.just("sel"), SEL_IDS, st.one_of(st.sampled_from(FIXED_SELECTORS), selector_text)),
    st.tuples(st.just("delsel"), SEL_IDS, st.none()),
    st.tuples(st.just("labels"), ITEM_IDS, label_sets),
    st.tuples(st.just("dellabels"), ITEM_IDS, st.none()),
)


class Recorder:
    """Keeps the match set that the callbacks describe, failing on an impossible event."""

    def __init__(self) -> None:
        self.pairs: set[tuple[int, int]] = set()

    def on_match(self, sel_id: int, item_id: int) -> None:
        assert (sel_id, item_id) not in self.pairs
        self.pairs.add((sel_id, item_id))

    def on_unmatch(self, sel_id: int, item_id: int) -> None:
        assert (sel_id, item_id) in self.pairs
        self.pairs.remove((sel_id, item_id))


def check(
    index: LabelIndex[int, int],
    rec: Recorder,
    sels: dict[int, str],
    items: dict[int, dict[str, str]],
) -> None:
    expected = {
        (s, i)
        for s, text in sels.items()
        for i, labels in items.items()
        if parse(text).evaluate(labels)
    }
    assert rec.pairs == expected
    for s in range(6):
        assert index.items_matching(s) == {i for (t, i) in expected if t == s}
    for i in range(9):
        assert index.selectors_matching(i) == {s for (s, j) in expected if j == i}
    assert index.selector_ids() == set(sels)
    assert index.item_ids() == set(items)


def apply_ops(index: LabelIndex[int, int], operations: list[tuple[str, int, object]], rec: Recorder,
              sels: dict[int, str], items: dict[int, dict[str, str]]) -> None:
    """Apply generated operations in order, checking the index against brute force after each."""
    for kind, ident, arg in operations:
        if kind == "sel":
            assert isinstance(arg, str)
            index.update_selector(ident, arg)
            sels[ident] = arg
        elif kind == "delsel":
            index.delete_selector(ident)
            sels.pop(ident, None)
        elif kind == "labels":
            assert isinstance(arg, dict)
            index.update_labels(ident, arg)
            items[ident] = dict(arg)
        else:
            index.delete_labels(ident)
            items.pop(ident, None)
        check(index, rec, sels, items)


@settings(max_examples=300, deadline=None)
@given(st.lists(ops, max_size=40))
def test_index_equals_brute_force(operations: list[tuple[str, int, object]]) -> None:
    rec = Recorder()
    index: LabelIndex[int, int] = LabelIndex(rec.on_match, rec.on_unmatch)
    sels: dict[int, str] = {}
    items: dict[int, dict[str, str]] = {}
    apply_ops(index, operations, rec, sels, items)


def test_callbacks_and_queries() -> None:
    events: list[tuple[str, str, str]] = []
    index: LabelIndex[str, str] = LabelIndex(
        lambda s, i: events.append(("match", s, i)), lambda s, i: events.append(("unmatch", s, i))
    )
    index.update_labels("ep1", {"app": "web", "env": "prod"})
    index.update_labels("ep2", {"app": "db"})
    index.update_selector("web", "app == 'web'")
    index.update_selector("not-prod", "env != 'prod'")
    assert sorted(events) == [("match", "not-prod", "ep2"), ("match", "web", "ep1")]
    events.clear()
    index.update_labels("ep2", {"app": "web", "env": "prod"})
    assert sorted(events) == [("match", "web", "ep2"), ("unmatch", "not-prod", "ep2")]
    events.clear()
    index.update_labels("ep2", {"env": "prod", "app": "web"})  # same labels: no events
    index.update_selector("web", parse('app == "web"'))  # same selector: no events
    assert events == []
    index.update_selector("web", "app in {'db', 'web'} && env == 'dev'")
    assert sorted(events) == [("unmatch", "web", "ep1"), ("unmatch", "web", "ep2")]
    events.clear()
    index.delete_labels("ep1")
    index.delete_labels("missing")
    index.delete_selector("missing")
    assert index.items_matching("not-prod") == frozenset()
    assert index.is_match("web", "ep2") is False
    assert index.labels("ep2") == {"app": "web", "env": "prod"}
    assert str(index.selector("web")) == '(app in {"db", "web"} && env == "dev")'
    index.delete_selector("not-prod")
    assert len(index) == 1 and index.selector_ids() == {"web"}


def test_large_random_workload_matches_brute_force() -> None:
    rnd = random.Random(7)
    keys, vals = ["app", "tier", "env", "team", "zone"], [f"v{i}" for i in range(6)]
    selectors = {
        i: rnd.choice(
            [
                f"app == '{rnd.choice(vals)}'",
                f"tier in {{'{rnd.choice(vals)}', '{rnd.choice(vals)}'}} && has(env)",
                f"has({rnd.choice(keys)})",
                f"env != '{rnd.choice(vals)}'",
                f"team not in {{'{rnd.choice(vals)}'}} || zone == '{rnd.choice(vals)}'",
                f"app == '{rnd.choice(vals)}' && tier starts with 'v'",
            ]
        )
        for i in range(60)
    }
    index: LabelIndex[int, int] = LabelIndex()
    items: dict[int, dict[str, str]] = {}
    for i in range(300):
        items[i] = {k: rnd.choice(vals) for k in keys if rnd.random() < 0.6}
        index.update_labels(i, items[i])
    for s, text in selectors.items():
        index.update_selector(s, text)
    for _ in range(300):
        i = rnd.randrange(350)
        if rnd.random() < 0.2:
            index.delete_labels(i)
            items.pop(i, None)
        else:
            items[i] = {k: rnd.choice(vals) for k in keys if rnd.random() < 0.6}
            index.update_labels(i, items[i])
    for s, text in selectors.items():
        sel = parse(text)
        assert index.items_matching(s) == {i for i, lab in items.items() if sel.evaluate(lab)}


def test_drivers_pick_out_what_a_match_needs() -> None:
    from libcalico.selector.labelindex import driver_options, referenced_keys

    def options(text: str) -> list[frozenset[object]]:
        return [frozenset(o) for o in driver_options(parse(text).root)]

    assert options("a == 'x'") == [frozenset({("a", "x")})]
    assert options("a in {'x', 'y'}") == [frozenset({("a", "x"), ("a", "y")})]
    assert options("a in {}") == [frozenset()]
    assert options("has(a)") == [frozenset({"a"})]
    assert options("a contains 'x'") == [frozenset({"a"})]
    assert options("a == 'x' || b == 'y'") == [frozenset({("a", "x"), ("b", "y")})]
    assert options("a == 'x' && has(b)") == [frozenset({("a", "x")}), frozenset({"b"})]
    assert options("!(!(a == 'x'))") == [frozenset({("a", "x")})]
    for text in [
        "a != 'x'",
        "a not in {'x'}",
        "!has(a)",
        "all()",
        "global()",
        "a == 'x' || b != 'y'",
        "!(a == 'x')",
    ]:
        assert options(text) == [], text
    assert referenced_keys(parse("a == 'x' && !(has(b) || c not in {'d'}) && all()").root) == {
        "a",
        "b",
        "c",
    }


def test_selector_added_before_labels_and_never_matching_selector() -> None:
    index: LabelIndex[str, int] = LabelIndex()
    index.update_selector("never", "a in {}")
    index.update_selector("both", "a == 'x' && a == 'y'")
    index.update_selector("or", "a == 'x' || b == 'y'")
    index.update_labels(1, {"a": "x"})
    index.update_labels(2, {"b": "y"})
    index.update_labels(3, {"c": "z"})
    assert index.items_matching("never") == set() and index.items_matching("both") == set()
    assert index.items_matching("or") == {1, 2}
    index.update_labels(1, {"a": "q", "b": "y"})
    index.update_labels(2, {})
    assert index.items_matching("or") == {1}
    assert index.selectors_matching(1) == {"or"}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(ITEM_IDS, label_sets, max_size=9), st.lists(ops, max_size=30))
def test_bulk_load_then_changes_equal_brute_force(loaded: dict[int, dict[str, str]],
                                                 operations: list[tuple[str, int, object]]) -> None:
    """Label sets loaded in one go before any selector (no key indexed yet) behave as if added one by one."""
    rec = Recorder()
    index: LabelIndex[int, int] = LabelIndex(rec.on_match, rec.on_unmatch)
    index.load(loaded)
    sels: dict[int, str] = {}
    items = {i: dict(labels) for i, labels in loaded.items()}
    check(index, rec, sels, items)
    apply_ops(index, operations, rec, sels, items)


def test_load_after_selectors_matches_and_reports() -> None:
    events: list[tuple[str, int]] = []
    index: LabelIndex[str, int] = LabelIndex(lambda s, i: events.append((s, i)))
    index.update_selector("a", "a == 'x'")
    index.load({1: {"a": "x"}, 2: {"a": "y"}})
    assert events == [("a", 1)] and index.items_matching("a") == {1}
    index.load({1: {"a": "y"}, 3: {"a": "x"}})  # an existing item is updated, a new one added
    assert index.items_matching("a") == {3}


def test_quiet_selector_reports_nothing_but_matches() -> None:
    events: list[tuple[str, str, int]] = []
    index: LabelIndex[str, int] = LabelIndex(lambda s, i: events.append(("+", s, i)),
                                             lambda s, i: events.append(("-", s, i)))
    index.load({1: {"a": "x", "b": "1"}, 2: {"a": "y"}, 3: {"b": "2"}})
    index.update_selector("s", "a == 'x' || b == '2'", quiet=True)
    assert events == [] and set(index.matches_view("s")) == {1, 3}
    index.update_selector("s", "has(a) && b not in {'1'}", quiet=True)  # a replaced selector still reports
    assert sorted(events) == [("+", "s", 2), ("-", "s", 1), ("-", "s", 3)]
    index.update_labels(2, {"a": "y", "b": "1"})
    assert events[-1] == ("-", "s", 2) and index.matches_view("missing") == frozenset()


def test_set_algebra_answers_what_evaluation_answers() -> None:
    """Each selector shape, answered from the index (including parts it can only narrow), on many label sets."""
    from libcalico.selector.algebra import select

    rnd = random.Random(5)
    keys, vals = ["a", "b", "c"], ["x", "y", "xy", ""]
    items = {i: {k: rnd.choice(vals) for k in keys if rnd.random() < 0.6} for i in range(200)}
    index: LabelIndex[int, int] = LabelIndex()
    index.load(items)
    shapes = ["a == 'x'", "a != 'x'", "has(a)", "!has(a)", "a in {'x', 'y'}", "a not in {'x', ''}", "all()",
              "global()", "a == 'x' && b == 'y'", "a == 'x' || b != 'y'", "!(a == 'x' && has(c))",
              "a contains 'y'", "a starts with ''", "a == 'x' && b ends with 'y'", "!(a contains 'x')",
              "(a contains 'x') || has(b)", "a in {}", "!(a not in {'x'})", "all() && a == 'y'"]
    exact_shapes = 0
    for n, text in enumerate(shapes):
        index.update_selector(n, text)
        sel = parse(text)
        want = {i for i, labels in items.items() if sel.evaluate(labels)}
        assert index.items_matching(n) == want, text
        found = select(sel.root, index._labels.keys(), index._with_value, index._with_key)
        if found is not None:
            assert want <= set(found[0]), text  # never narrower than the answer
            exact_shapes += found[2]
            if found[2]:
                assert set(found[0]) == want, text
    assert exact_shapes >= 12
