"""Desired vs programmed nftables state: hashes, incremental and replace batches, kernel read-back."""

from __future__ import annotations

import pytest

from services.felix.dataplane.ipsets import MapDef, SetDef
from services.felix.dataplane.kernelstate import parse_table
from services.felix.dataplane.ruleset import (
    BaseSpec,
    DesiredTable,
    NeedsReplace,
    TableState,
    commit,
    make_chain,
    plan_incremental,
    plan_replace,
    snapshot,
)

V4 = SetDef("cali40s-x", "ipv4_addr", True)


def test_hashes_chain_through_the_rules() -> None:
    one = make_chain("c", ["a", "b", "c"])
    two = make_chain("c", ["A", "b", "c"])
    assert one.hashes == make_chain("c", ["a", "b", "c"]).hashes
    assert all(x != y for x, y in zip(one.hashes, two.hashes, strict=True))  # a change ripples down
    assert make_chain("d", ["a"]).hashes[0] != one.hashes[0]  # the chain name is part of the hash
    assert len(set(one.hashes)) == 3


def desired_with(chains: dict[str, list[str]], sets: dict[str, frozenset[str]] | None = None) -> DesiredTable:
    table = DesiredTable()
    for name, rules in chains.items():
        table.put_chain(make_chain(name, rules))
    for name, elements in (sets or {}).items():
        table.put_set(SetDef(name, "ipv4_addr", True), elements)
    return table


def test_incremental_batch_creates_then_fills_then_tears_down() -> None:
    actual = TableState()
    table = desired_with({"cali-a": ["drop"], "cali-b": ["jump cali-a"]}, {"cali40s-x": frozenset({"10.0.0.1"})})
    table.ensure_map(MapDef("cali-to-wl-dispatch"))
    table.put_map_entry(MapDef("cali-to-wl-dispatch"), "cali1", "jump cali-b")
    chains, sets, maps = table.clear_dirty()
    text = plan_incremental(table, actual, chains, sets, maps).text().splitlines()
    assert text[0] == "add table inet calico"
    creates = [i for i, line in enumerate(text) if line.startswith("add chain") or line.startswith("add set")
               or line.startswith("add map")]
    rules = [i for i, line in enumerate(text) if line.startswith("add rule")]
    assert max(creates) < min(rules)  # every object exists before a rule refers to it
    assert 'add element inet calico cali-to-wl-dispatch { "cali1" : jump cali-b }' in text
    assert any(line.startswith('add rule inet calico cali-b jump cali-a comment "cali:') for line in text)
    commit(table, actual, chains, sets, maps)
    assert actual == snapshot(table)

    # Remove b (and its map entry), change the set: entry removal and flush before the delete.
    table.drop_chain("cali-b")
    table.put_map_entry(MapDef("cali-to-wl-dispatch"), "cali1", None)
    table.put_set(V4, frozenset({"10.0.0.2"}))
    chains, sets, maps = table.clear_dirty()
    text = plan_incremental(table, actual, chains, sets, maps).text().splitlines()
    assert text.index("delete element inet calico cali40s-x { 10.0.0.1 }") < text.index(
        "add element inet calico cali40s-x { 10.0.0.2 }")
    entry = text.index('delete element inet calico cali-to-wl-dispatch { "cali1" }')
    assert entry < text.index("flush chain inet calico cali-b") < text.index("delete chain inet calico cali-b")
    commit(table, actual, chains, sets, maps)
    assert "cali-b" not in actual.chains and actual.sets["cali40s-x"][1] == frozenset({"10.0.0.2"})


def test_unchanged_objects_produce_an_empty_batch() -> None:
    table = desired_with({"cali-a": ["drop"]}, {"cali40s-x": frozenset({"10.0.0.1"})})
    actual = snapshot(table)
    table.put_chain(make_chain("cali-a", ["drop"]))
    table.put_set(V4, frozenset({"10.0.0.1"}))
    assert plan_incremental(table, actual, ["cali-a"], ["cali40s-x"], []).empty


def test_set_of_another_type_needs_a_replace() -> None:
    table = desired_with({}, {"cali40s-x": frozenset()})
    actual = TableState(sets={"cali40s-x": (SetDef("cali40s-x", "ipv6_addr", True), frozenset())})
    with pytest.raises(NeedsReplace):
        plan_incremental(table, actual, [], ["cali40s-x"], [])


def test_replace_keeps_objects_and_swaps_content_in_one_batch() -> None:
    base = BaseSpec("filter", "forward", 0)
    table = DesiredTable()
    table.put_chain(make_chain("filter-FORWARD", ["accept"], base))
    table.put_set(V4, frozenset({"10.0.0.1"}))
    kernel = TableState(
        chains={"filter-FORWARD": (base, ("zzz",)), "cali-stale": (None, ()),
                "filter-INPUT": (BaseSpec("filter", "input", 0, "drop"), ())},
        sets={"cali40s-x": (V4, frozenset({"10.9.9.9"})), "cali40s-old": (V4, frozenset())},
        maps={"cali-old-map": (MapDef("cali-old-map"), {"cali9": "jump cali-stale"})},
    )
    lines = plan_replace(table, kernel).text().splitlines()
    assert lines[:2] == ["add table inet calico", "flush table inet calico"]
    assert "delete chain inet calico cali-stale" in lines
    assert "delete chain inet calico filter-INPUT" in lines  # policy drop is not ours: recreated (here: dropped)
    assert "delete set inet calico cali40s-old" in lines and "delete map inet calico cali-old-map" in lines
    assert "flush set inet calico cali40s-x" in lines and "delete set inet calico cali40s-x" not in lines
    assert not any(line.startswith("add chain inet calico filter-FORWARD") for line in lines)  # hook kept
    assert lines.index("flush map inet calico cali-old-map") < lines.index("delete chain inet calico cali-stale")
    assert "add element inet calico cali40s-x { 10.0.0.1 }" in lines
    assert lines[-1].startswith("add rule inet calico filter-FORWARD accept comment")


def test_kernel_listing_reads_back_as_programmed() -> None:
    chain = make_chain("cali-a", ["drop", "accept"])
    listing = {"nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {"table": {"family": "inet", "name": "calico", "handle": 1}},
        {"set": {"family": "inet", "name": "cali40s-x", "table": "calico", "type": "ipv4_addr", "handle": 2,
                 "flags": ["interval"], "elem": [{"prefix": {"addr": "10.0.0.0", "len": 8}}, "11.0.0.1"]}},
        {"set": {"family": "inet", "name": "cali40n-p", "table": "calico", "handle": 3,
                 "type": ["ipv4_addr", "inet_proto", "inet_service"], "elem": [{"concat": ["10.0.0.1", 6, 80]}]}},
        {"map": {"family": "inet", "name": "cali-to-wl-dispatch", "table": "calico", "type": "ifname",
                 "handle": 4, "map": "verdict", "elem": [["cali1", {"jump": {"target": "cali-tw-cali1"}}]]}},
        {"chain": {"family": "inet", "table": "calico", "name": "cali-a", "handle": 5}},
        {"chain": {"family": "inet", "table": "calico", "name": "filter-FORWARD", "handle": 6, "type": "filter",
                   "hook": "forward", "prio": 0, "policy": "accept"}},
        {"rule": {"chain": "cali-a", "comment": f"cali:{chain.hashes[0]}", "expr": []}},
        {"rule": {"chain": "cali-a", "comment": f"cali:{chain.hashes[1]}", "expr": []}},
        {"rule": {"chain": "filter-FORWARD", "expr": []}},
    ]}
    state = parse_table(listing)
    assert state is not None
    assert state.chains["cali-a"] == (None, chain.hashes)
    assert state.chains["filter-FORWARD"] == (BaseSpec("filter", "forward", 0, "accept"), ("",))
    assert state.sets["cali40s-x"] == (V4, frozenset({"10.0.0.0/8", "11.0.0.1"}))
    assert state.sets["cali40n-p"][1] == frozenset({"10.0.0.1 . 6 . 80"})
    assert state.sets["cali40n-p"][0].type == "ipv4_addr . inet_proto . inet_service"
    assert state.maps["cali-to-wl-dispatch"] == (MapDef("cali-to-wl-dispatch"), {"cali1": "jump cali-tw-cali1"})
    assert parse_table(None) is None
