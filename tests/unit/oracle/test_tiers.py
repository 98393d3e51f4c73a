"""Tier and policy ordering, Pass, tier default actions, policy types, staged and host-only policies."""

from __future__ import annotations

from typing import Any

from libcalico.oracle import Reason

from .cluster import BASE, gnp, np, pod, res, tier, verdict

A = pod("a", "10.0.0.1", labels={"role": "client"})
B = pod("b", "10.0.0.2", labels={"role": "server"})
PODS = [*BASE, A, B]


def allow_all(name: str, order: float | None = None, tier_name: str | None = None, **extra: Any) -> Any:
    spec: dict[str, Any] = {"selector": "role == 'server'", "ingress": [{"action": "Allow"}], **extra}
    if order is not None:
        spec["order"] = order
    if tier_name:
        spec["tier"] = tier_name
    return gnp(name, spec)


def deny_all(name: str, order: float | None = None, tier_name: str | None = None, **extra: Any) -> Any:
    spec: dict[str, Any] = {"selector": "role == 'server'", "ingress": [{"action": "Deny"}], **extra}
    if order is not None:
        spec["order"] = order
    if tier_name:
        spec["tier"] = tier_name
    return gnp(name, spec)


def test_rule_decision_text_names_policy_tier_rule_and_action() -> None:
    v = verdict([*PODS, np("deny-all", {"selector": "all()", "ingress": [{"action": "Deny"}]})], "a", "b")
    assert not v.allowed
    assert str(v.ingress) == "ingress: default/deny-all (tier default) rule 0 Deny"
    assert (v.ingress.tier, v.ingress.policy, v.ingress.policy_kind, v.ingress.rule_index) == \
        ("default", "default/deny-all", "NetworkPolicy", 0)


def test_policy_applies_but_no_rule_matches_is_end_of_tier_deny() -> None:
    only_443 = np("only-443", {"selector": "all()", "ingress": [
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [443]}}]})
    v = verdict([*PODS, only_443], "a", "b", port=80)
    assert not v.allowed and v.ingress.reason is Reason.END_OF_TIER and v.ingress.tier == "default"
    assert str(v.ingress) == ("ingress: end of tier 'default' (default action Deny): no policy in tier "
                              "matched → deny at end of tier")
    assert verdict([*PODS, only_443], "a", "b", port=443).allowed


def test_lower_tier_order_runs_first() -> None:
    resources = [*PODS, tier("first", 10), tier("second", 20),
                 deny_all("d", tier_name="second"), allow_all("x", tier_name="first")]
    v = verdict(resources, "a", "b")
    assert v.allowed and v.ingress.tier == "first"
    resources = [*PODS, tier("first", 30), tier("second", 20),
                 deny_all("d", tier_name="second"), allow_all("x", tier_name="first")]
    v = verdict(resources, "a", "b")
    assert not v.allowed and v.ingress.tier == "second"


def test_equal_tier_orders_go_by_name() -> None:
    resources = [*PODS, tier("bbb", 10), tier("aaa", 10), deny_all("d", tier_name="bbb"),
                 allow_all("x", tier_name="aaa")]
    assert verdict(resources, "a", "b").ingress.tier == "aaa"


def test_tier_without_order_runs_after_ordered_tiers_including_default() -> None:
    resources = [*PODS, tier("unordered"), deny_all("d", tier_name="unordered"), allow_all("x")]
    v = verdict(resources, "a", "b")
    assert v.allowed and v.ingress.tier == "default"


def test_default_tier_has_order_one_million_without_a_tier_resource() -> None:
    before = [*PODS, tier("early", 999_999), deny_all("d", tier_name="early"), allow_all("x")]
    assert verdict(before, "a", "b").ingress.tier == "early"
    after = [*PODS, tier("late", 1_000_001), deny_all("d", tier_name="late"), allow_all("x")]
    assert verdict(after, "a", "b").ingress.tier == "default"


def test_policy_in_a_tier_that_does_not_exist_runs_last_with_deny_default() -> None:
    resources = [*PODS, tier("unordered"), gnp("p", {"tier": "ghost", "selector": "all()", "ingress": [
        {"action": "Allow", "protocol": "UDP"}]}), allow_all("x", tier_name="unordered", ingress=[{"action": "Pass"}])]
    v = verdict(resources, "a", "b")
    # unordered (exists) passes; ghost (missing, so after it) applies and its Deny default ends it.
    assert not v.allowed and v.ingress.reason is Reason.END_OF_TIER and v.ingress.tier == "ghost"
    assert v.ingress.trail == ("x (tier unordered) rule 0 Pass",)


def test_pass_jumps_to_next_tier_skipping_the_rest_of_the_tier() -> None:
    resources = [*PODS, tier("security", 100),
                 allow_all("pass", order=1, tier_name="security", ingress=[{"action": "Pass"}]),
                 deny_all("never", order=2, tier_name="security"),
                 allow_all("allow-in-default")]
    v = verdict(resources, "a", "b")
    assert v.allowed and v.ingress.policy == "allow-in-default" and v.ingress.tier == "default"
    assert v.ingress.trail == ("pass (tier security) rule 0 Pass",)


def test_tier_default_action_pass() -> None:
    resources = [*PODS, tier("audit", 50, "Pass"),
                 allow_all("udp-only", tier_name="audit", ingress=[{"action": "Allow", "protocol": "UDP"}])]
    v = verdict(resources, "a", "b")
    assert v.allowed and v.ingress.reason is Reason.PROFILE_RULE
    assert v.ingress.trail == ("end of tier 'audit' (default action Pass)",)


def test_tier_default_action_deny_explicit() -> None:
    resources = [*PODS, tier("audit", 50, "Deny"),
                 allow_all("udp-only", tier_name="audit", ingress=[{"action": "Allow", "protocol": "UDP"}])]
    v = verdict(resources, "a", "b")
    assert not v.allowed and str(v.ingress).startswith("ingress: end of tier 'audit' (default action Deny)")


def test_builtin_kube_tiers_pass_by_default() -> None:
    resources = [*PODS, allow_all("cnp", tier_name="kube-admin", ingress=[{"action": "Allow", "protocol": "UDP"}]),
                 deny_all("last", tier_name="kube-baseline")]
    v = verdict(resources, "a", "b")
    # kube-admin (order 1000) passes at its end; default has nothing; kube-baseline (1e7) denies by rule.
    assert not v.allowed and v.ingress.tier == "kube-baseline" and v.ingress.reason is Reason.RULE
    assert v.ingress.trail == ("end of tier 'kube-admin' (default action Pass)",)


def test_policy_order_within_tier() -> None:
    resources = [*PODS, allow_all("z-allow", order=10), deny_all("a-deny", order=20)]
    assert verdict(resources, "a", "b").ingress.policy == "z-allow"
    resources = [*PODS, allow_all("z-allow", order=30), deny_all("a-deny", order=20)]
    assert verdict(resources, "a", "b").ingress.policy == "a-deny"


def test_policy_without_order_runs_last_and_ties_go_by_name() -> None:
    resources = [*PODS, allow_all("a-unordered"), deny_all("z-ordered", order=1e9)]
    assert verdict(resources, "a", "b").ingress.policy == "z-ordered"
    resources = [*PODS, allow_all("b-same", order=5), deny_all("a-same", order=5)]
    assert verdict(resources, "a", "b").ingress.policy == "a-same"


def test_tie_break_is_name_then_namespace_then_kind() -> None:
    # "x/default/NetworkPolicy" sorts after "x//GlobalNetworkPolicy" ('/' < 'd').
    resources = [*PODS, np("x", {"order": 1, "selector": "all()", "ingress": [{"action": "Deny"}]}),
                 allow_all("x", order=1)]
    v = verdict(resources, "a", "b")
    assert v.allowed and v.ingress.policy_kind == "GlobalNetworkPolicy"


def test_policy_types_restrict_direction() -> None:
    egress_deny = gnp("egress-deny", {"selector": "role == 'client'", "types": ["Egress"],
                                      "egress": [{"action": "Deny"}], "ingress": [{"action": "Deny"}]})
    v = verdict([*PODS, egress_deny], "a", "b")
    assert not v.allowed and v.egress is not None and v.egress.policy == "egress-deny"
    assert v.ingress.allowed
    # The same policy does not govern b's ingress even if it selected b.
    v2 = verdict([*PODS, egress_deny], "b", "a")
    assert v2.allowed and v2.ingress.reason is Reason.PROFILE_RULE


def test_policy_with_types_but_no_rules_denies_that_direction() -> None:
    isolate = np("isolate", {"selector": "all()", "types": ["Ingress", "Egress"]})
    v = verdict([*PODS, isolate], "a", "b")
    assert not v.allowed
    assert v.egress is not None and v.egress.reason is Reason.END_OF_TIER
    assert v.ingress.reason is Reason.END_OF_TIER


def test_default_types_follow_rules() -> None:
    # No types and only egress rules: an Egress-only policy; b's ingress is untouched.
    only_egress = gnp("only-egress", {"selector": "all()", "egress": [{"action": "Allow", "protocol": "UDP"}]})
    v = verdict([*PODS, only_egress], "a", "b")
    assert v.egress is not None and v.egress.reason is Reason.END_OF_TIER
    assert v.ingress.reason is Reason.PROFILE_RULE


def test_log_rule_continues_and_is_recorded() -> None:
    log_then_deny = gnp("log", {"selector": "all()", "ingress": [{"action": "Log"}, {"action": "Deny"}]})
    v = verdict([*PODS, log_then_deny], "a", "b")
    assert not v.allowed and v.ingress.rule_index == 1
    assert v.ingress.trail == ("log (tier default) rule 0 Log",)


def test_first_matching_rule_wins() -> None:
    rules = [{"action": "Allow", "protocol": "UDP"}, {"action": "Deny", "protocol": "TCP"}, {"action": "Allow"}]
    v = verdict([*PODS, gnp("p", {"selector": "all()", "ingress": rules})], "a", "b")
    assert not v.allowed and v.ingress.rule_index == 1


def test_policy_not_selecting_endpoint_is_ignored() -> None:
    other = gnp("other", {"selector": "role == 'nobody'", "ingress": [{"action": "Deny"}]})
    v = verdict([*PODS, other], "a", "b")
    assert v.allowed and not v.ingress.policies_applied


def test_staged_policies_are_not_enforced() -> None:
    staged = [res("StagedGlobalNetworkPolicy", "s", {"selector": "all()", "ingress": [{"action": "Deny"}]}),
              res("StagedNetworkPolicy", "sn", {"selector": "all()", "ingress": [{"action": "Deny"}]},
                  namespace="default")]
    v = verdict([*PODS, *staged], "a", "b")
    assert v.allowed and not v.ingress.policies_applied


def test_do_not_track_and_pre_dnat_policies_never_apply_to_workloads() -> None:
    untracked = gnp("untracked", {"selector": "all()", "doNotTrack": True, "applyOnForward": True,
                                  "ingress": [{"action": "Deny"}], "egress": [{"action": "Deny"}]})
    pre_dnat = gnp("pre-dnat", {"selector": "all()", "preDNAT": True, "applyOnForward": True,
                                "ingress": [{"action": "Deny"}]})
    v = verdict([*PODS, untracked, pre_dnat], "a", "b")
    assert v.allowed and not v.ingress.policies_applied


def test_tier_only_counts_for_direction_it_has_policies_in() -> None:
    # The security tier only has an egress policy for b: b's ingress skips it entirely.
    resources = [*PODS, tier("security", 1), gnp("egress-only", {
        "tier": "security", "selector": "all()", "types": ["Egress"], "egress": [{"action": "Allow"}]})]
    v = verdict(resources, "a", "b")
    assert v.egress is not None and v.egress.tier == "security"
    assert v.ingress.reason is Reason.PROFILE_RULE and not v.ingress.policies_applied


def test_egress_and_ingress_are_decided_separately() -> None:
    resources = [*PODS, gnp("deny-out", {"selector": "role == 'client'", "types": ["Egress"],
                                         "egress": [{"action": "Deny"}]}),
                 gnp("allow-in", {"selector": "role == 'server'", "ingress": [{"action": "Allow"}]})]
    v = verdict(resources, "a", "b")
    assert not v.allowed
    assert v.egress is not None and not v.egress.allowed and v.ingress.allowed
