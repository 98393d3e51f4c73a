"""The cold-start shortcuts of the graph's nodes give what the general paths give.

- ActiveRules: a new policy takes its matches in one go; the result equals a
  policy whose matches arrive one by one (a selector replaced on a policy).
- port_members: the named-port members against a reference formula.
- workload_record: the label-key cache that spots ``pcns.*`` / ``pcsa.*``
  labels answers for each distinct key list, also when the cache is full.
- InheritanceIndex.load: effective labels are fresh dicts (own on top of the
  profiles'), never the caller's maps when a profile adds labels.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.felix.calc import endpoints
from services.felix.calc.active_rules import ActiveRules
from services.felix.calc.dirty import Dirty
from services.felix.calc.inheritance import InheritanceIndex
from services.felix.calc.ipsets import IPSetIndex, NamedPort, port_members
from services.felix.calc.policies import PolicyRecord, policy_from_map
from services.felix.calc.rule_scanner import RuleScanner

RULES = [{"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'db'"},
          "destination": {"ports": ["http", 80]}}]


def _active() -> tuple[ActiveRules, Dirty, IPSetIndex]:
    ipsets = IPSetIndex()
    dirty = Dirty()
    return ActiveRules(RuleScanner(ipsets), dirty), dirty, ipsets


def _policy(selector: str) -> PolicyRecord:
    return policy_from_map("/p/gnp", "GlobalNetworkPolicy", "gnp", None,
                           {"selector": selector, "ingress": RULES})


def _state(active: ActiveRules, dirty: Dirty, ipsets: IPSetIndex, eps: list[str]) -> tuple[object, ...]:
    return (active.endpoints_of("/p/gnp"), {e: [p.key for p in active.policies_of(e)] for e in eps},
            active.desired_policies.get("/p/gnp"), sorted(dirty.endpoints), sorted(dirty.policies),
            ipsets.active_ids())


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=0, max_size=6))
def test_new_policy_matches_in_one_go_as_one_by_one(apps: list[str]) -> None:
    eps = [f"ep{i}" for i in range(len(apps))]
    bulk, bulk_dirty, bulk_sets = _active()
    single, single_dirty, single_sets = _active()
    for active in (bulk, single):
        for ep, app in zip(eps, apps, strict=True):
            active.update_endpoint(ep, {"app": app}, ())
    bulk_dirty.clear()
    single_dirty.clear()
    bulk.update_policy("/p/gnp", _policy("app == 'a'"))  # new: the bulk path
    # The same end state reached through reported matches: a replaced selector.
    single.update_policy("/p/gnp", _policy("app == 'none'"))
    single.update_policy("/p/gnp", _policy("app == 'a'"))
    assert _state(bulk, bulk_dirty, bulk_sets, eps) == _state(single, single_dirty, single_sets, eps)
    assert bulk.endpoints_of("/p/gnp") == {e for e, a in zip(eps, apps, strict=True) if a == "a"}
    assert ("/p/gnp" in bulk.desired_policies) == ("a" in apps)


def test_new_policy_then_endpoint_changes_keep_counting() -> None:
    active, dirty, ipsets = _active()
    active.update_endpoint("ep1", {"app": "a"}, ())
    active.update_endpoint("ep2", {"app": "a"}, ())
    active.update_policy("/p/gnp", _policy("app == 'a'"))
    assert active.endpoints_of("/p/gnp") == {"ep1", "ep2"}
    assert len(ipsets) == 2  # the source selector's set and its named-port set
    active.update_endpoint("ep1", {"app": "b"}, ())
    assert active.endpoints_of("/p/gnp") == {"ep2"} and "/p/gnp" in active.desired_policies
    active.delete_endpoint("ep2")
    assert active.endpoints_of("/p/gnp") == frozenset() and "/p/gnp" not in active.desired_policies
    assert len(ipsets) == 0 and active.policies_of("ep2") == []


def _reference_members(nets: tuple[str, ...], ports: tuple[NamedPort, ...], name: str, protocol: str) -> tuple[str, ...]:
    out: list[str] = []
    for p in ports:
        if p.name == name and p.protocol == protocol:
            out.extend(f"{n.split('/', 1)[0]},{p.protocol}:{p.port}" for n in nets)
    return tuple(out)


@given(
    st.lists(st.sampled_from(["10.0.0.1/32", "10.0.0.0/24", "fd00::1/128", "192.168.1.7/32"]), max_size=3),
    st.lists(st.builds(NamedPort, st.sampled_from(["http", "dns"]), st.sampled_from(["tcp", "udp"]),
                       st.integers(1, 65535)), max_size=4),
    st.sampled_from(["http", "dns"]), st.sampled_from(["tcp", "udp"]),
)
def test_port_members_match_the_reference(nets: list[str], ports: list[NamedPort], name: str, protocol: str) -> None:
    got = port_members(tuple(nets), tuple(ports), name, protocol)
    assert got == _reference_members(tuple(nets), tuple(ports), name, protocol)
    assert isinstance(got, tuple)


def _wep(labels: dict[str, str]) -> dict[str, object]:
    return {"kind": "WorkloadEndpoint", "metadata": {"name": "w", "namespace": "ns1", "labels": labels},
            "spec": {"node": "other", "orchestrator": "k8s", "ipNetworks": ["10.0.0.1/32"]}}


def test_scoped_labels_are_dropped_whatever_the_key_cache_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    interned = endpoints._Interned()
    interned.LIMIT = 2
    monkeypatch.setattr(endpoints, "_INTERNED", interned)
    seen = []
    for labels in ({"app": "x"}, {"pcns.env": "prod", "app": "x"}, {"app": "y"}, {"pcsa.role": "a"},
                   {"app": "x", "pcns.env": "prod"}, {"pcns.env": "prod", "app": "z"}):
        record = endpoints.workload_record("k", _wep(labels), "this-node")
        assert record is not None
        seen.append(record.labels)
        assert not any(k.startswith(("pcns.", "pcsa.")) for k in record.labels)
        assert {k: v for k, v in labels.items() if not k.startswith(("pcns.", "pcsa."))}.items() <= record.labels.items()
        assert len(interned.scoped) <= 2
    assert seen[1]["app"] == "x" and seen[5]["app"] == "z"


def test_inheritance_load_gives_fresh_merged_dicts() -> None:
    reported: list[str] = []
    index = InheritanceIndex(lambda item, labels: reported.append(item))
    index.update_parent("kns.a", {"pcns.env": "prod", "app": "from-profile"})
    own_a, own_b, own_c = {"app": "x"}, {"role": "db"}, {"app": "y"}
    effective = index.load(["a", "b", "c"], [own_a, own_b, own_c], [("kns.a",), ("kns.a",), ()])
    assert effective["a"] == {"pcns.env": "prod", "app": "x"} and list(effective["a"]) == ["pcns.env", "app"]
    assert effective["b"] == {"pcns.env": "prod", "app": "from-profile", "role": "db"}
    assert effective["a"] is not own_a and own_a == {"app": "x"}  # the caller's map is not changed
    assert effective["c"] is own_c  # no profile labels: the own labels are the effective ones
    assert reported == [] and index.children("kns.a") == {"a", "b"}
    assert {k: index.effective(k) for k in "abc"} == effective
