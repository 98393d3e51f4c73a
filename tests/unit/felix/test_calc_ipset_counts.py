"""IP-set member counts made at activation over loaded items: all-once (kept frozen) and shared members."""

from __future__ import annotations

from libcalico.selector import parse
from services.felix.calc.ipsets import IPSetDef, IPSetIndex


def loaded(nets: dict[str, tuple[str, ...]]) -> tuple[IPSetIndex, list[tuple[str, str, str]]]:
    """An index with items bulk-loaded (label ext on each), reporting member events."""
    events: list[tuple[str, str, str]] = []
    index = IPSetIndex(lambda s, m: events.append(("+", s, m)), lambda s, m: events.append(("-", s, m)))
    index.load({item: {"ext": "1"} for item in nets}, nets, {})
    return index, events


def test_distinct_members_then_changes_count_from_one() -> None:
    index, events = loaded({"a": ("10.0.0.1/32",), "b": ("10.0.0.2/32",)})
    defn = IPSetDef(parse("has(ext)"))
    index.activate(defn)
    assert index.members(defn.id) == {"10.0.0.1/32", "10.0.0.2/32"}
    assert events == []  # a new set's first members are not reported
    index.update_item("c", {"ext": "1"}, ("10.0.0.1/32",), ())  # a second holder of a member: no event
    index.delete_item("a")  # one holder left: still a member
    assert index.members(defn.id) == {"10.0.0.1/32", "10.0.0.2/32"}
    assert events == []
    index.delete_item("c")
    index.delete_item("b")
    assert index.members(defn.id) == frozenset()
    assert events == [("-", defn.id, "10.0.0.1/32"), ("-", defn.id, "10.0.0.2/32")]


def test_shared_member_at_activation_is_counted_twice() -> None:
    index, events = loaded({"a": ("10.0.0.1/32",), "b": ("10.0.0.1/32",), "c": ("10.0.0.3/32", "10.0.0.4/32")})
    defn = IPSetDef(parse("has(ext)"))
    index.activate(defn)
    assert index.members(defn.id) == {"10.0.0.1/32", "10.0.0.3/32", "10.0.0.4/32"}
    index.delete_item("a")
    assert index.members(defn.id) == {"10.0.0.1/32", "10.0.0.3/32", "10.0.0.4/32"}
    index.delete_item("b")
    index.delete_item("c")
    assert index.members(defn.id) == frozenset()
    assert sorted(events) == [("-", defn.id, m) for m in ("10.0.0.1/32", "10.0.0.3/32", "10.0.0.4/32")]


def test_members_is_a_frozenset_and_deactivation_forgets() -> None:
    index, _ = loaded({"a": ("10.0.0.1/32",)})
    defn = IPSetDef(parse("has(ext)"))
    index.activate(defn)
    assert isinstance(index.members(defn.id), frozenset)
    index.deactivate(defn.id)
    assert index.members(defn.id) == frozenset()
    index.activate(defn)  # activated again: counted afresh
    index.delete_item("a")
    assert index.members(defn.id) == frozenset()
