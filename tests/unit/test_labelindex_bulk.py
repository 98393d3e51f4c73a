"""Label keys indexed in bulk (``LabelIndex.index_keys``) behave as keys indexed one by one.

Keys indexed together get their per-key item set only when something asks for
it (a ``has()`` selector, a driver on a key); every later change must still
agree with brute-force evaluation, whichever keys were indexed that way.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.selector.labelindex import LabelIndex
from tests.unit.selector_strategies import label_sets
from tests.unit.test_labelindex import FIXED_SELECTORS, ITEM_IDS, Recorder, apply_ops, check, ops

KEYS = st.lists(st.sampled_from(["a", "b", "c", "d", "zz"]), max_size=5)




@settings(max_examples=300, deadline=None)
@given(st.dictionaries(ITEM_IDS, label_sets, max_size=9), KEYS, st.lists(ops, max_size=30))
def test_keys_indexed_in_bulk_then_changes_equal_brute_force(loaded: dict[int, dict[str, str]], keys: list[str],
                                                            operations: list[tuple[str, int, object]]) -> None:
    rec = Recorder()
    index: LabelIndex[int, int] = LabelIndex(rec.on_match, rec.on_unmatch)
    index.load(loaded)
    index.index_keys(keys)
    items = {i: dict(labels) for i, labels in loaded.items()}
    sels: dict[int, str] = {}
    check(index, rec, sels, items)
    apply_ops(index, operations, rec, sels, items)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(ITEM_IDS, label_sets, max_size=9), st.lists(ops, max_size=20))
def test_changes_before_a_key_set_is_made_are_in_it(loaded: dict[int, dict[str, str]],
                                                     operations: list[tuple[str, int, object]]) -> None:
    """Label changes between the bulk indexing and the first has() still reach the key's item set."""
    rec = Recorder()
    index: LabelIndex[int, int] = LabelIndex(rec.on_match, rec.on_unmatch)
    index.load(loaded)
    index.index_keys(["a", "b", "c"])
    items = {i: dict(labels) for i, labels in loaded.items()}
    sels: dict[int, str] = {}
    label_ops = [op for op in operations if op[0] in ("labels", "dellabels")]
    apply_ops(index, label_ops, rec, sels, items)
    apply_ops(index, [("sel", 0, "has(a)"), ("sel", 1, "has(b) || has(c)"), ("sel", 2, FIXED_SELECTORS[2])],
           rec, sels, items)
    apply_ops(index, operations, rec, sels, items)


def test_bulk_indexing_indexes_once_and_defers_the_key_sets() -> None:
    index: LabelIndex[str, str] = LabelIndex()
    index.load({"x": {"a": "1", "b": "2"}, "y": {"a": "1"}, "z": {"c": "3"}})
    index.index_keys(["a", "b", "nobody"])
    assert index.items_matching("none") == frozenset()
    index.update_selector("s", "a == '1'", quiet=True)
    assert index.items_matching("s") == {"x", "y"}
    index.update_selector("t", "has(b)", quiet=True)
    assert index.items_matching("t") == {"x"}
    index.update_labels("z", {"a": "1", "b": "9"})
    assert index.items_matching("s") == {"x", "y", "z"} and index.items_matching("t") == {"x", "z"}
