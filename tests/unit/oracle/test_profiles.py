"""Profiles decide when no policy applies (or every applicable tier passed); a missing profile fails closed."""

from __future__ import annotations

from libcalico.oracle import Reason

from .cluster import BASE, gnp, namespace_profile, pod, res, verdict

A = pod("a", "10.0.0.1")
B = pod("b", "10.0.0.2")


def test_no_policy_namespace_profile_allows_both_directions() -> None:
    v = verdict([*BASE, A, B], "a", "b")
    assert v.allowed
    assert v.egress is not None and v.egress.reason is Reason.PROFILE_RULE
    assert (v.egress.profile, v.egress.rule_index, v.egress.policies_applied) == ("kns.default", 0, False)
    assert str(v.ingress) == "ingress: profile kns.default rule 0 Allow (no policy applies)"


def test_no_profiles_at_all_is_default_deny() -> None:
    a, b = pod("a", "10.0.0.1", profiles=[]), pod("b", "10.0.0.2", profiles=[])
    v = verdict([a, b], "a", "b")
    assert not v.allowed
    assert v.ingress.reason is Reason.DEFAULT_DENY
    assert str(v.ingress) == "ingress: no policies and no profile allowed → default deny"
    assert str(v.egress) == "egress: no policies and no profile allowed → default deny"


def test_profile_without_rules_does_not_allow() -> None:
    v = verdict([namespace_profile("default", allow=False), A, B], "a", "b")
    assert not v.allowed
    assert v.ingress.reason is Reason.DEFAULT_DENY and v.egress is not None
    assert v.egress.reason is Reason.DEFAULT_DENY


def test_missing_profile_fails_closed() -> None:
    # Felix substitutes a deny-all rule set for a profile it does not know.
    v = verdict([A, B], "a", "b")
    assert not v.allowed
    assert v.ingress.reason is Reason.PROFILE_MISSING and v.ingress.profile == "kns.default"
    assert "does not exist" in str(v.ingress)


def test_missing_profile_after_an_allowing_one_is_never_reached() -> None:
    b = pod("b", "10.0.0.2", profiles=["kns.default", "ksa.default.gone"])
    v = verdict([*BASE, A, b], "a", "b")
    assert v.allowed and v.ingress.profile == "kns.default"


def test_missing_profile_before_an_allowing_one_denies() -> None:
    b = pod("b", "10.0.0.2", profiles=["ksa.default.gone", "kns.default"])
    v = verdict([*BASE, A, b], "a", "b")
    assert not v.allowed
    assert v.ingress.reason is Reason.PROFILE_MISSING and v.ingress.profile == "ksa.default.gone"
    assert v.egress is not None and v.egress.allowed


def test_profile_deny_rule_decides() -> None:
    deny = res("Profile", "locked", {"ingress": [{"action": "Deny", "protocol": "TCP",
                                                  "destination": {"ports": [22]}}, {"action": "Allow"}],
                                     "egress": [{"action": "Allow"}]})
    b = pod("b", "10.0.0.2", profiles=["locked"])
    assert not verdict([*BASE, deny, A, b], "a", "b", port=22).allowed
    v = verdict([*BASE, deny, A, b], "a", "b", port=80)
    assert v.allowed and (v.ingress.profile, v.ingress.rule_index) == ("locked", 1)


def test_profile_pass_moves_to_next_profile() -> None:
    first = res("Profile", "first", {"ingress": [{"action": "Pass"}, {"action": "Deny"}]})
    b = pod("b", "10.0.0.2", profiles=["first", "kns.default"])
    v = verdict([*BASE, first, A, b], "a", "b")
    assert v.allowed and v.ingress.profile == "kns.default"
    assert v.ingress.trail == ("profile first rule 0 Pass",)


def test_profile_log_rule_continues() -> None:
    logging = res("Profile", "logging", {"ingress": [{"action": "Log"}, {"action": "Deny"}]})
    b = pod("b", "10.0.0.2", profiles=["logging", "kns.default"])
    v = verdict([*BASE, logging, A, b], "a", "b")
    assert not v.allowed and (v.ingress.profile, v.ingress.rule_index) == ("logging", 1)
    assert v.ingress.trail == ("profile logging rule 0 Log",)


def test_profiles_evaluated_per_direction() -> None:
    egress_only = res("Profile", "out", {"egress": [{"action": "Allow"}]})
    a = pod("a", "10.0.0.1", profiles=["out"])
    b = pod("b", "10.0.0.2", profiles=["out"])
    v = verdict([egress_only, a, b], "a", "b")
    assert v.egress is not None and v.egress.allowed
    assert not v.ingress.allowed and v.ingress.reason is Reason.DEFAULT_DENY
    assert not v.allowed


def test_default_allow_profile_is_always_present() -> None:
    a = pod("a", "10.0.0.1", profiles=["projectcalico-default-allow"])
    b = pod("b", "10.0.0.2", profiles=["projectcalico-default-allow"])
    v = verdict([a, b], "a", "b")
    assert v.allowed and v.ingress.profile == "projectcalico-default-allow"


def test_profiles_apply_after_every_tier_passed() -> None:
    pass_all = gnp("pass-all", {"selector": "all()", "types": ["Ingress"], "ingress": [{"action": "Pass"}]})
    v = verdict([*BASE, pass_all, A, B], "a", "b")
    assert v.allowed
    assert v.ingress.reason is Reason.PROFILE_RULE and v.ingress.policies_applied
    assert str(v.ingress) == "ingress: profile kns.default rule 0 Allow (all applicable tiers passed)"
    assert v.ingress.trail == ("pass-all (tier default) rule 0 Pass",)


def test_tiers_passed_and_no_profile_is_default_deny_with_reason() -> None:
    pass_all = gnp("pass-all", {"selector": "all()", "ingress": [{"action": "Pass"}]})
    b = pod("b", "10.0.0.2", profiles=[])
    v = verdict([*BASE, pass_all, A, b], "a", "b")
    assert not v.allowed
    assert str(v.ingress) == "ingress: all applicable tiers passed and no profile allowed → default deny"


def test_profile_rules_are_not_namespace_scoped() -> None:
    # Profile rules are converted with no namespace: a selector matches endpoints anywhere.
    only_web = res("Profile", "only-web", {"ingress": [{"action": "Allow", "source": {"selector": "role == 'web'"}}]})
    web = pod("web", "10.0.1.1", namespace="other", labels={"role": "web"})
    b = pod("b", "10.0.0.2", profiles=["only-web"])
    resources = [*BASE, namespace_profile("other"), only_web, web, A, b]
    assert verdict(resources, "other/web", "b").allowed
    assert not verdict(resources, "a", "b").allowed
