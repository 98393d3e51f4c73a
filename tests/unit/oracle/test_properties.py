"""Invariants over random policy sets: what the oracle reports as decisive really decides, and what Calico
ignores (staged policies, a leading tier that passes everything) changes nothing."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.oracle import Oracle, Reason, Verdict
from libcalico.resources.base import Resource

from .cluster import BASE, gnp, np, pod, res, tier

PODS = [pod("p1", "10.0.0.1", labels={"role": "a", "host": "n1"}),
        pod("p2", "10.0.0.2", labels={"role": "b", "host": "n1"}),
        pod("p3", "10.0.0.3", labels={"role": "a", "host": "n2"}),
        pod("p4", "10.0.0.4", labels={"host": "n2"})]
SELECTORS = ["all()", "role == 'a'", "role == 'b'", "host == 'n1'", "has(role)", "!has(role)"]
FLOWS = [("tcp", 80), ("tcp", 8080), ("udp", 53)]

actions = st.sampled_from(["Allow", "Deny", "Pass", "Log"])


@st.composite
def rules(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": draw(actions)}
    protocol = draw(st.sampled_from([None, "TCP", "UDP"]))
    if protocol:
        rule["protocol"] = protocol
        ports = draw(st.sampled_from([None, [80], ["8000:8100"], [53, 80]]))
        if ports:
            rule["destination"] = {"ports": ports}
    source = draw(st.sampled_from([None, *SELECTORS[1:]]))
    if source:
        rule.setdefault("source", {})["selector"] = source
    return rule


@st.composite
def policy_sets(draw: st.DrawFn) -> list[Resource]:
    out: list[Resource] = []
    tier_names = ["default"]
    for i in range(draw(st.integers(0, 2))):
        name = f"t{i}"
        tier_names.append(name)
        out.append(tier(name, draw(st.sampled_from([None, 10.0, 100.0, 2_000_000.0])),
                        draw(st.sampled_from([None, "Deny", "Pass"]))))
    for i in range(draw(st.integers(0, 6))):
        spec: dict[str, Any] = {
            "tier": draw(st.sampled_from(tier_names)), "selector": draw(st.sampled_from(SELECTORS)),
            "types": draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]])),
            "ingress": draw(st.lists(rules(), max_size=3)), "egress": draw(st.lists(rules(), max_size=3)),
        }
        order = draw(st.sampled_from([None, 1.0, 5.0, 5.0, 100.0]))
        if order is not None:
            spec["order"] = order
        out.append(gnp(f"g{i}", spec) if draw(st.booleans()) else np(f"n{i}", spec))
    return out


def verdicts(resources: list[Resource]) -> dict[tuple[str, str, str, int], Verdict]:
    oracle = Oracle.from_resources([*BASE, *PODS, *resources])
    out = {}
    for proto, port in FLOWS:
        for (src, dst), v in oracle.matrix(protocol=proto, port=port).items():
            out[(src, dst, proto, port)] = v
    return out


def flip(resources: list[Resource], policy: str, direction: str, index: int) -> list[Resource]:
    """The resources with one rule's Allow/Deny action swapped."""
    out = []
    for r in resources:
        doc = r.to_dict()
        ns = doc["metadata"].get("namespace")
        shown = f"{ns}/{r.name}" if r.kind == "NetworkPolicy" else r.name
        if r.kind in ("NetworkPolicy", "GlobalNetworkPolicy") and shown == policy:
            rule = doc["spec"][direction][index]
            rule["action"] = "Deny" if rule["action"] == "Allow" else "Allow"
            r = res(r.kind, r.name, doc["spec"], ns)
        out.append(r)
    return out


@settings(max_examples=60, deadline=None)
@given(policy_sets())
def test_the_reported_rule_is_decisive(resources: list[Resource]) -> None:
    for key, v in verdicts(resources).items():
        for decision in (v.egress, v.ingress):
            assert decision is not None
            if decision.reason is not Reason.RULE:
                continue
            assert decision.policy is not None and decision.rule_index is not None
            flipped = verdicts(flip(resources, decision.policy, decision.direction, decision.rule_index))[key]
            after = flipped.egress if decision.direction == "egress" else flipped.ingress
            assert after is not None
            assert after.allowed is not decision.allowed, (key, str(decision), str(after))
            assert (after.policy, after.rule_index) == (decision.policy, decision.rule_index)


@settings(max_examples=60, deadline=None)
@given(policy_sets())
def test_staged_copies_change_nothing(resources: list[Resource]) -> None:
    staged = []
    for r in resources:
        if r.kind in ("NetworkPolicy", "GlobalNetworkPolicy"):
            spec = dict(r.to_dict()["spec"])
            for direction in ("ingress", "egress"):
                spec[direction] = [{"action": "Deny"}]
            staged.append(res("Staged" + r.kind, r.name, spec, r.namespace))
    before = {k: (v.allowed, str(v)) for k, v in verdicts(resources).items()}
    after = {k: (v.allowed, str(v)) for k, v in verdicts([*resources, *staged]).items()}
    assert before == after


@settings(max_examples=60, deadline=None)
@given(policy_sets())
def test_a_leading_tier_that_passes_everything_changes_no_verdict(resources: list[Resource]) -> None:
    lead = [tier("lead", 1), gnp("lead-pass", {"tier": "lead", "selector": "all()", "types": ["Ingress", "Egress"],
                                               "ingress": [{"action": "Pass"}], "egress": [{"action": "Pass"}]})]
    before = {k: v.allowed for k, v in verdicts(resources).items()}
    after = {k: v.allowed for k, v in verdicts([*resources, *lead]).items()}
    assert before == after


@settings(max_examples=60, deadline=None)
@given(policy_sets())
def test_allowed_is_both_directions(resources: list[Resource]) -> None:
    for v in verdicts(resources).values():
        assert v.egress is not None
        assert v.allowed == (v.egress.allowed and v.ingress.allowed)
