"""``fastpath.accepts`` for every kind it covers: never True where the model says no.

Three proofs, as the fast path's contract asks:

- the manifest corpora: every valid document it accepts parses with the model, and it accepts
  no invalid document;
- a differential property test per kind: documents mutated from rich valid seeds (odd types,
  near-miss strings, boundary numbers, dropped, duplicated and unknown fields, lists past their
  limits) are accepted only when ``parse_resource`` accepts them too;
- each restated string rule equals the model's own check on random text.

A deterministic sweep also checks that it is not vacuous: most mutants the model accepts take
the fast path.
"""

from __future__ import annotations

import copy
import json
import pathlib
import random
from typing import Any

import pydantic
import pytest
import structlog
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcalico.errors import ValidationError
from libcalico.resources import base, fields, parse_resource
from libcalico.selector import SelectorError, parse
from libcalico.syncer import fastpath, fastpolicy
from libcalico.syncer.fastpath import accepts

V3 = "projectcalico.org/v3"
KINDS = ("NetworkPolicy", "GlobalNetworkPolicy", "Profile", "NetworkSet", "GlobalNetworkSet", "WorkloadEndpoint")
MANIFESTS = pathlib.Path(__file__).resolve().parent.parent / "data" / "manifests"


def model_accepts(kind: str, doc: Any) -> bool:
    """Whether the model parses ``doc`` into a ``kind`` (any exception it raises counts as no)."""
    try:
        return parse_resource(copy.deepcopy(doc)).kind == kind
    except (ValidationError, ValueError, TypeError, OverflowError, RecursionError):
        return False


def fast_accepts(kind: str, doc: Any) -> bool:
    """``accepts``, checking on the way that it leaves the document as it was."""
    before = copy.deepcopy(doc)
    answer = accepts(kind, doc)
    assert doc == before or doc != doc, "accepts must not change the value"  # (NaN is never equal to itself)
    return answer


# ---------------------------------------------------------------- seeds: rich valid documents per kind

RULES: list[dict[str, Any]] = [
    {"action": "Allow", "protocol": "TCP", "metadata": {"annotations": {"from": "frontend", "x.y/Z": "v"}},
     "source": {"nets": ["10.0.0.0/8", "192.168.1.7"], "notNets": ["10.1.0.0/16"], "selector": "role == 'frontend'",
                "notSelector": "quarantine == 'true'", "namespaceSelector": "team == 'shop'",
                "serviceAccounts": {"names": ["api", "web"], "selector": "app == 'web'"}, "notPorts": ["1024:2048"]},
     "destination": {"ports": [8080, "1234:5678", "named-port", "80"]}},
    {"action": "Allow", "ipVersion": 4, "protocol": "ICMP", "icmp": {"type": 8, "code": 0}},
    {"action": "Deny", "ipVersion": 6, "protocol": "ICMPv6", "notICMP": {"type": 128}},
    {"action": "Log", "protocol": 17, "notProtocol": "UDPLite", "destination": {"ports": [53], "notPorts": [54]}},
    {"action": "Pass", "protocol": "SCTP", "source": {"ports": [9000]}},
    {"action": "Allow", "protocol": "6", "destination": {"namespaceSelector": "global()", "selector": "all()"}},
    {"action": "Deny", "ipVersion": 6, "destination": {"nets": ["2001:db8::/32"], "notNets": ["2001:db8:1::/48"]}},
    {"action": "Allow", "source": {"selector": "app in {'a', 'b'}", "namespaceSelector": "env == 'prod'"}},
]
META_NS = {"name": "np-1", "namespace": "shop", "labels": {"app": "shop", "x.y/z": ""},
           "annotations": {"owner": "devops", "Example.com/Key": "v"}, "uid": "u-1", "resourceVersion": "5",
           "creationTimestamp": "2024-01-01T00:00:00Z", "generateName": "np-"}

SEEDS: dict[str, list[dict[str, Any]]] = {
    "NetworkPolicy": [
        {"apiVersion": V3, "kind": "NetworkPolicy", "metadata": {**META_NS, "name": "security.np-1"},
         "spec": {"tier": "security", "order": 10.5, "selector": "app == 'shop' && has(tier)",
                  "serviceAccountSelector": "role in {'frontend', 'backend'}", "types": ["Ingress", "Egress"],
                  "performanceHints": ["AssumeNeededOnEveryNode"], "ingress": RULES[:5], "egress": RULES[5:]}},
        {"apiVersion": V3, "kind": "NetworkPolicy", "metadata": {"name": "knp.default.a.b", "namespace": "default"}},
        {"apiVersion": V3, "kind": "NetworkPolicy", "metadata": {"name": "np-2", "namespace": "ns-1"},
         "spec": {"tier": "default", "order": 3, "selector": "all()", "types": ["Egress"],
                  "egress": [{"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http"]}}]}},
    ],
    "GlobalNetworkPolicy": [
        {"apiVersion": V3, "kind": "GlobalNetworkPolicy",
         "metadata": {"name": "platform.gnp-1", "labels": {"a": "b"}},
         "spec": {"tier": "platform", "order": 100, "selector": "role == 'db' && env == 'prod'",
                  "namespaceSelector": "has(projectcalico.org/name)", "doNotTrack": True, "applyOnForward": True,
                  "preDNAT": False, "types": ["Ingress", "Egress"], "ingress": RULES[:4], "egress": RULES[4:]}},
        {"apiVersion": V3, "kind": "GlobalNetworkPolicy", "metadata": {"name": "pre-dnat"},
         "spec": {"preDNAT": True, "applyOnForward": True, "types": ["Ingress"],
                  "ingress": [{"action": "Deny", "protocol": "TCP", "destination": {"ports": [22]}}]}},
        {"apiVersion": V3, "kind": "GlobalNetworkPolicy", "metadata": {"name": "empty"}, "spec": {}},
    ],
    "Profile": [
        {"apiVersion": V3, "kind": "Profile", "metadata": {"name": "kns.shop", "labels": {"a": "b"}},
         "spec": {"labelsToApply": {"pcns.projectcalico.org/name": "shop", "pcns.env": "prod"},
                  "ingress": [{"action": "Allow"}], "egress": RULES}},
        {"apiVersion": V3, "kind": "Profile", "metadata": {"name": "ksa.shop.default"},
         "spec": {"labelsToApply": {"pcsa.projectcalico.org/name": "default"}}},
    ],
    "NetworkSet": [
        {"apiVersion": V3, "kind": "NetworkSet", "metadata": {"name": "db", "namespace": "shop",
                                                            "labels": {"role": "db"}},
         "spec": {"nets": ["10.0.0.1/8", "192.168.0.0/16", "fd00::/64", "10.1.2.3"]}},
    ],
    "GlobalNetworkSet": [
        {"apiVersion": V3, "kind": "GlobalNetworkSet", "metadata": {"name": "blocklist", "labels": {"bad": "yes"}},
         "spec": {"nets": ["1.2.3.0/24", "2001:db8::1/128"]}},
        {"apiVersion": V3, "kind": "GlobalNetworkSet", "metadata": {"name": "empty"}},
    ],
    "WorkloadEndpoint": [
        {"apiVersion": V3, "kind": "WorkloadEndpoint",
         "metadata": {"name": "node--1-k8s-web--1-eth0", "namespace": "shop", "generateName": "web-",
                      "uid": "0f6c1c1e", "labels": {"app": "web", "projectcalico.org/namespace": "shop"},
                      "annotations": {"cni.projectcalico.org/podIP": "10.0.0.1/32"}},
         "spec": {"orchestrator": "k8s", "node": "node-1", "pod": "web-1", "endpoint": "eth0",
                  "containerID": "5f1a" * 16, "serviceAccountName": "default",
                  "ipNetworks": ["10.0.0.1/32", "fd00::1/128"], "profiles": ["kns.shop", "ksa.shop.default"],
                  "interfaceName": "cali0123456789a", "mac": "ee:ee:ee:00:00:01",
                  "ports": [{"name": "http", "protocol": "TCP", "port": 8080},
                            {"protocol": "UDP", "port": 53, "hostPort": 5353, "hostIP": "10.1.1.1"}]}},
        {"apiVersion": V3, "kind": "WorkloadEndpoint",
         "metadata": {"name": "n1-k8s-p-eth0", "namespace": "ns-1", "labels": {"app": "a"}},
         "spec": {"node": "n1", "pod": "p", "interfaceName": "calir1", "ipNetworks": ["10.100.0.1/32"],
                  "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}},
    ],
}

# ---------------------------------------------------------------- mutations

STRING_POOL = [
    "", " ", "a", "A", "-a", "a-", "a.b", "a..b", "a_b", "x" * 15, "x" * 16, "x" * 63, "x" * 64, "x" * 253,
    "x" * 254, "web\n", "é", "١٢", "²", "06", "0", "6", "17", "58", "132", "255", "256", "65535", "65536",
    "80:90", "90:80", ":80", "80:", "1:1", "0:5", "http", "HTTP", "a--b", "123", "TCP", "tcp", "ICMP", "ICMPv6",
    "UDPLite", "SCTP", "UDP", "Allow", "allow", "Deny", "Log", "Pass", "Ingress", "Egress",
    "AssumeNeededOnEveryNode", "global()", " global() ", "global() && a == 'b'", "all()", "has(a)", "a == 'b'",
    "a ==", "!", "a in {'x'}", "10.0.0.0/8", "10.0.0.1/8", "10.0.0.1", "10.0.0.1/32", "fd00::/64", "fd00::1/64",
    "fd00::1/128", "2001:db8::/32", "300.0.0.0/8", "10.0.0.0/33", "10.0.0.0/08", "010.0.0.1", "knp.default.x",
    "ossg.default.a.b", "a.b.c", "projectcalico.org/namespace", "x.y/z", "/z", "x/", "security", "default",
    "projectcalico.org/v3", "NetworkPolicy", "ee:ee:ee:00:00:01", "ee-ee-ee-00-00-0g", "cali0123456789ab",
]
NUMBER_POOL = [0, 1, 4, 6, 8, 17, 58, 128, 254, 255, 256, 1024, 65535, 65536, -1, 1.5, 10.0, 1e308,
               float("inf"), float("nan"), 10 ** 400, True, False]
ODD_POOL: list[Any] = [None, [], {}, [None], {"a": 1}, ["x"], "x", 0, True, [[]], [{}]]
FIELD_POOL = [
    "http", "services", "status", "stagedAction", "ipNATs", "hostIP", "namespace", "generation", "metadata",
    "annotations", "preDNAT", "doNotTrack", "applyOnForward", "namespaceSelector", "types", "icmp", "notICMP",
    "ipVersion", "order", "tier", "labels", "nets", "ports", "notPorts", "selector", "name", "protocol", "bogus",
    "finalizers", "ipv4Gateway", "labelsToApply", "performanceHints",
]
STRINGS = st.sampled_from(STRING_POOL) | st.text(max_size=6)
NUMBERS = st.sampled_from(NUMBER_POOL)


class Chooser:
    """The random choices a mutation makes: from hypothesis (shrinkable) or from a seeded Random."""

    def __init__(self, draw: st.DrawFn | None = None, rnd: random.Random | None = None) -> None:
        self.draw, self.rnd = draw, rnd

    def int(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high)) if self.draw else self.rnd.randint(low, high)  # type: ignore[union-attr]

    def pick(self, options: list[Any]) -> Any:
        return self.draw(st.sampled_from(options)) if self.draw else self.rnd.choice(options)  # type: ignore[union-attr]

    def string(self) -> str:
        return self.draw(STRINGS) if self.draw else self.pick(STRING_POOL)

    def value(self) -> Any:
        pool = self.pick([ODD_POOL, NUMBER_POOL, STRING_POOL])
        return self.string() if pool is STRING_POOL else copy.deepcopy(self.pick(pool))  # pools stay as they are


def mutate(c: Chooser, doc: dict[str, Any]) -> None:
    """One random change somewhere in ``doc`` (a random walk picks where)."""
    node: Any = doc
    for _ in range(12):
        slots = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not slots or not c.int(0, 4):
            break
        slot = c.pick(slots)
        child = node[slot]
        if isinstance(child, dict | list) and child and c.int(0, 2):
            node = child
            continue
        op = c.int(0, 4)
        if op == 0:
            node[slot] = c.value()
        elif op == 1:
            del node[slot]
        elif op == 2 and isinstance(child, str):
            node[slot] = c.pick([child + "\n", child.upper(), "-" + child, child + " ", child * 70])
        elif op == 3 and isinstance(child, list) and child:
            node[slot] = child * c.pick([2, 51, 257, 1025])  # duplicates, and past the limits
        else:
            node[slot] = c.string()
        return
    if isinstance(node, dict):
        node[c.pick(FIELD_POOL)] = c.pick([c.value(), [], {}, [{"action": "Allow"}]])
    elif node and c.int(0, 1):
        node.append(copy.deepcopy(c.pick(node)))
    else:
        node.append(c.value())


@st.composite
def mutants(draw: st.DrawFn, kind: str, seeds: dict[str, list[dict[str, Any]]] | None = None) -> dict[str, Any]:
    c = Chooser(draw=draw)
    doc = copy.deepcopy(c.pick((seeds or SEEDS)[kind]))
    for _ in range(c.int(0, 3)):
        mutate(c, doc)
    return doc


@pytest.mark.parametrize("kind", KINDS)
def test_seeds_take_the_fast_path(kind: str) -> None:
    for doc in SEEDS[kind]:
        assert model_accepts(kind, doc), doc
        assert fast_accepts(kind, doc), doc


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=700, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_accepts_only_what_the_model_accepts(kind: str, data: st.DataObject) -> None:
    doc = data.draw(mutants(kind))
    for as_kind in KINDS:  # a mutant may have become another kind (its kind field changed)
        agrees(as_kind, doc)


def agrees(kind: str, doc: Any) -> None:
    """Fast True implies model True (as ``kind``)."""
    if fast_accepts(kind, doc):
        assert model_accepts(kind, doc), f"fast path accepted what the {kind} model rejects: {doc!r}"


def valid_mutants(kind: str, seeds: dict[str, list[dict[str, Any]]], salt: str) -> tuple[int, int]:
    """Of 1,000 single-change mutants of ``kind``'s seeds: how many the model accepts, and how many of those the
    fast path takes (asserting it takes none the model rejects)."""
    c = Chooser(rnd=random.Random(f"{salt}-{kind}"))
    valid = fast = 0
    for _ in range(1000):
        doc = copy.deepcopy(c.pick(seeds[kind]))
        mutate(c, doc)
        if model_accepts(kind, doc):
            valid += 1
            fast += fast_accepts(kind, doc)
        else:
            assert not fast_accepts(kind, doc), doc
    return valid, fast


def single_slot_changes_agree(kind: str, seeds: dict[str, list[dict[str, Any]]], values: list[Any]) -> int:
    """Each slot of each seed removed or set to each of ``values`` in turn: the fast path never takes what the
    model rejects; how many changed documents it took."""
    checked = 0
    for seed in seeds[kind]:
        for path in _paths(seed):
            for value in [_GONE, *values]:
                doc = _changed(seed, path, value)
                if fast_accepts(kind, doc):
                    checked += 1
                    assert model_accepts(kind, doc), f"{kind}: {path} = {value!r} accepted, the model rejects it"
    return checked


@pytest.mark.parametrize("kind", KINDS)
def test_most_valid_mutants_take_the_fast_path(kind: str) -> None:
    """Not vacuous: of single-change mutants the model accepts, the fast path takes most (and never more)."""
    valid, fast = valid_mutants(kind, SEEDS, "fastpath")
    assert valid >= 50
    assert fast >= 0.8 * valid, f"{kind}: only {fast} of {valid} valid mutants took the fast path"


REPLACEMENTS: list[Any] = [None, [], {}, "", "x", "-", 0, -1, 1.5, True, 65536, "global()", " global() ",
                           "(global())", "!global()", "global() && a == 'b'", "10.0.0.1/8", "x" * 300_000,
                           [None], ["x"], [{}], {"x": "y"}]


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every slot (dict key or list index) in a document, depth first."""
    slots = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    out: list[tuple[Any, ...]] = []
    for slot, child in slots:
        out.append((*path, slot))
        out += _paths(child, (*path, slot))
    return out


def _changed(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    """A copy of ``doc`` with the slot at ``path`` set to ``value`` (or removed, for the _GONE value)."""
    out = copy.deepcopy(doc)
    node = out
    for slot in path[:-1]:
        node = node[slot]
    if value is _GONE:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(value)
    return out


_GONE = object()


@pytest.mark.parametrize("kind", KINDS)
def test_every_single_slot_change_agrees_with_the_model(kind: str) -> None:
    """Systematic, not random: each slot of each seed nulled, removed, or given an odd value in turn."""
    assert single_slot_changes_agree(kind, SEEDS, REPLACEMENTS) > 0


@pytest.mark.parametrize("count", [50, 51])
@pytest.mark.parametrize("field", ["ports", "notPorts"])
def test_port_list_limit(field: str, count: int) -> None:
    doc = {"apiVersion": V3, "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "n"},
           "spec": {"ingress": [{"action": "Allow", "protocol": "TCP", "destination": {field: [80] * count}}]}}
    assert fast_accepts("NetworkPolicy", doc) == model_accepts("NetworkPolicy", doc) == (count <= 50)


@pytest.mark.parametrize("count", [256, 257])
def test_net_list_limit(count: int) -> None:
    doc = {"apiVersion": V3, "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "n"},
           "spec": {"egress": [{"action": "Allow", "destination": {"notNets": ["10.0.0.0/8"] * count}}]}}
    assert fast_accepts("NetworkPolicy", doc) == model_accepts("NetworkPolicy", doc) == (count <= 256)


@pytest.mark.parametrize("count", [1024, 1025])
@pytest.mark.parametrize("kind", ["GlobalNetworkPolicy", "Profile", "NetworkPolicy"])
def test_rule_list_limit(kind: str, count: int) -> None:
    meta: dict[str, Any] = {"name": "p", "namespace": "n"} if kind == "NetworkPolicy" else {"name": "p"}
    doc = {"apiVersion": V3, "kind": kind, "metadata": meta, "spec": {"egress": [{"action": "Allow"}] * count}}
    limited = kind != "NetworkPolicy"  # Calico limits the rules of global policies and profiles only
    assert fast_accepts(kind, doc) == model_accepts(kind, doc) == (count <= 1024 or not limited)


@pytest.mark.parametrize("odd", [True, 80.0, "80"])
def test_memoised_forms_do_not_alias_equal_values_of_other_types(odd: Any) -> None:
    """``1 == True`` and ``80 == 80.0`` hash alike: what the fast path remembers must not let them through."""
    doc = copy.deepcopy(SEEDS["WorkloadEndpoint"][1])
    port = doc["spec"]["ports"][0]
    port["port"] = 1 if odd is True else 80
    assert fast_accepts("WorkloadEndpoint", doc)  # now remembered as a valid single named port
    port["port"] = odd
    assert not fast_accepts("WorkloadEndpoint", doc)
    assert not model_accepts("WorkloadEndpoint", doc)


def test_remembered_labels_are_only_strings() -> None:
    doc = copy.deepcopy(SEEDS["WorkloadEndpoint"][1])
    doc["metadata"]["labels"] = {"app": "1"}
    assert fast_accepts("WorkloadEndpoint", doc)
    for odd in (1, True, 1.0, None, ["1"]):
        doc["metadata"]["labels"] = {"app": odd}
        assert not fast_accepts("WorkloadEndpoint", doc)
        assert not model_accepts("WorkloadEndpoint", doc)


# ---------------------------------------------------------------- the corpora


def _documents(folder: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for path in sorted((MANIFESTS / folder).iterdir()):
        text = path.read_text()
        docs = json.loads(text) if path.suffix == ".json" else [d for d in yaml.safe_load_all(text) if d is not None]
        for doc in docs if isinstance(docs, list) else [docs]:
            items = doc["items"] if isinstance(doc, dict) and doc.get("kind") == "List" else [doc]
            out.extend((path.name, item) for item in items)
    return out


def test_valid_corpus_documents_it_accepts_parse_with_the_model() -> None:
    accepted: dict[str, int] = {}
    for name, doc in _documents("valid"):
        for kind in KINDS:
            if fast_accepts(kind, doc):
                assert model_accepts(kind, doc), f"{name}: accepted as {kind} but the model rejects it"
                accepted[kind] = accepted.get(kind, 0) + 1
    assert set(accepted) == set(KINDS), f"the corpus should exercise every kind; accepted: {accepted}"


def test_no_invalid_corpus_document_is_accepted() -> None:
    documents = _documents("invalid")
    assert len(documents) >= 100
    for name, doc in documents:
        for kind in KINDS:
            assert not fast_accepts(kind, doc), f"{name}: invalid, yet accepted as {kind}"
        assert not model_accepts(str(doc.get("kind")), doc), f"{name} is meant to be invalid"


# ---------------------------------------------------------------- the restated rules, one by one

TEXT = st.text(alphabet=st.sampled_from("abz09AZ-._/:\n é١²"), max_size=70) | st.builds(
    lambda n, c: c * n, st.sampled_from([15, 16, 62, 63, 64, 252, 253, 254]), st.sampled_from(["a", "a.", "a-"]))


def _raises(check: Any, *args: Any) -> bool:
    try:
        check(*args)
    except ValueError:
        return True
    return False


@settings(max_examples=600, deadline=None)
@given(TEXT)
def test_string_rules_equal_the_models(text: str) -> None:
    assert fastpath.subdomain(text) == (not _raises(base.check_dns1123_subdomain, text))
    assert fastpath.subdomain(text) == (not _raises(fields.check_subdomain, text))
    assert fastpath.dns_label(text) == (not _raises(fields.check_label_name, text))
    namespace_ok = not _raises(lambda t: base.ObjectMeta.model_validate({"name": "x", "namespace": t}), text)
    assert fastpath.dns_label(text) == namespace_ok
    assert fastpath.qualified_name(text) == (fields.qualified_name_problem(text) is None)
    assert fastpath.label_value(text) == (fields.label_value_problem(text) is None)
    assert fastpath.port_name(text) == (fields.port_name_problem(text) is None)


NETS = st.sampled_from(["10.0.0.0/8", "10.0.0.1/8", "10.0.0.1", "fd00::/64", "fd00::1/64", "::/0", "0.0.0.0/0",
                        "10.0.0.0/08", "10.0.0.0/33", "1.2.3.4/255.0.0.0", "fe80::1%eth0", "", "a", "10.0.0.0/8 "])
PORTS = st.one_of(st.integers(-2, 70000), st.booleans(), NUMBERS, TEXT,
                  st.sampled_from(["80", "80:90", "90:80", ":80", "1:65535", "０", "٨٠", "²", "08", "http", "a--b"]))
PROTOCOLS = st.one_of(st.integers(-2, 300), st.booleans(), NUMBERS, TEXT,
                      st.sampled_from(["TCP", "ICMPv6", "UDPLite", "tcp", "6", "06", "256", "٦", "²"]))


@settings(max_examples=400, deadline=None)
@given(NETS | TEXT)
def test_network_rules_equal_the_models(text: str) -> None:
    assert (fastpath.cidr_version(text) != 0) == (not _raises(fields._cidr, text))
    assert (fastpath.net_version(text) != 0) == (not _raises(fields._net, text))


@settings(max_examples=400, deadline=None)
@given(PORTS, PROTOCOLS)
def test_port_and_protocol_rules_are_the_models_or_stricter(port: Any, protocol: Any) -> None:
    if fastpolicy.port_ok(port):
        assert not _raises(fields._rule_port, port)
    number = fastpolicy._protocol_number(protocol)
    if number:
        assert not _raises(fields._protocol, protocol)
        assert fields.protocol_number(protocol) == number


@settings(max_examples=200, deadline=None)
@given(STRINGS | st.text(alphabet=st.sampled_from("ab=!'&|() {},"), max_size=16))
def test_selector_rule_is_the_models(text: str) -> None:
    try:
        parse(text)
        valid = True
    except SelectorError:
        valid = False
    assert fastpolicy.selector_ok(text) == valid


# ---------------------------------------------------------------- the guard


def test_a_changed_model_turns_every_kind_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "MODEL_FINGERPRINT", "0" * 64)
    monkeypatch.setattr(fastpath, "_enabled", None)
    with structlog.testing.capture_logs() as logs:
        for kind in KINDS:
            for doc in SEEDS[kind]:
                assert not accepts(kind, doc)
        assert fastpath.fast_kinds() == frozenset()
    assert [e["event"] for e in logs] == ["syncer fast validation disabled"]


# The kinds of the infrastructure and configuration fast paths (tests in test_syncer_fastpath_infra.py).
OTHER_KINDS = ("Tier", "IPPool", "Node", "HostEndpoint", "ClusterInformation", "FelixConfiguration")


def test_fast_kinds_are_the_twelve() -> None:
    assert fastpath.fast_kinds() == frozenset(KINDS + OTHER_KINDS)


def test_models_are_pydantic_ones_it_restates() -> None:
    """The fingerprint covers the modules holding every model this fast path restates."""
    from libcalico.resources import (
        cluster,
        endpoint,
        felixconfig,
        ippool,
        networkset,
        node,
        policy,
        profile,
        rules,
    )

    modules = (base, fields, endpoint, networkset, policy, profile, rules, ippool, node, felixconfig, cluster)
    covered = {m.__name__.rsplit(".", 1)[1] for m in modules}
    assert covered == set(fastpath.MODEL_MODULES)
    for kind in KINDS + OTHER_KINDS:
        module = base.kind_class(kind).__module__.rsplit(".", 1)[1]
        assert module in fastpath.MODEL_MODULES
    for kind in KINDS:
        module = parse_resource(SEEDS[kind][0]).__class__.__module__.rsplit(".", 1)[1]
        assert module in fastpath.MODEL_MODULES
    assert issubclass(base.CalicoModel, pydantic.BaseModel)


# ---------------------------------------------------------------- the syncer's filter: the key too


@pytest.mark.parametrize("kind", KINDS)
def test_the_filter_also_checks_the_key(kind: str) -> None:
    """What the fast path accepts still fails when its name or namespace is not the key's."""
    from libcalico.datastore.keys import RESOURCE_ROOT
    from libcalico.resources.base import kind_class
    from libcalico.syncer.catalog import felix_spec
    from libcalico.syncer.validation import ValidationFilter

    spec = felix_spec()
    doc = SEEDS[kind][0]
    meta = doc["metadata"]
    info = kind_class(kind).KIND
    root = f"{RESOURCE_ROOT}{info.plural}/"
    right = f"{root}{meta['namespace']}/{meta['name']}" if info.namespaced else f"{root}{meta['name']}"
    wrong = [f"{right}x", right.replace(meta["name"], "other")]
    if info.namespaced:
        wrong.append(f"{root}elsewhere/{meta['name']}")
    rtype = spec.type_of(right)
    assert rtype is not None and fast_accepts(kind, doc)
    with structlog.testing.capture_logs():
        assert ValidationFilter("felix").accepts(rtype, right, doc, 1)
        for key in wrong:
            assert spec.type_of(key) is rtype
            assert not ValidationFilter("felix").accepts(rtype, key, doc, 1), key
