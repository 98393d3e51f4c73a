"""The calculation graph end to end: syncer updates in, ordered dataplane messages out.

Every flush goes through :class:`DataplaneModel`, which fails on any ordering
violation, so each test also checks Calico's ordering guarantees.
"""

from __future__ import annotations

from libcalico.syncer import SyncStatus, Update, UpdateType
from services.felix import messages as m
from services.felix.calc import CalcGraph
from tests.unit.felix.test_calc_builders import (
    HOST,
    Harness,
    delete,
    hep,
    netset,
    ns_profile,
    of_type,
    policy,
    profile,
    put,
    rkey,
    tier,
    wep,
    wep_key,
)

ALLOW_ALL = [{"action": "Allow"}]


def tiers_of(h: Harness, pod: str, ns: str = "default") -> list[tuple[str, tuple[str, ...], tuple[str, ...], str]]:
    return [(t.name, t.ingress_policies, t.egress_policies, t.default_action) for t in h.workload(pod, ns).tiers]


# ------------------------------------------------------------- start-up


def test_nothing_is_sent_before_in_sync_then_everything_then_in_sync_once() -> None:
    h = Harness()
    h.graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    h.graph.on_updates([ns_profile("default"), wep("a")])
    assert h.graph.flush() == []
    h.graph.on_status(SyncStatus.IN_SYNC)
    out = h.flush()
    assert isinstance(out[0], m.ConfigUpdate)
    assert isinstance(out[-1], m.InSync)
    assert of_type(out, m.WorkloadEndpointUpdate)[0].id.workload == "default/a"
    h.graph.on_status(SyncStatus.RESYNC_IN_PROGRESS)
    h.graph.on_status(SyncStatus.IN_SYNC)
    assert h.flush() == []
    assert h.dp.in_sync == 1


def test_empty_snapshot_sends_config_and_in_sync() -> None:
    h = Harness()
    assert h.start() == [m.ConfigUpdate({}), m.InSync()]


def test_sink_receives_each_flush() -> None:
    got: list[list[m.Message]] = []
    graph = CalcGraph(HOST, sink=got.append)
    graph.on_updates([wep("a", profiles=())])
    assert got == []
    graph.on_status(SyncStatus.IN_SYNC)
    assert isinstance(got[-1][-1], m.InSync)
    graph.on_updates([delete(wep_key("a"))])
    assert got[-1] == [m.WorkloadEndpointRemove(m.WorkloadEndpointID("k8s", "default/a", "eth0"))]


def test_empty_hostname_is_refused() -> None:
    try:
        CalcGraph("")
    except ValueError as exc:
        assert "hostname" in str(exc)
    else:
        raise AssertionError("an empty hostname was accepted")


# ------------------------------------------------------ local endpoints


def test_only_this_nodes_workloads_become_endpoints() -> None:
    h = Harness()
    h.start(wep("mine", ips=("10.0.0.1/32",), profiles=()), wep("theirs", node="node2", profiles=()))
    assert [w for w in h.dp.workloads] == [m.WorkloadEndpointID("k8s", "default/mine", "eth0")]
    ep = h.workload("mine")
    assert (ep.name, ep.ipv4_nets, ep.key) == ("calimine", ("10.0.0.1/32",), wep_key("mine"))


def test_workload_moving_away_is_removed_and_back_is_added() -> None:
    h = Harness()
    h.start(wep("a", profiles=()))
    out = h.send(wep("a", node="node2", profiles=()))
    assert out == [m.WorkloadEndpointRemove(m.WorkloadEndpointID("k8s", "default/a", "eth0"))]
    out = h.send(wep("a", profiles=()))
    assert len(of_type(out, m.WorkloadEndpointUpdate)) == 1


def test_workload_without_addresses_is_ignored() -> None:
    h = Harness()
    h.start(wep("a", ips=(), profiles=()))
    assert h.dp.workloads == {}


def test_unchanged_workload_update_sends_nothing() -> None:
    h = Harness()
    h.start(ns_profile("default"), wep("a"))
    assert h.send(wep("a")) == []


def test_ipv6_and_mac_and_spoofing_fields() -> None:
    h = Harness()
    update = wep("a", ips=("10.0.0.1/32", "fd00::1/128"), profiles=())
    assert update.value is not None
    update.value["spec"]["mac"] = "ee:ee:ee:ee:ee:ee"
    update.value["spec"]["allowSpoofedSourcePrefixes"] = ["10.1.0.0/16"]
    h.start(update)
    ep = h.workload("a")
    assert (ep.ipv4_nets, ep.ipv6_nets, ep.mac) == (("10.0.0.1/32",), ("fd00::1/128",), "ee:ee:ee:ee:ee:ee")
    assert ep.allow_spoofed_source_prefixes == ("10.1.0.0/16",)


def test_local_host_endpoint_with_tier_lists() -> None:
    h = Harness()
    h.start(
        hep("h1", iface="eth0", ips=("192.168.1.1",), labels={"role": "node"}),
        hep("h2", node="node2", iface="eth0", labels={"role": "node"}),
        policy("normal", None, "role == 'node'", ingress=ALLOW_ALL, applyOnForward=True),
        policy("raw", None, "role == 'node'", ingress=ALLOW_ALL, doNotTrack=True, applyOnForward=True),
        policy("pre", None, "role == 'node'", ingress=ALLOW_ALL, preDNAT=True, applyOnForward=True),
        policy("plain", None, "role == 'node'", ingress=ALLOW_ALL),
    )
    assert list(h.dp.hosts) == ["h1"]
    ep = h.dp.hosts["h1"]
    assert (ep.name, ep.expected_ipv4_addrs) == ("eth0", ("192.168.1.1",))
    assert ep.tiers[0].ingress_policies == ("normal", "plain")
    assert ep.forward_tiers[0].ingress_policies == ("normal",)
    assert ep.untracked_tiers[0].ingress_policies == ("raw",)
    assert ep.pre_dnat_tiers[0].ingress_policies == ("pre",)
    assert h.dp.policies[m.PolicyID("default", "raw")].untracked
    assert h.dp.policies[m.PolicyID("default", "pre")].pre_dnat


def test_untracked_policies_never_reach_workloads() -> None:
    h = Harness()
    h.start(wep("a", labels={"x": "y"}, profiles=()),
            policy("raw", None, "x == 'y'", ingress=ALLOW_ALL, doNotTrack=True, applyOnForward=True))
    assert h.workload("a").tiers == ()


# ------------------------------------------------------------- profiles


def test_profile_is_sent_before_the_endpoint_that_names_it() -> None:
    h = Harness()
    out = h.start(ns_profile("default"), wep("a"))
    kinds = [type(x) for x in out]
    assert kinds.index(m.ActiveProfileUpdate) < kinds.index(m.WorkloadEndpointUpdate)
    assert h.dp.profiles["kns.default"].inbound_rules[0].action == "allow"


def test_missing_profile_fails_closed_until_it_exists() -> None:
    h = Harness()
    h.start(wep("a"))
    missing = h.dp.profiles["kns.default"]
    assert [r.action for r in missing.inbound_rules + missing.outbound_rules] == ["deny", "deny"]
    h.send(ns_profile("default"))
    assert [r.action for r in h.dp.profiles["kns.default"].inbound_rules] == ["allow"]
    out = h.send(delete(rkey("profiles", "kns.default")))
    assert out[0].id == "kns.default" and out[0].inbound_rules[0].action == "deny"
    assert not of_type(out, m.ActiveProfileRemove)


def test_unreferenced_profiles_are_not_sent_and_removed_when_unused() -> None:
    h = Harness()
    h.start(ns_profile("default"), ns_profile("other"), wep("a"))
    assert set(h.dp.profiles) == {"kns.default"}
    out = h.send(delete(wep_key("a")))
    assert [type(x) for x in out] == [m.WorkloadEndpointRemove, m.ActiveProfileRemove]


# ------------------------------------------------------------- policies


def test_policy_applies_by_selector_within_its_namespace() -> None:
    h = Harness()
    h.start(
        ns_profile("default"), ns_profile("prod"),
        wep("a", labels={"app": "web"}), wep("b", ns="prod", labels={"app": "web"}, ips=("10.0.0.2/32",)),
        policy("web", "default", "app == 'web'", ingress=ALLOW_ALL),
    )
    assert tiers_of(h, "a") == [("default", ("default/web",), (), "deny")]
    assert tiers_of(h, "b", "prod") == []


def test_global_policy_applies_in_every_namespace() -> None:
    h = Harness()
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            wep("b", ns="prod", labels={"app": "web"}, ips=("10.0.0.2/32",), profiles=()),
            policy("web", None, "app == 'web'", ingress=ALLOW_ALL))
    assert tiers_of(h, "a") == tiers_of(h, "b", "prod") == [("default", ("web",), (), "deny")]


def test_staged_policies_are_never_enforced() -> None:
    h = Harness()
    out = h.start(
        wep("a", labels={"app": "web"}, profiles=()),
        policy("s1", "default", "app == 'web'", ingress=ALLOW_ALL, staged=True),
        policy("s2", None, "app == 'web'", ingress=ALLOW_ALL, staged=True),
    )
    assert not of_type(out, m.ActivePolicyUpdate)
    assert h.workload("a").tiers == ()


def test_policy_types_decide_direction() -> None:
    h = Harness()
    h.start(
        wep("a", labels={"app": "web"}, profiles=()),
        policy("in", None, "app == 'web'", ingress=ALLOW_ALL),
        policy("out", None, "app == 'web'", egress=ALLOW_ALL),
        policy("both", None, "app == 'web'", types=["Ingress", "Egress"]),
    )
    assert tiers_of(h, "a") == [("default", ("both", "in"), ("both", "out"), "deny")]


def test_policy_order_then_name_and_tiers_by_order() -> None:
    h = Harness()
    h.start(
        wep("a", labels={"app": "web"}, profiles=()),
        tier("security", 100, "Pass"), tier("default", None),
        policy("z", None, "app == 'web'", ingress=ALLOW_ALL, order=10),
        policy("b", None, "app == 'web'", ingress=ALLOW_ALL),
        policy("a", None, "app == 'web'", ingress=ALLOW_ALL),
        policy("first", None, "app == 'web'", ingress=ALLOW_ALL, order=1),
        policy("sec", None, "app == 'web'", ingress=[{"action": "Pass"}], tier="security"),
        policy("orphan", None, "app == 'web'", ingress=ALLOW_ALL, tier="nowhere"),
    )
    assert tiers_of(h, "a") == [
        ("security", ("sec",), (), "pass"),
        ("default", ("first", "z", "a", "b"), (), "deny"),
        ("nowhere", ("orphan",), (), "deny"),
    ]
    assert h.dp.policies[m.PolicyID("security", "sec")].inbound_rules[0].action == "pass"


def test_tier_order_change_reorders_endpoints() -> None:
    h = Harness()
    h.start(wep("a", labels={"app": "web"}, profiles=()), tier("t1", 10), tier("t2", 20),
            policy("p1", None, "app == 'web'", ingress=ALLOW_ALL, tier="t1"),
            policy("p2", None, "app == 'web'", ingress=ALLOW_ALL, tier="t2"))
    assert [t[0] for t in tiers_of(h, "a")] == ["t1", "t2"]
    out = h.send(tier("t1", 30))
    assert [type(x) for x in out] == [m.WorkloadEndpointUpdate]
    assert [t[0] for t in tiers_of(h, "a")] == ["t2", "t1"]
    assert h.send(tier("t1", 30)) == []


def test_policy_becomes_active_and_inactive_with_matches() -> None:
    h = Harness()
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            policy("db", None, "app == 'db'", ingress=[{"action": "Allow", "source": {"selector": "x == 'y'"}}]))
    assert h.dp.policies == {} and h.dp.ipsets == {}
    out = h.send(wep("a", labels={"app": "db"}, profiles=()))
    assert [type(x) for x in out] == [m.IPSetUpdate, m.ActivePolicyUpdate, m.WorkloadEndpointUpdate]
    out = h.send(wep("a", labels={"app": "web"}, profiles=()))
    assert [type(x) for x in out] == [m.WorkloadEndpointUpdate, m.ActivePolicyRemove, m.IPSetRemove]


def test_policy_rule_edit_swaps_ip_sets_in_order_without_touching_endpoints() -> None:
    h = Harness()
    rules_a = [{"action": "Allow", "source": {"selector": "role == 'a'"}}]
    rules_b = [{"action": "Allow", "source": {"selector": "role == 'b'"}}]
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            wep("r", node="node2", labels={"role": "b"}, ips=("10.0.5.5/32",), profiles=()),
            policy("p", None, "app == 'web'", ingress=rules_a))
    (old_set,) = h.dp.ipsets
    out = h.send(policy("p", None, "app == 'web'", ingress=rules_b))
    assert [type(x) for x in out] == [m.IPSetUpdate, m.ActivePolicyUpdate, m.IPSetRemove]
    assert out[0].members == frozenset({"10.0.5.5/32"})
    assert out[2].id == old_set


def test_policy_tier_change_adds_new_id_then_removes_old() -> None:
    h = Harness()
    h.start(wep("a", labels={"app": "web"}, profiles=()), tier("t1", 10),
            policy("p", None, "app == 'web'", ingress=ALLOW_ALL))
    out = h.send(policy("p", None, "app == 'web'", ingress=ALLOW_ALL, tier="t1"))
    assert [type(x) for x in out] == [m.ActivePolicyUpdate, m.WorkloadEndpointUpdate, m.ActivePolicyRemove]
    assert out[0].id == m.PolicyID("t1", "p") and out[2].id == m.PolicyID("default", "p")


def test_policy_deletion_updates_endpoint_then_removes_policy() -> None:
    h = Harness()
    h.start(wep("a", labels={"app": "web"}, profiles=()), policy("p", None, "app == 'web'", ingress=ALLOW_ALL))
    out = h.send(delete(rkey("globalnetworkpolicies", "p")))
    assert [type(x) for x in out] == [m.WorkloadEndpointUpdate, m.ActivePolicyRemove]
    assert h.workload("a").tiers == ()


def test_policy_service_account_selector() -> None:
    h = Harness()
    h.start(ns_profile("default"), profile("ksa.default.api", {"pcsa.role": "api"}),
            profile("ksa.default.other", {"pcsa.role": "other"}),
            wep("a", sa="api"), wep("b", sa="other", ips=("10.0.0.2/32",)),
            policy("p", "default", "all()", ingress=ALLOW_ALL, serviceAccountSelector="role == 'api'"))
    assert tiers_of(h, "a") == [("default", ("default/p",), (), "deny")]
    assert tiers_of(h, "b") == []


def test_global_policy_namespace_selector_uses_namespace_labels() -> None:
    h = Harness()
    h.start(ns_profile("prod", {"env": "prod"}), ns_profile("dev", {"env": "dev"}),
            wep("a", ns="prod"), wep("b", ns="dev", ips=("10.0.0.2/32",)),
            policy("p", None, "all()", ingress=ALLOW_ALL, namespaceSelector="env == 'prod'"))
    assert tiers_of(h, "a", "prod") == [("default", ("p",), (), "deny")]
    assert tiers_of(h, "b", "dev") == []


# ------------------------------------------------------------ labels


def test_endpoint_labels_override_profile_labels() -> None:
    h = Harness()
    h.start(profile("p1", {"app": "from-profile", "team": "t"}), wep("a", labels={"app": "own"}, profiles=("p1",)),
            policy("own", None, "app == 'own' && team == 't'", ingress=ALLOW_ALL),
            policy("prof", None, "app == 'from-profile'", ingress=ALLOW_ALL))
    assert tiers_of(h, "a") == [("default", ("own",), (), "deny")]


def test_first_profile_wins_among_profiles() -> None:
    h = Harness()
    h.start(profile("p1", {"k": "one"}), profile("p2", {"k": "two"}), wep("a", profiles=("p1", "p2")),
            policy("one", None, "k == 'one'", ingress=ALLOW_ALL))
    assert tiers_of(h, "a") == [("default", ("one",), (), "deny")]


def test_profile_label_change_reevaluates_policies() -> None:
    h = Harness()
    h.start(ns_profile("default", {"env": "dev"}), wep("a"),
            policy("p", None, "pcns.env == 'prod'", ingress=ALLOW_ALL))
    assert tiers_of(h, "a") == []
    out = h.send(ns_profile("default", {"env": "prod"}))
    assert of_type(out, m.ActivePolicyUpdate)
    assert tiers_of(h, "a") == [("default", ("p",), (), "deny")]


def test_workload_cannot_claim_another_namespace() -> None:
    h = Harness()
    h.start(ns_profile("default"), wep("a", labels={"projectcalico.org/namespace": "kube-system",
                                                   "pcns.projectcalico.org/name": "kube-system"}),
            policy("sys", None, "projectcalico.org/namespace == 'kube-system'", ingress=ALLOW_ALL),
            policy("sys2", None, "pcns.projectcalico.org/name == 'kube-system'", ingress=ALLOW_ALL))
    assert tiers_of(h, "a") == []


# --------------------------------------------------------------- IP sets


def _one_set(h: Harness) -> set[str]:
    (members,) = h.dp.ipsets.values()
    return members


def test_only_referenced_sets_are_sent_with_cluster_wide_members() -> None:
    h = Harness()
    h.start(
        wep("a", labels={"app": "web"}, profiles=()),
        wep("r1", node="node2", labels={"role": "db"}, ips=("10.1.0.1/32",), profiles=()),
        wep("r2", node="node3", labels={"role": "db"}, ips=("10.1.0.2/32", "fd00::2/128"), profiles=()),
        wep("r3", node="node3", labels={"role": "cache"}, ips=("10.1.0.3/32",), profiles=()),
        policy("unused", None, "app == 'nothing'", ingress=[{"action": "Allow", "source": {"selector": "x == 'y'"}}]),
        policy("p", None, "app == 'web'", ingress=[{"action": "Allow", "source": {"selector": "role == 'db'"}}]),
    )
    assert _one_set(h) == {"10.1.0.1/32", "10.1.0.2/32", "fd00::2/128"}


def test_member_changes_are_deltas() -> None:
    h = Harness()
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            policy("p", None, "app == 'web'", ingress=[{"action": "Allow", "source": {"selector": "role == 'db'"}}]))
    (set_id,) = h.dp.ipsets
    assert h.send(wep("r", node="node2", labels={"role": "db"}, ips=("10.1.0.1/32",), profiles=())) == [
        m.IPSetDeltaUpdate(set_id, frozenset({"10.1.0.1/32"}), frozenset())]
    assert h.send(wep("r", node="node2", labels={"role": "db"}, ips=("10.1.0.9/32",), profiles=())) == [
        m.IPSetDeltaUpdate(set_id, frozenset({"10.1.0.9/32"}), frozenset({"10.1.0.1/32"}))]
    assert h.send(wep("r", node="node2", labels={"role": "web"}, ips=("10.1.0.9/32",), profiles=())) == [
        m.IPSetDeltaUpdate(set_id, frozenset(), frozenset({"10.1.0.9/32"}))]
    # Added and gone again within one batch: nothing to say.
    assert h.send(wep("t", node="node2", labels={"role": "db"}, ips=("10.1.0.7/32",), profiles=()),
                  delete(wep_key("t"))) == []


def test_shared_address_is_counted() -> None:
    h = Harness()
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            netset("n1", ("10.9.0.0/16",), labels={"ext": "yes"}),
            netset("n2", ("10.9.0.0/16", "10.8.0.0/16"), labels={"ext": "yes"}),
            policy("p", None, "app == 'web'", ingress=[{"action": "Allow", "source": {"selector": "ext == 'yes'"}}]))
    assert _one_set(h) == {"10.9.0.0/16", "10.8.0.0/16"}
    out = h.send(delete(rkey("globalnetworksets", "n2")))
    assert out[0].removed == frozenset({"10.8.0.0/16"}) and out[0].added == frozenset()


def test_global_namespace_selector_selects_global_network_sets_only() -> None:
    h = Harness()
    h.start(ns_profile("default"),
            wep("a", labels={"app": "web"}),
            wep("r", node="node2", labels={"ext": "yes"}, ips=("10.1.0.1/32",)),
            netset("g", ("1.2.3.0/24",), labels={"ext": "yes"}),
            netset("n", ("5.6.7.0/24",), ns="default", labels={"ext": "yes"}),
            policy("p", "default", "app == 'web'",
                   ingress=[{"action": "Allow", "source": {"selector": "ext == 'yes'", "namespaceSelector": "global()"}}]))
    assert _one_set(h) == {"1.2.3.0/24"}


def test_namespaced_rule_selector_matches_own_namespace_network_sets_and_pods() -> None:
    h = Harness()
    h.start(ns_profile("default"), ns_profile("other"),
            wep("a", labels={"app": "web"}),
            wep("r", node="node2", labels={"ext": "yes"}, ips=("10.1.0.1/32",)),
            wep("o", ns="other", node="node2", labels={"ext": "yes"}, ips=("10.1.0.2/32",)),
            netset("g", ("1.2.3.0/24",), labels={"ext": "yes"}),
            netset("n", ("5.6.7.0/24",), ns="default", labels={"ext": "yes"}),
            policy("p", "default", "app == 'web'", ingress=[{"action": "Allow", "source": {"selector": "ext == 'yes'"}}]))
    assert _one_set(h) == {"10.1.0.1/32", "5.6.7.0/24"}


def test_rule_namespace_selector_matches_network_sets_through_namespace_profile() -> None:
    h = Harness()
    h.start(ns_profile("default"), ns_profile("other", {"team": "x"}),
            wep("a", labels={"app": "web"}),
            netset("n", ("5.6.7.0/24",), ns="other"),
            wep("o", ns="other", node="node2", ips=("10.1.0.2/32",)),
            policy("p", "default", "app == 'web'", ingress=[{"action": "Allow", "source": {"namespaceSelector": "team == 'x'"}}]))
    assert _one_set(h) == {"10.1.0.2/32", "5.6.7.0/24"}


def test_host_endpoint_expected_ips_are_members() -> None:
    h = Harness()
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            hep("h9", node="node9", ips=("192.168.1.9",), labels={"role": "node"}),
            policy("p", None, "app == 'web'", ingress=[{"action": "Allow", "source": {"selector": "role == 'node'"}}]))
    assert _one_set(h) == {"192.168.1.9/32"}


def test_service_account_rule_selects_by_service_account() -> None:
    h = Harness()
    h.start(ns_profile("default"), wep("a", labels={"app": "web"}),
            wep("r1", node="node2", sa="api", ips=("10.1.0.1/32",)),
            wep("r2", node="node2", sa="other", ips=("10.1.0.2/32",)),
            policy("p", "default", "app == 'web'",
                   ingress=[{"action": "Allow", "source": {"serviceAccounts": {"names": ["api"]}}}]))
    assert _one_set(h) == {"10.1.0.1/32"}


def test_named_port_members_and_changes() -> None:
    h = Harness()
    http = [{"name": "http", "protocol": "TCP", "port": 8080}]
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            wep("r1", node="node2", labels={"role": "db"}, ips=("10.1.0.1/32",), profiles=(), ports=http),
            wep("r2", node="node2", labels={"role": "db"}, ips=("10.1.0.2/32",), profiles=(),
                ports=[{"name": "http", "protocol": "UDP", "port": 53}]),
            policy("p", None, "app == 'web'", egress=[{"action": "Allow", "protocol": "TCP",
                                                       "destination": {"selector": "role == 'db'", "ports": ["http"]}}]))
    (set_id,) = h.dp.ipsets
    assert h.dp.ipset_types[set_id] is m.IPSetType.IP_AND_PORT
    assert h.dp.ipsets[set_id] == {"10.1.0.1,tcp:8080"}
    out = h.send(wep("r1", node="node2", labels={"role": "db"}, ips=("10.1.0.1/32",), profiles=(),
                     ports=[{"name": "http", "protocol": "TCP", "port": 9090}]))
    assert out == [m.IPSetDeltaUpdate(set_id, frozenset({"10.1.0.1,tcp:9090"}), frozenset({"10.1.0.1,tcp:8080"}))]


def test_set_dropped_and_readded_in_one_batch_is_resent_whole() -> None:
    h = Harness()
    rule = [{"action": "Allow", "source": {"selector": "role == 'db'"}}]
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            wep("r", node="node2", labels={"role": "db"}, ips=("10.1.0.1/32",), profiles=()),
            policy("p", None, "app == 'web'", ingress=rule))
    out = h.send(delete(rkey("globalnetworkpolicies", "p")),
                 wep("r2", node="node2", labels={"role": "db"}, ips=("10.1.0.2/32",), profiles=()),
                 policy("p", None, "app == 'web'", ingress=rule))
    updates = of_type(out, m.IPSetUpdate)
    assert updates and updates[0].members == frozenset({"10.1.0.1/32", "10.1.0.2/32"})
    assert not of_type(out, m.IPSetRemove)


def test_sets_shared_by_two_policies_live_until_both_are_gone() -> None:
    h = Harness()
    rule = [{"action": "Allow", "source": {"selector": "role == 'db'"}}]
    h.start(wep("a", labels={"app": "web"}, profiles=()),
            policy("p1", None, "app == 'web'", ingress=rule), policy("p2", None, "app == 'web'", ingress=rule))
    assert len(h.dp.ipsets) == 1
    assert not of_type(h.send(delete(rkey("globalnetworkpolicies", "p1"))), m.IPSetRemove)
    assert of_type(h.send(delete(rkey("globalnetworkpolicies", "p2"))), m.IPSetRemove)


def test_profile_rules_reference_sets_too() -> None:
    h = Harness()
    h.start(profile("p", None, [{"action": "Allow", "source": {"selector": "role == 'db'"}}]),
            wep("a", profiles=("p",)),
            wep("r", node="node2", labels={"role": "db"}, ips=("10.1.0.1/32",), profiles=()))
    assert _one_set(h) == {"10.1.0.1/32"}


# ---------------------------------------------------------------- bad input


def test_invalid_value_is_treated_as_deleted() -> None:
    h = Harness()
    h.start(wep("a", profiles=()))
    bad = Update(wep_key("a"), {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                                "metadata": {"name": "a", "namespace": "default"},
                                "spec": {"ipNetworks": ["not-an-ip"]}}, 999, UpdateType.UPDATED)
    out = h.send(bad)
    assert out == [m.WorkloadEndpointRemove(m.WorkloadEndpointID("k8s", "default/a", "eth0"))]


def test_value_of_the_wrong_kind_or_name_is_treated_as_deleted() -> None:
    h = Harness()
    h.start(wep("a", profiles=()))
    wrong = wep("b", profiles=())
    assert wrong.value is not None
    out = h.send(put(wep_key("a"), wrong.value, new=False))
    assert out == [m.WorkloadEndpointRemove(m.WorkloadEndpointID("k8s", "default/a", "eth0"))]


def test_unknown_keys_and_deletions_of_unknown_keys_are_ignored() -> None:
    h = Harness()
    h.start()
    assert h.send(delete(wep_key("ghost")), delete(rkey("globalnetworkpolicies", "ghost")),
                  put("/calico/felix/v2/whatever", {"x": 1}),
                  put(rkey("bgppeers", "peer1"), {"kind": "BGPPeer"})) == []


def test_all_interfaces_host_endpoint_and_its_removal() -> None:
    h = Harness()
    h.start(hep("all", iface="*", labels={"role": "node"}),
            policy("p", None, "role == 'node'", ingress=ALLOW_ALL))
    assert h.dp.hosts["all"].name == "*"
    assert h.dp.hosts["all"].tiers[0].ingress_policies == ("p",)
    out = h.send(hep("all", node="node2", iface="*", labels={"role": "node"}))
    assert [type(x) for x in out] == [m.HostEndpointRemove, m.ActivePolicyRemove]
