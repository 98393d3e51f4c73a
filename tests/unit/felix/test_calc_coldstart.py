"""Cold start: the snapshot loaded in bulk at in-sync gives what applying it update by update gives.

A graph that receives the snapshot before in-sync keeps only the latest update
per key and loads it in bulk at in-sync; a graph that is in sync first and
then receives the same updates applies each incrementally. Their messages
(less the config and in-sync markers) and the resulting dataplanes must be
identical, and the bulk-loaded graph must then follow changes like any other.
"""

from __future__ import annotations

import gc
import random
from typing import Any

import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcalico.syncer import SyncStatus, Update
from services.felix import messages as m
from services.felix.calc import CalcGraph
from tests.unit.felix.test_calc_builders import (
    HOST,
    Harness,
    delete,
    ns_profile,
    policy,
    profile,
    rkey,
    tier,
    wep,
    wep_key,
)
from tests.unit.felix.test_calc_ipsets import NAMESPACES, OPS, Store, to_updates

MARKERS = (m.ConfigUpdate, m.InSync)


def content(messages: list[m.Message]) -> list[m.Message]:
    return [x for x in messages if not isinstance(x, MARKERS)]


def bulk_and_incremental(updates: list[Update]) -> tuple[Harness, Harness, list[m.Message], list[m.Message]]:
    """The same updates as a snapshot (bulk) and after in-sync (incremental); each graph's output."""
    bulk = Harness()
    bulk_out = bulk.start(*updates)
    incremental = Harness()
    incremental.start()
    incremental_out = incremental.send(*updates)
    return bulk, incremental, bulk_out, incremental_out


def same_dataplane(a: Harness, b: Harness) -> None:
    for field in ("ipsets", "ipset_types", "policies", "profiles", "workloads", "hosts", "routes", "vteps", "pools"):
        assert getattr(a.dp, field) == getattr(b.dp, field), field


EXTRA_OPS = st.one_of(
    st.tuples(st.just("tier"), st.sampled_from(("default", "security", "platform")),
              st.sampled_from((None, 10.0, 500.0)), st.sampled_from((None, "Pass", "Deny"))),
    st.tuples(st.just("gnp"), st.integers(0, 2), st.sampled_from(("security", "default", "platform")),
              st.sampled_from((None, 1.0, 5.0)), st.sampled_from(("all()", "has(app)", "role == 'b'")),
              st.sampled_from(((), ("doNotTrack",), ("preDNAT",), ("applyOnForward",))),
              st.sampled_from((None, "team == 'x'", "all()"))),
    st.tuples(st.just("rules-profile"), st.sampled_from(("p0", "p1")),
              st.sampled_from(("app == 'a'", "has(role)", "all()"))),
)


def extra_updates(op: tuple[Any, ...], store: Store) -> list[Update]:
    kind = op[0]
    if kind == "tier":
        return [store.apply(tier(op[1], op[2], op[3]))]
    if kind == "gnp":
        _, i, tier_name, order, selector, flags, ns_selector = op
        extra: dict[str, Any] = {flag: True for flag in flags}
        if "doNotTrack" in flags or "preDNAT" in flags:
            extra["applyOnForward"] = True
        if ns_selector:
            extra["namespaceSelector"] = ns_selector
        return [store.apply(policy(f"g{i}", None, selector, order=order, tier=tier_name, **extra,
                                   ingress=[{"action": "Allow", "source": {"selector": "app == 'b'"}},
                                            {"action": "Pass", "protocol": "TCP",
                                             "destination": {"ports": ["http", 8080]}}]))]
    _, name, selector = op
    return [store.apply(profile(name, {"p": "a"}, [{"action": "Allow", "source": {"selector": selector}}],
                                [{"action": "Deny", "destination": {"notSelector": selector}}]))]


ALL_OPS = st.one_of(OPS, EXTRA_OPS)


def updates_of(ops: list[tuple[Any, ...]], store: Store) -> list[Update]:
    out: list[Update] = []
    for op in ops:
        out += extra_updates(op, store) if op[0] in ("tier", "gnp", "rules-profile") else to_updates(op, store)
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALL_OPS, min_size=1, max_size=30), st.lists(ALL_OPS, max_size=8))
def test_bulk_cold_start_equals_incremental_then_follows_changes(ops: list[tuple[Any, ...]],
                                                                 later: list[tuple[Any, ...]]) -> None:
    store = Store()
    updates = updates_of(ops, store)
    bulk, incremental, bulk_out, incremental_out = bulk_and_incremental(updates)
    assert content(bulk_out) == content(incremental_out)
    same_dataplane(bulk, incremental)
    # Both then follow the same changes with the same messages (deltas included).
    changes = updates_of(later, store)
    assert content(bulk.send(*changes)) == content(incremental.send(*changes))
    same_dataplane(bulk, incremental)


def test_snapshot_keeps_the_last_update_of_each_key() -> None:
    h = Harness()
    h.graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    h.graph.on_updates([ns_profile("default"), wep("a", labels={"app": "x"}), wep("gone")])
    h.graph.on_updates([wep("a", labels={"app": "y"}, ips=("10.0.0.9/32",)), delete(wep_key("gone"))])
    assert h.graph.flush() == [] and h.graph.stats().items == 0  # nothing is computed before in-sync
    h.graph.on_status(SyncStatus.IN_SYNC)
    h.flush()
    assert list(h.dp.workloads) == [m.WorkloadEndpointID("k8s", "default/a", "eth0")]
    assert h.workload("a").ipv4_nets == ("10.0.0.9/32",)
    assert h.graph.stats().items == 1


def test_bad_values_in_the_snapshot_are_logged_and_left_out() -> None:
    bad_wep = wep("bad")
    assert bad_wep.value is not None
    bad_wep.value["spec"]["ipNetworks"] = ["not-an-ip"]
    bad_policy = policy("bad-policy", None, "all()", ingress=[{"action": "Allow", "protocol": "TCP",
                                                               "destination": {"ports": ["no such port!"]}}])
    misnamed = wep("elsewhere")
    assert misnamed.value is not None
    misnamed.value["metadata"]["name"] = "other"
    h = Harness()
    with structlog.testing.capture_logs() as logs:
        h.start(ns_profile("default"), wep("good"), bad_wep, bad_policy, misnamed,
                policy("good-policy", None, "all()", ingress=[{"action": "Allow"}]))
    assert [w.workload for w in h.dp.workloads] == ["default/good"]
    assert [p.name for p in h.dp.policies] == ["good-policy"]
    logged = {e["key"]: e for e in logs if e["event"] == "calc invalid value"}
    assert set(logged) == {wep_key("bad"), wep_key("elsewhere"), rkey("globalnetworkpolicies", "bad-policy")}
    assert "not-an-ip" in logged[wep_key("bad")]["reason"]
    assert "ports" in logged[rkey("globalnetworkpolicies", "bad-policy")]["reason"]
    assert all(e["treated_as"] == "deleted" for e in logged.values())


def test_raw_and_model_readers_give_the_same_graph() -> None:
    """The fast path's say-so only skips the models: the messages are the same either way."""
    rnd = random.Random(11)
    store = Store()
    updates: list[Update] = []
    for i in range(60):
        ns = rnd.choice(NAMESPACES)
        updates.append(store.apply(wep(f"w{i}", ns, rnd.choice((HOST, "node2")), (f"10.0.{i // 200}.{i % 200}/32",),
                                       {"app": rnd.choice("ab"), "role": rnd.choice("ab")},
                                       ports=[{"name": "http", "protocol": "TCP", "port": 80}] if i % 3 else None,
                                       sa=rnd.choice((None, "sa")))))
    for ns in NAMESPACES:
        updates.append(ns_profile(ns, {"team": ns}))
    for i in range(20):
        rule = {"action": rnd.choice(("Allow", "Deny", "Pass")), "protocol": "TCP",
                "source": {"selector": f"app == '{rnd.choice('ab')}'", "namespaceSelector": "team == 'ns0'"},
                "destination": {"ports": [rnd.choice((80, "http", "81:90"))]}}
        updates.append(policy(f"p{i}", rnd.choice((None,) + NAMESPACES), rnd.choice(("all()", "role == 'a'")),
                              ingress=[rule], egress=[{"action": "Allow", "destination": {"nets": ["10.0.0.0/8"]}}],
                              order=float(i % 4)))
    outs = []
    for accepts in (lambda kind, value: True, None):
        graph = CalcGraph(HOST, accepts=accepts)
        graph.on_updates(list(updates))
        graph.on_status(SyncStatus.IN_SYNC)
        outs.append(graph.flush())
    assert outs[0] == outs[1]
    assert sum(isinstance(x, m.ActivePolicyUpdate) for x in outs[0]) >= 5


def test_garbage_collector_is_left_as_it_was() -> None:
    """The bulk load pauses the collector; afterwards it is on (or off) as before, frozen objects stay frozen."""
    was_enabled = gc.isenabled()
    try:
        for enabled in (True, False):
            (gc.enable if enabled else gc.disable)()
            Harness().start(ns_profile("default"), wep("a"))
            assert gc.isenabled() is enabled
        gc.enable()
        gc.freeze()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        Harness().start(ns_profile("default"), wep("a"))
        assert gc.get_freeze_count() >= frozen and gc.isenabled()
    finally:
        gc.unfreeze()
        (gc.enable if was_enabled else gc.disable)()


def test_bulk_load_inherits_profile_labels_for_sets_and_policies() -> None:
    """One endpoint per profile list (no sharing to lean on): namespace labels still select it."""
    updates = [ns_profile("ns0", {"team": "x"}), ns_profile("ns1", {"team": "y"}),
               profile("ksa.ns1.sa", {"pcsa.tier": "b"}),
               wep("a", "ns0", labels={"app": "a"}, ips=("10.0.0.1/32",)),
               wep("b", "ns1", node="node2", labels={"app": "a"}, ips=("10.0.0.2/32",), sa="sa"),
               policy("by-ns", None, "all()", namespaceSelector="team == 'x'",
                      ingress=[{"action": "Allow", "source": {"namespaceSelector": "team == 'y'"}},
                               {"action": "Allow", "source": {"serviceAccounts": {"selector": "tier == 'b'"}}}])]
    bulk, incremental, bulk_out, incremental_out = bulk_and_incremental(updates)
    assert content(bulk_out) == content(incremental_out)
    assert bulk.workload("a", "ns0").tiers[0].ingress_policies == ("by-ns",)
    rules = bulk.dp.policies[m.PolicyID("default", "by-ns")].inbound_rules
    assert [bulk.dp.ipsets[r.src_ip_set_ids[0]] for r in rules] == [{"10.0.0.2/32"}, {"10.0.0.2/32"}]
