"""The first snapshot in parts: ``on_status(IN_SYNC)`` + ``flush_early()`` (part A), optionally
``flush_policies()``, then ``flush()`` (part B).

Part A must send exactly the ConfigUpdate, IPAMPoolUpdates and local endpoint
messages that the one flush after ``on_status`` sends (the old way), in its
order, then EndpointsReady; ``flush_policies()`` exactly its ActivePolicyUpdates
and ActiveProfileUpdates, in its order, then PoliciesReady; part B exactly the
rest of that flush, in its order. Compared over random snapshots (the
cold-start corpus), the benchmark's worlds, and validating graphs with bad
endpoints.
"""

from __future__ import annotations

import argparse
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import felix_calc_bench as bench
from libcalico.syncer import SyncStatus, Update
from services.felix import messages as m
from services.felix.calc import CalcGraph
from tests.unit.felix.test_calc_builders import HOST, ns_profile, policy, wep, wep_key
from tests.unit.felix.test_calc_coldstart import ALL_OPS, updates_of
from tests.unit.felix.test_calc_ipsets import Store
from tests.unit.felix.test_calc_validated_workloads import _odd_workloads

EARLY_TYPES = (m.ConfigUpdate, m.IPAMPoolUpdate, m.WorkloadEndpointUpdate, m.HostEndpointUpdate)
POLICY_TYPES = (m.ActivePolicyUpdate, m.ActiveProfileUpdate)


def one_flush(updates: list[Update], host: str = HOST, validate: bool = False) -> tuple[CalcGraph, list[m.Message]]:
    """The old way: in-sync, then one flush."""
    graph = CalcGraph(host, validate_workloads=validate)
    graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    graph.on_updates(list(updates))
    graph.on_status(SyncStatus.IN_SYNC)
    return graph, graph.flush()


def two_parts(updates: list[Update], host: str = HOST, validate: bool = False
              ) -> tuple[CalcGraph, list[m.Message], list[m.Message]]:
    """The daemon's way: in-sync and flush_early (part A), then flush (part B); checks snapshot_pending."""
    graph = CalcGraph(host, validate_workloads=validate)
    graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    graph.on_updates(list(updates))
    assert not graph.snapshot_pending and graph.flush_early() == []
    graph.on_status(SyncStatus.IN_SYNC)
    assert graph.snapshot_pending
    early = graph.flush_early()
    assert graph.snapshot_pending and graph.flush_early() == []  # part A is sent once
    rest = graph.flush()
    assert not graph.snapshot_pending and graph.flush_early() == []
    return graph, early, rest


def three_parts(updates: list[Update], host: str = HOST, validate: bool = False
                ) -> tuple[CalcGraph, list[m.Message], list[m.Message], list[m.Message]]:
    """The daemon's way: part A, then flush_policies, then flush (part B); each part is sent once."""
    graph = CalcGraph(host, validate_workloads=validate)
    graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    graph.on_updates(list(updates))
    graph.on_status(SyncStatus.IN_SYNC)
    assert graph.flush_policies() == []  # not before part A went
    early = graph.flush_early()
    policies = graph.flush_policies()
    assert graph.snapshot_pending and graph.flush_policies() == [] and graph.flush_early() == []
    rest = graph.flush()
    assert not graph.snapshot_pending and graph.flush_policies() == []
    return graph, early, policies, rest


def assert_three_way_split(old: list[m.Message], early: list[m.Message], policies: list[m.Message],
                           rest: list[m.Message]) -> None:
    """Part A as in two parts; then the old flush's policies and profiles (its order) + PoliciesReady; then
    the rest of the old flush."""
    assert early[-1] == m.EndpointsReady() and policies[-1] == m.PoliciesReady()
    assert early[:-1] == [x for x in old if isinstance(x, EARLY_TYPES)]
    assert policies[:-1] == [x for x in old if isinstance(x, POLICY_TYPES)]
    assert rest == [x for x in old if not isinstance(x, (*EARLY_TYPES, *POLICY_TYPES))]
    assert isinstance(rest[-1], m.InSync)


def assert_split(old: list[m.Message], early: list[m.Message], rest: list[m.Message]) -> None:
    """Part A is the old flush's config, pools and endpoints (its order) + EndpointsReady; part B the rest."""
    assert early[-1] == m.EndpointsReady()
    assert early[:-1] == [x for x in old if isinstance(x, EARLY_TYPES)]
    assert rest == [x for x in old if not isinstance(x, EARLY_TYPES)]
    assert isinstance(rest[-1], m.InSync) and not any(isinstance(x, m.EndpointsReady) for x in old + rest)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALL_OPS, min_size=1, max_size=30), st.lists(ALL_OPS, max_size=8), st.booleans())
def test_two_parts_send_what_one_flush_sends_then_follow_changes(ops: list[tuple[Any, ...]],
                                                                 later: list[tuple[Any, ...]],
                                                                 validate: bool) -> None:
    store = Store()
    updates = updates_of(ops, store)
    old_graph, old = one_flush(updates, validate=validate)
    new_graph, early, rest = two_parts(updates, validate=validate)
    assert_split(old, early, rest)
    changes = updates_of(later, store)
    for graph in (old_graph, new_graph):
        graph.on_updates(changes)
    assert old_graph.flush() == new_graph.flush()
    assert old_graph.stats() == new_graph.stats()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALL_OPS, min_size=1, max_size=30), st.lists(ALL_OPS, max_size=8), st.booleans())
def test_three_parts_send_what_one_flush_sends_then_follow_changes(ops: list[tuple[Any, ...]],
                                                                   later: list[tuple[Any, ...]],
                                                                   validate: bool) -> None:
    store = Store()
    updates = updates_of(ops, store)
    old_graph, old = one_flush(updates, validate=validate)
    new_graph, early, policies, rest = three_parts(updates, validate=validate)
    assert_three_way_split(old, early, policies, rest)
    changes = updates_of(later, store)
    for graph in (old_graph, new_graph):
        graph.on_updates(changes)
    assert old_graph.flush() == new_graph.flush()
    assert old_graph.stats() == new_graph.stats()


def _bench_args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"seed": 1, "policies": 1000, "remote": 10_000, "local": 100, **kw})


@pytest.mark.parametrize("validate", [False, True])
def test_the_e2e_benchmark_world_splits_exactly(validate: bool) -> None:
    from benchmarks import felix_e2e_bench as e2e

    updates = bench.syncer_order(bench.e2e_snapshot(_bench_args()))
    _, old = one_flush(updates, e2e.HOST, validate)
    _, early, rest = two_parts(updates, e2e.HOST, validate)
    assert_split(old, early, rest)
    assert sum(isinstance(x, m.WorkloadEndpointUpdate) for x in early) == 100
    assert any(x.endpoint.tiers for x in early if isinstance(x, m.WorkloadEndpointUpdate))
    assert bench.in_one(early, rest) == old  # the benchmark's own check agrees
    _, early3, policies, rest3 = three_parts(updates, e2e.HOST, validate)
    assert_three_way_split(old, early3, policies, rest3)
    assert sum(isinstance(x, m.ActivePolicyUpdate) for x in policies) > 400
    assert bench.in_one(early3, rest3, policies) == old


def test_the_calc_benchmark_world_splits_exactly() -> None:
    _, updates, _, _ = bench.snapshot(_bench_args(seed=7, policies=300, remote=2_000, local=60))
    _, old = one_flush(updates, bench.HOST)
    _, early, rest = two_parts(updates, bench.HOST)
    assert_split(old, early, rest)
    assert sum(isinstance(x, m.WorkloadEndpointUpdate) for x in early) == 60


@pytest.mark.parametrize("validate", [False, True])
def test_a_local_endpoint_that_fails_validation_is_not_in_part_a(validate: bool) -> None:
    bad, spoof, misnamed = _odd_workloads()
    bad_ip = wep("bad-ip")
    assert bad_ip.value is not None
    bad_ip.value["spec"]["ipNetworks"] = ["not-an-ip"]
    updates = [ns_profile("ns0"), ns_profile("default"), bad, spoof, misnamed, bad_ip, wep("good"),
               wep("remote", node="node2", ips=("10.0.0.9/32",)),
               policy("all", None, "all()", ingress=[{"action": "Allow"}])]
    with structlog.testing.capture_logs() as logs:
        _, old = one_flush(updates, validate=validate)
    with structlog.testing.capture_logs() as new_logs:
        _, early, rest = two_parts(updates, validate=validate)
    assert_split(old, early, rest)
    names = sorted(x.id.workload for x in early if isinstance(x, m.WorkloadEndpointUpdate))
    assert names == (["default/good", "default/spoof"] if validate else
                     ["default/bad-mac", "default/good", "default/spoof"])
    logged = {e["key"] for e in new_logs if e["event"] == "calc invalid value"}
    assert logged == {e["key"] for e in logs if e["event"] == "calc invalid value"}
    assert {wep_key("bad-ip"), wep_key("elsewhere")} <= logged
    assert (wep_key("bad-mac") in logged) is validate


def test_snapshot_pending_only_between_the_first_in_sync_and_its_flush() -> None:
    graph = CalcGraph(HOST)
    assert not graph.snapshot_pending and graph.flush_early() == []
    graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    graph.on_updates([ns_profile("default"), wep("a")])
    assert not graph.snapshot_pending
    graph.on_status(SyncStatus.IN_SYNC)
    assert graph.snapshot_pending
    graph.flush()
    assert not graph.snapshot_pending and graph.flush_early() == []
    # A later resync: the graph is incremental by now, nothing is pending.
    graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    graph.on_updates([wep("b", ips=("10.0.0.2/32",))])
    graph.on_status(SyncStatus.IN_SYNC)
    assert not graph.snapshot_pending and graph.flush_early() == []
    assert [type(x) for x in graph.flush()] == [m.WorkloadEndpointUpdate]


def test_an_empty_snapshot_splits_too() -> None:
    _, old = one_flush([])
    _, early, rest = two_parts([])
    assert_split(old, early, rest)
    assert rest == [m.InSync()]
    _, early, policies, rest = three_parts([])
    assert_three_way_split(old, early, policies, rest)
    assert policies == [m.PoliciesReady()]


def test_every_other_call_completes_part_b_first() -> None:
    """stats(), diagnostics, on_updates and on_status run part B's work; the next flush still sends it."""
    updates = [ns_profile("default"), wep("a", labels={"app": "a"}),
               wep("b", node="node2", labels={"app": "a"}, ips=("10.0.0.2/32",)),
               policy("p", None, "all()", ingress=[{"action": "Allow", "source": {"selector": "app == 'a'"}}])]
    _, old = one_flush(updates)
    for poke in ("stats", "ipset_members", "on_updates", "on_status"):
        graph = CalcGraph(HOST)
        graph.on_updates(list(updates))
        graph.on_status(SyncStatus.IN_SYNC)
        early = graph.flush_early()
        if poke == "stats":
            assert graph.stats().active_policies == 1
        elif poke == "ipset_members":
            set_ids = [x.id for x in old if isinstance(x, m.IPSetUpdate)]
            assert graph.ipset_members(set_ids[0]) == next(x.members for x in old if isinstance(x, m.IPSetUpdate))
        elif poke == "on_updates":
            graph.on_updates([])
        else:
            graph.on_status(SyncStatus.IN_SYNC)
        assert graph.snapshot_pending
        assert_split(old, early, graph.flush())


def test_a_sink_graph_sends_the_one_flush() -> None:
    updates = [ns_profile("default"), wep("a", labels={"app": "a"}),
               policy("p", None, "all()", ingress=[{"action": "Allow", "source": {"selector": "app == 'a'"}}])]
    _, old = one_flush(updates)
    got: list[list[m.Message]] = []
    graph = CalcGraph(HOST, sink=got.append)
    graph.on_updates(list(updates))
    graph.on_status(SyncStatus.IN_SYNC)
    assert got == [old] and not graph.snapshot_pending
