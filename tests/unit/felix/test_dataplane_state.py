"""FilterState: messages → desired table, incrementally, with fail-closed stubs (no kernel)."""

from __future__ import annotations

from services.felix.dataplane import names
from services.felix.dataplane.filterstate import FilterState
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import (
    ActivePolicyRemove,
    ActivePolicyUpdate,
    ActiveProfileUpdate,
    HostEndpoint,
    HostEndpointRemove,
    HostEndpointUpdate,
    IPAMPoolUpdate,
    IPSetDeltaUpdate,
    IPSetRemove,
    IPSetType,
    IPSetUpdate,
    PolicyID,
    PortRange,
    Rule,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)

WID = WorkloadEndpointID("k8s", "ns/pod", "eth0")
PI = names.policy_chain("default", "ns/np", True)


def wep(iface: str = "cali1", policies: tuple[str, ...] = ("ns/np",), wid: WorkloadEndpointID = WID
        ) -> WorkloadEndpointUpdate:
    return WorkloadEndpointUpdate(wid, WorkloadEndpoint(iface, None, ("10.65.0.2/32",), (), ("kns.ns",),
                                                        (TierInfo("default", policies, ()),)))


def test_missing_policy_and_profile_get_dropping_stubs_until_they_arrive() -> None:
    state = FilterState(DataplaneSettings())
    state.apply(wep())
    assert state.table.chains[PI].rules == ("drop",)
    assert state.table.chains[names.profile_chain("kns.ns", True)].rules == ("drop",)
    state.apply(ActivePolicyUpdate(PolicyID("default", "ns/np"), (Rule("allow"),), ()))
    assert state.table.chains[PI].rules == ("accept",)  # an inbound chain: allow accepts outright
    state.apply(ActivePolicyRemove(PolicyID("default", "ns/np")))
    assert state.table.chains[PI].rules == ("drop",)  # still referenced by the endpoint
    state.apply(WorkloadEndpointRemove(WID))
    assert PI not in state.table.chains and names.workload_chain("cali1", True) not in state.table.chains
    assert "cali1" not in state.table.maps[names.MAP_TO_WL][1]


def test_referenced_ip_sets_exist_empty_until_sent_and_go_when_unreferenced() -> None:
    state = FilterState(DataplaneSettings())
    rule = Rule("allow", protocol=6, src_ip_set_ids=("sel",), dst_named_port_ip_set_ids=("np",))
    state.apply(ActivePolicyUpdate(PolicyID("default", "ns/np"), (rule,), ()))
    s4, np4 = names.ipset_name("sel", 4, False), names.ipset_name("np", 4, True)
    assert state.table.sets[s4][1] == frozenset() and state.table.sets[np4][1] == frozenset()
    state.apply(IPSetUpdate("sel", IPSetType.NET, frozenset({"10.65.0.2/32"})))
    assert state.table.sets[s4][1] == frozenset({"10.65.0.2"})
    state.table.clear_dirty()
    state.apply(IPSetDeltaUpdate("sel", frozenset({"10.65.0.3"}), frozenset()))
    assert state.table.dirty_sets == {s4}  # the (empty) IPv6 set did not change
    assert state.table.dirty_chains == set()  # membership changes never touch rules
    state.apply(IPSetRemove("sel"))
    assert state.table.sets[s4][1] == frozenset()  # still referenced
    state.apply(ActivePolicyRemove(PolicyID("default", "ns/np")))
    assert s4 not in state.table.sets and np4 not in state.table.sets


def test_unrenderable_policy_fails_closed() -> None:
    state = FilterState(DataplaneSettings())
    bad = Rule("allow", protocol=6, dst_ports=(PortRange(9, 1),), rule_id="ns/np/ingress/0")
    state.apply(ActivePolicyUpdate(PolicyID("default", "ns/np"), (Rule("allow"), bad), ()))
    assert state.table.chains[PI].rules == ("drop",)
    assert "ns/np/ingress/0" in state.render_errors[PI]


def test_interface_rename_and_shared_interfaces() -> None:
    state = FilterState(DataplaneSettings())
    state.apply(wep("cali1"))
    other = WorkloadEndpointID("k8s", "ns/zzz", "eth0")
    state.apply(wep("cali1", policies=(), wid=other))  # two endpoints claim cali1: the smaller id wins
    assert state.workload_ifaces["cali1"].tiers[0].ingress_policies == ("ns/np",)
    state.apply(wep("cali2"))  # the first endpoint moves to cali2: cali1 goes to the other one
    assert state.workload_ifaces["cali1"].tiers[0].ingress_policies == ()
    assert state.table.maps[names.MAP_FROM_WL][1] == {"cali1": "jump cali-fw-cali1", "cali2": "jump cali-fw-cali2"}
    state.apply(wep("bad name with spaces", wid=other))
    assert "cali1" not in state.table.maps[names.MAP_FROM_WL][1]
    assert "bad name with spaces" not in state.table.maps[names.MAP_FROM_WL][1]


def test_host_endpoints_and_the_all_interfaces_endpoint() -> None:
    state = FilterState(DataplaneSettings())
    forward_before = state.table.chains[names.CHAIN_INPUT]
    state.apply(HostEndpointUpdate("all", HostEndpoint("*", (), (), ("p",), ())))
    state.apply(HostEndpointUpdate("e0", HostEndpoint("eth0", (), (), (), ())))
    fh_all = names.host_chain(names.ALL_INTERFACES, False)
    assert f"jump {fh_all}" in state.table.chains[names.CHAIN_INPUT].rules
    assert state.table.chains[fh_all].rules[3] == f"jump {names.CHAIN_FAILSAFE_IN}"
    assert state.table.maps[names.MAP_FROM_HEP][1] == {"eth0": "jump cali-fh-eth0"}
    state.apply(HostEndpointRemove("all"))
    state.apply(HostEndpointRemove("e0"))
    assert state.table.chains[names.CHAIN_INPUT] == forward_before
    assert fh_all not in state.table.chains and state.table.maps[names.MAP_FROM_HEP][1] == {}


def test_pools_feed_the_nat_sets_and_settings_rerender() -> None:
    state = FilterState(DataplaneSettings())
    state.apply(IPAMPoolUpdate("a", "10.65.0.0/16", True))
    state.apply(IPAMPoolUpdate("b", "10.66.0.0/16", False))
    state.apply(IPAMPoolUpdate("c", "fd00:65::/64", True))
    assert state.table.sets[names.pool_set(4, True)][1] == frozenset({"10.65.0.0/16"})
    assert state.table.sets[names.pool_set(4, False)][1] == frozenset({"10.65.0.0/16", "10.66.0.0/16"})
    assert state.table.sets[names.pool_set(6, True)][1] == frozenset({"fd00:65::/64"})
    state.apply(wep())
    state.apply(ActiveProfileUpdate("kns.ns", (Rule("deny"),), ()))
    state.table.clear_dirty()
    state.set_settings(DataplaneSettings(deny_action="Reject", default_endpoint_to_host_action="Accept"))
    assert state.table.chains[names.profile_chain("kns.ns", True)].rules == ("reject",)
    assert state.table.chains[names.workload_chain("cali1", True)].rules[-1] == "reject"
    assert state.table.chains[names.CHAIN_WL_TO_HOST].rules[-1] == "accept"


def test_vxlan_hosts_and_workload_tunnel_drop() -> None:
    state = FilterState(DataplaneSettings())
    state.apply(wep())
    state.set_tunnels(True, frozenset({"10.0.0.2", "10.0.0.3"}), False)
    assert state.table.sets[names.SET_VXLAN_HOSTS][1] == frozenset({"10.0.0.2", "10.0.0.3"})
    assert "udp dport 4789 drop" in state.table.chains[names.workload_chain("cali1", False)].rules
    state.set_tunnels(False, frozenset(), False)
    assert "udp dport 4789 drop" not in state.table.chains[names.workload_chain("cali1", False)].rules


def test_set_kind_follows_members_and_rules_follow_the_set() -> None:
    state = FilterState(DataplaneSettings())
    rule = Rule("allow", src_ip_set_ids=("sel",), not_dst_ip_set_ids=("other",))
    state.apply(ActivePolicyUpdate(PolicyID("default", "ns/np"), (rule,), ()))
    plain, interval = names.ipset_name("sel", 4, False), names.ipset_name("sel", 4, False, interval=True)
    assert plain != interval
    assert state.table.sets[plain][0].interval is False  # not sent yet: an empty plain set
    state.apply(IPSetUpdate("sel", IPSetType.NET, frozenset({"10.65.0.2/32", "10.0.0.0/8"})))
    assert state.table.sets[interval] == (state.table.sets[interval][0], frozenset({"10.0.0.0/8"}))
    assert state.table.sets[interval][0].interval is True and plain not in state.table.sets
    assert any(f"@{interval}" in r for r in state.table.chains[PI].rules)
    assert not any(f"@{plain}" in r for r in state.table.chains[PI].rules)
    state.apply(IPSetDeltaUpdate("sel", frozenset(), frozenset({"10.0.0.0/8"})))  # only addresses again
    assert state.table.sets[plain] == (state.table.sets[plain][0], frozenset({"10.65.0.2"}))
    assert interval not in state.table.sets and state.table.sets[plain][0].interval is False
    assert any(f"@{plain}" in r for r in state.table.chains[PI].rules)
    state.apply(IPSetUpdate("other", IPSetType.NET, frozenset({"fd00::/64"})))  # a net in IPv6 only
    other6 = names.ipset_name("other", 6, False, interval=True)
    assert state.table.sets[other6][0].interval is True
    assert state.table.sets[names.ipset_name("other", 4, False)][0].interval is False
    assert any(f"!= @{other6}" in r for r in state.table.chains[PI].rules)
    state.apply(ActivePolicyRemove(PolicyID("default", "ns/np")))
    state.apply(IPSetRemove("sel"))
    state.apply(IPSetRemove("other"))
    assert not [n for n in state.table.sets if n.startswith(("cali40s-", "cali40i-", "cali60s-", "cali60i-"))]


def test_policy_chains_render_when_the_table_is_read_with_the_sets_as_they_are_then() -> None:
    state = FilterState(DataplaneSettings())
    rule = Rule("allow", src_ip_set_ids=("sel",))
    state.apply(ActivePolicyUpdate(PolicyID("default", "ns/np"), (Rule("deny"),), ()))
    state.apply(ActivePolicyUpdate(PolicyID("default", "ns/np"), (rule,), ()))  # replaces it before any render
    assert state.pending == 2 and PI not in state.unrendered_table.chains
    state.apply(IPSetUpdate("sel", IPSetType.NET, frozenset({"10.0.0.0/8"})))
    interval = names.ipset_name("sel", 4, False, interval=True)
    assert any(f"@{interval}" in r for r in state.table.chains[PI].rules)  # rendered now, with the set now
    assert state.pending == 0 and not any(r.endswith("drop") for r in state.table.chains[PI].rules)
    bad = Rule("allow", protocol=6, dst_ports=(PortRange(9, 1),), rule_id="ns/np/ingress/0")
    state.apply(ActivePolicyUpdate(PolicyID("default", "ns/np"), (bad,), ()))
    assert "ns/np/ingress/0" in state.render_errors[PI]  # reading the errors renders too


def test_the_table_does_not_depend_on_the_order_sets_came_and_went() -> None:
    rule = Rule("allow", src_ip_set_ids=("sel",))
    policy = ActivePolicyUpdate(PolicyID("default", "ns/np"), (rule,), ())
    plain, interval = names.ipset_name("sel", 4, False), names.ipset_name("sel", 4, False, interval=True)
    state = FilterState(DataplaneSettings())
    state.apply(policy)
    state.apply(IPSetUpdate("sel", IPSetType.NET, frozenset({"10.0.0.0/8"})))
    assert any(f"@{interval}" in r for r in state.table.chains[PI].rules)
    state.apply(IPSetRemove("sel"))  # unknown again: rules name the plain set, as a fresh start would
    fresh = FilterState(DataplaneSettings())
    fresh.apply(policy)
    assert state.table.chains[PI] == fresh.table.chains[PI]
    assert any(f"@{plain}" in r for r in fresh.table.chains[PI].rules)
    assert set(state.table.sets) == set(fresh.table.sets) and interval not in state.table.sets
    # An empty set that gains a net: its (empty) plain set goes, as if it had never been there.
    state.apply(IPSetUpdate("other", IPSetType.NET, frozenset()))
    state.apply(IPSetUpdate("other", IPSetType.NET, frozenset({"10.1.0.0/16", "10.2.0.1/32"})))
    fresh.apply(IPSetUpdate("other", IPSetType.NET, frozenset({"10.1.0.0/16", "10.2.0.1/32"})))
    assert state.table.sets == fresh.table.sets
    assert names.ipset_name("other", 4, False) not in state.table.sets


def test_a_bad_member_leaves_the_set_as_it_was() -> None:
    state = FilterState(DataplaneSettings())
    state.apply(IPSetUpdate("sel", IPSetType.NET, frozenset({"10.0.0.1/32"})))
    before = dict(state.table.sets)
    state.apply(IPSetDeltaUpdate("sel", frozenset({"10.0.0.2", "10.0.0.300"}), frozenset({"10.0.0.1/32"})))
    state.apply(IPSetUpdate("sel", IPSetType.NET, frozenset({"10.0.0.3", "not-an-address"})))
    assert "not-an-address" in state.render_errors["ipset sel"]
    assert state.table.sets == before and state.ipsets["sel"].elements(4) == frozenset({"10.0.0.1"})
