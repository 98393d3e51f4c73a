"""The bulk replace of IP set members (joined text, no parse per member) against the member-by-member parse.

Differential: the same memberships go through ``IPSetMembers.replace`` (bulk when every member is written
the usual way) and through the per-member parse (``_parse_all``, the path every other membership takes);
elements, set names, kinds and the result of later deltas must be identical. Worlds: the dataplane
benchmark's IP sets, an e2e-like world (pod /32s shared by many sets, one big named-port set) and members
that must leave the bulk path (nets, IPv6, spaces, leading zeros, upper-case protocols, bad ports).
"""

from __future__ import annotations

import argparse
import random

import pytest

from benchmarks.felix_dataplane_bench import build_messages
from services.felix.dataplane import ipsets
from services.felix.dataplane.errors import RenderError
from services.felix.dataplane.filterstate import FilterState
from services.felix.dataplane.ipsets import IPSetMembers
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import IPSetDeltaUpdate, IPSetType, IPSetUpdate, Message


def reference(set_type: IPSetType, members: frozenset[str]) -> IPSetMembers:
    """The members parsed one by one (the path the bulk replace must agree with)."""
    out = IPSetMembers(set_type, "ref")
    out._parse_all(members)
    return out


def same(bulk: IPSetMembers, ref: IPSetMembers) -> None:
    for version in (4, 6):
        assert bulk.elements(version) == ref.elements(version)
        assert bulk.interval(version) == ref.interval(version)
    assert [n.split("-")[0] for n in bulk.set_names()] == [n.split("-")[0] for n in ref.set_names()]
    assert len(bulk) == len(ref)


def bench_sets() -> list[IPSetUpdate]:
    msgs, _ = build_messages(argparse.Namespace(seed=1, members=10_000, policies=50, endpoints=5))
    return [m for m in msgs if isinstance(m, IPSetUpdate)]


def e2e_like_sets(seed: int = 3) -> list[IPSetUpdate]:
    """Pod addresses each in several sets, sets of 0-3,000 members, one big named-port set."""
    rnd = random.Random(seed)
    pods = [f"10.{100 + i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(3000)]
    out = []
    for s in range(60):
        size = rnd.choice([0, 1, 5, 40, 300, 3000])
        out.append(IPSetUpdate(f"s:{s}", IPSetType.NET, frozenset(f"{p}/32" for p in rnd.sample(pods, size))))
    named = frozenset(f"{p},{rnd.choice(['tcp', 'udp', 'sctp', 'udplite'])}:{rnd.choice([0, 53, 80, 65535])}"
                      for p in pods)
    out.append(IPSetUpdate("n:0", IPSetType.IP_AND_PORT, named))
    return out


ODD_NET = ["10.0.0.0/8", "10.1.2.3/31", "fd00::1/128", " 10.9.9.9/32", "10.9.9.8", "10.9.9.7/032",
           "10.1.1.1/33", "010.1.1.1/32", "10.1.1.1/32/32", "10.1.1.1/32\n10.1.1.2/32", "a/32", "/32"]
ODD_PORTS = ["10.0.0.1,TCP:80", "10.0.0.1,:80", "10.0.0.1,tcp:080", "10.0.0.1,tcp:65536", "fd00::1,tcp:80",
             "10.0.0.1/32,tcp:80", " 10.0.0.1,tcp:80", "10.0.0.1,tcp:80\n10.0.0.2,tcp:80", "10.0.0.01,tcp:80"]


@pytest.mark.parametrize("world", ["bench", "e2e-like"])
def test_bulk_replace_equals_the_parse_one_by_one(world: str) -> None:
    updates = bench_sets() if world == "bench" else e2e_like_sets()
    ipsets._HOST_V4.clear()
    bulk_taken = 0
    for update in updates:
        bulk = IPSetMembers(update.type, update.id)
        bulk.replace(update.members)
        bulk_taken += bulk._lazy is not None
        same(bulk, reference(update.type, update.members))
    assert bulk_taken == sum(1 for u in updates if u.members)  # the usual members all went the bulk way


ODD_CASES = ([(IPSetType.NET, frozenset({"10.65.0.2/32", "10.65.0.3/32"}), odd) for odd in ODD_NET]
             + [(IPSetType.IP_AND_PORT, frozenset({"10.65.0.2,tcp:80", "10.65.0.3,udp:53"}), odd) for odd in ODD_PORTS])


@pytest.mark.parametrize(("set_type", "usual", "odd"), ODD_CASES)
def test_odd_members_leave_the_bulk_path_with_the_same_result(set_type: IPSetType, usual: frozenset[str],
                                                               odd: str) -> None:
    """Net members and named-port members alike: one odd member among usual ones, the same result (or error)."""
    members = usual | {odd}
    try:
        ref = reference(set_type, members)
    except RenderError as exc:
        with pytest.raises(RenderError) as info:
            IPSetMembers(set_type, "ref").replace(members)
        assert str(info.value) == str(exc)
        return
    bulk = IPSetMembers(set_type, "s")
    bulk.replace(members)
    same(bulk, ref)


def test_deltas_after_a_bulk_replace_equal_deltas_after_a_parse() -> None:
    start = frozenset(f"10.65.{i // 256}.{i % 256}/32" for i in range(500))
    steps = [(frozenset({"10.0.0.0/8"}), frozenset({"10.65.0.1/32"})),  # a net: now an interval set
             (frozenset({"10.66.0.1/32", "fd00::1/128"}), frozenset({"10.0.0.0/8"})),
             (frozenset(), frozenset({"10.66.0.1/32", "fd00::1/128", "10.65.0.2/32"}))]
    bulk, ref = IPSetMembers(IPSetType.NET, "s"), reference(IPSetType.NET, start)
    bulk.replace(start)
    assert bulk._lazy is not None  # (bulk-replaced: its first delta parses the members)
    same(bulk, ref)
    for added, removed in steps:
        bulk.update(added, removed)
        ref.update(added, removed)
        same(bulk, ref)
    with pytest.raises(RenderError):  # a bad delta on a bulk-replaced set: the membership stays as it was
        bulk.update(frozenset({"nonsense"}), frozenset({"10.65.0.3/32"}))
    same(bulk, ref)


def fold(messages: list[Message], bulk: bool, monkeypatch: pytest.MonkeyPatch) -> FilterState:
    with monkeypatch.context() as patch:
        if not bulk:
            patch.setattr(ipsets, "_bulk_elements", lambda members, set_type: None)
        state = FilterState(DataplaneSettings(refresh_interval=0, route_refresh_interval=0))
        for msg in messages:
            state.apply(msg)  # type: ignore[arg-type]
        state.render_pending()
    return state


def test_whole_table_is_the_same_with_and_without_the_bulk_path(monkeypatch: pytest.MonkeyPatch) -> None:
    msgs, _ = build_messages(argparse.Namespace(seed=1, members=10_000, policies=200, endpoints=20))
    sets = e2e_like_sets()
    msgs = [*msgs, *sets, IPSetDeltaUpdate(sets[4].id, frozenset({"10.0.0.0/8"}), frozenset())]
    with_bulk, without = fold(msgs, True, monkeypatch), fold(msgs, False, monkeypatch)
    assert with_bulk.table.sets == without.table.sets
    assert with_bulk.table.chains == without.table.chains
    assert len(with_bulk.table.sets) > 500
