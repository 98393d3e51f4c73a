"""The graph's readers of stored maps give exactly what the model path gives.

- Policies, profiles, network sets and tiers: the raw reader (used when the syncer's
  fast path vouches for a map) against the pydantic model, over the valid
  manifest corpus and randomized policies the model accepts; records and
  compiled rules must be equal.
- WorkloadEndpoints: :func:`workload_record` against a reference written the
  plain way (the graph's previous decoder), over randomized maps including
  malformed ones: both fail, or both give the same record.
- The constants the graph keeps so as not to import the models equal the models'.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.errors import ValidationError
from libcalico.resources import fields, parse_resource, policy
from services.felix.calc import endpoints, policies, rules
from services.felix.calc.endpoints import (
    EndpointData,
    network_set,
    network_set_from_stored,
    workload_record,
)
from services.felix.calc.ipsets import NamedPort
from services.felix.calc.policies import (
    policy_from_stored,
    policy_record,
    profile_from_stored,
    profile_record,
)
from services.felix.calc.policy_sorter import tier_from_stored, tier_record
from services.felix.messages import WorkloadEndpoint as WorkloadEndpointMsg
from services.felix.messages import WorkloadEndpointID
from tests.unit.test_resources_corpus import VALID, raw_documents

API = "projectcalico.org/v3"
POLICY_KINDS = ("NetworkPolicy", "GlobalNetworkPolicy")


def key_of(doc: dict[str, Any]) -> str:
    meta = doc["metadata"]
    plural = doc["kind"].lower() + "s"
    return f"/calico/resources/v3/projectcalico.org/{plural}/{meta.get('namespace', '')}/{meta['name']}"


def compiled(record: Any, namespace: str | None, owner: str) -> rules.CompiledRules:
    return rules.compile_rules(record.inbound_rules, record.outbound_rules, namespace, owner)


def assert_same_policy(doc: dict[str, Any]) -> None:
    """The raw reader and the model agree on one valid policy document."""
    key = key_of(doc)
    raw = policy_from_stored(key, doc)
    model = policy_record(key, parse_resource(doc))  # type: ignore[arg-type]
    skip = {"inbound_rules", "outbound_rules"}
    for field in type(raw).__dataclass_fields__:
        if field not in skip:
            assert getattr(raw, field) == getattr(model, field), (field, doc)
    assert compiled(raw, raw.namespace, raw.id.name) == compiled(model, model.namespace, model.id.name), doc


def model_accepts(doc: dict[str, Any]) -> bool:
    try:
        parse_resource(doc)
    except ValidationError:
        return False
    return True



# ------------------------------------------------------------------ corpus


CORPUS = [d for p in VALID for d in raw_documents(p)]


@pytest.mark.parametrize("doc", [d for d in CORPUS if d["kind"] in POLICY_KINDS],
                         ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_corpus_policies_read_raw_equal_the_model(doc: dict[str, Any]) -> None:
    assert_same_policy(doc)


@pytest.mark.parametrize("doc", [d for d in CORPUS if d["kind"] == "Profile"], ids=lambda d: d["metadata"]["name"])
def test_corpus_profiles_read_raw_equal_the_model(doc: dict[str, Any]) -> None:
    raw = profile_from_stored("k", doc)
    model = profile_record("k", parse_resource(doc))  # type: ignore[arg-type]
    assert (raw.labels or None) == (model.labels or None)
    assert compiled(raw, None, "p") == compiled(model, None, "p")


@pytest.mark.parametrize("doc", [d for d in CORPUS if d["kind"] in ("NetworkSet", "GlobalNetworkSet")],
                         ids=lambda d: d["metadata"]["name"])
def test_corpus_network_sets_read_raw_equal_the_model(doc: dict[str, Any]) -> None:
    assert network_set_from_stored("k", doc) == network_set("k", parse_resource(doc))  # type: ignore[arg-type]


tier_docs = st.builds(
    lambda name, order, action: {"apiVersion": API, "kind": "Tier", "metadata": {"name": name},
                                 "spec": {**({} if order is None else {"order": order}),
                                          **({} if action is None else {"defaultAction": action})}},
    st.sampled_from(["default", "kube-admin", "kube-baseline", "security", "platform"]),
    st.sampled_from([None, 0, 10, 100.5, 1_000, 1_000_000, 10_000_000]),
    st.sampled_from([None, "Deny", "Pass"]),
)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.sampled_from([d for d in CORPUS if d["kind"] == "Tier"]), tier_docs).filter(model_accepts))
def test_tiers_read_raw_equal_the_model(doc: dict[str, Any]) -> None:
    assert tier_from_stored("k", doc) == tier_record("k", parse_resource(doc))  # type: ignore[arg-type]


def test_the_corpus_has_what_these_tests_compare() -> None:
    kinds = {d["kind"] for d in CORPUS}
    assert {"NetworkPolicy", "GlobalNetworkPolicy", "Profile", "NetworkSet", "GlobalNetworkSet", "Tier"} <= kinds


# ------------------------------------------------------- randomized policies

SELECTORS = ["app == 'a'", "role in {'db', 'web'}", "has(tier)", "app != 'x' && env == 'prod'", "all()",
             "!has(app)", "team starts with 'x'", "app == 'a' || role == 'db'", "  "]
NS_SELECTORS = ["env == 'prod'", "all()", "global()", "!has(env)", "team in {'a'}"]
PORTS = [80, "443", "8000:8100", "080:90", "http", "metrics", 65535, "1:1"]
NETS = ["10.0.0.0/8", "192.168.1.5", "fd00::/64", "10.1.2.0/24"]
PROTOCOLS = ["TCP", "UDP", "SCTP", 6, 17, "17", "ICMP", "ICMPv6", 1, 58, "UDPLite", 132]


@st.composite
def entities(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if draw(st.booleans()):
        out["selector"] = draw(st.sampled_from(SELECTORS))
    if draw(st.integers(0, 3)) == 0:
        out["namespaceSelector"] = draw(st.sampled_from(NS_SELECTORS))
    if draw(st.integers(0, 3)) == 0:
        out["notSelector"] = draw(st.sampled_from(SELECTORS[:6]))
    if draw(st.integers(0, 3)) == 0:
        sa: dict[str, Any] = {}
        if draw(st.booleans()):
            sa["names"] = draw(st.lists(st.sampled_from(["api", "web", "db"]), max_size=3))
        if draw(st.booleans()):
            sa["selector"] = draw(st.sampled_from(SELECTORS[:5]))
        out["serviceAccounts"] = sa
    for field, choices in (("nets", NETS[:2] + NETS[3:]), ("notNets", NETS[:2] + NETS[3:]),
                           ("ports", PORTS), ("notPorts", PORTS)):
        if draw(st.integers(0, 3)) == 0:
            out[field] = draw(st.lists(st.sampled_from(choices), min_size=1, max_size=3))
    if draw(st.integers(0, 8)) == 0:
        out["selector"] = None  # an explicit null is the same as leaving it out
    return out


@st.composite
def rule_maps(draw: st.DrawFn) -> dict[str, Any]:
    rule: dict[str, Any] = {"action": draw(st.sampled_from(["Allow", "Deny", "Pass", "Log"]))}
    if draw(st.booleans()):
        rule["protocol"] = draw(st.sampled_from(PROTOCOLS))
    if draw(st.integers(0, 5)) == 0:
        rule["notProtocol"] = draw(st.sampled_from(PROTOCOLS))
    if draw(st.integers(0, 5)) == 0:
        rule["icmp"] = {"type": draw(st.integers(0, 254)), **({"code": 3} if draw(st.booleans()) else {})}
    if draw(st.integers(0, 6)) == 0:
        rule["notICMP"] = {"type": 8}
    if draw(st.integers(0, 6)) == 0:
        rule["ipVersion"] = draw(st.sampled_from([4, 6]))
    for side in ("source", "destination"):
        if draw(st.booleans()):
            rule[side] = draw(entities())
    if draw(st.integers(0, 8)) == 0:
        rule["http"] = {"methods": ["GET"]}
    if draw(st.integers(0, 8)) == 0:
        rule.setdefault("destination", {})["services"] = {"name": "web", "namespace": "x"}
    if draw(st.integers(0, 8)) == 0:
        rule["metadata"] = {"annotations": {"a": "b"}}
    return rule


@st.composite
def policy_docs(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(POLICY_KINDS))
    meta: dict[str, Any] = {"name": draw(st.sampled_from(["p1", "allow.web", "x-2"]))}
    if kind == "NetworkPolicy":
        meta["namespace"] = draw(st.sampled_from(["default", "prod"]))
    spec: dict[str, Any] = {}
    if draw(st.booleans()):
        spec["ingress"] = draw(st.lists(rule_maps(), max_size=3))
    if draw(st.booleans()):
        spec["egress"] = draw(st.lists(rule_maps(), max_size=2))
    if draw(st.booleans()):
        spec["selector"] = draw(st.sampled_from(SELECTORS))
    if draw(st.integers(0, 3)) == 0:
        spec["types"] = draw(st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    if draw(st.booleans()):
        spec["order"] = draw(st.sampled_from([0, 5, 10.5, 1000]))
    if draw(st.integers(0, 2)) == 0:
        spec["tier"] = draw(st.sampled_from(["default", "security"]))
    if draw(st.integers(0, 3)) == 0:
        spec["serviceAccountSelector"] = draw(st.sampled_from(SELECTORS[:5]))
    if kind == "GlobalNetworkPolicy":
        if draw(st.integers(0, 2)) == 0:
            spec["namespaceSelector"] = draw(st.sampled_from(NS_SELECTORS[:2] + NS_SELECTORS[3:]))
        for flag in ("doNotTrack", "preDNAT", "applyOnForward"):
            if draw(st.integers(0, 3)) == 0:
                spec[flag] = draw(st.booleans())
    return {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec}


# Only what the model accepts is compared: the fast path never vouches for anything else. Hypothesis's
# own health check fails the test if the generator stops reaching valid policies often enough.
@settings(max_examples=400, deadline=None)
@given(policy_docs().filter(model_accepts))
def test_random_valid_policies_read_raw_equal_the_model(doc: dict[str, Any]) -> None:
    assert_same_policy(doc)


# ------------------------------------------------------------ workloads


def _ref_net(text: str) -> tuple[int, str]:
    net = ipaddress.ip_network(text, strict=False)
    return net.version, str(net)


def _ref_strings(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{what} must be a list of strings")
    return tuple(value)


def _ref_text(spec: dict[str, Any], field: str) -> str:
    value = spec.get(field) or ""
    if not isinstance(value, str):
        raise ValueError(f"spec.{field} must be a string")
    return value


def reference_workload(key: str, value: dict[str, Any], hostname: str) -> EndpointData | None:
    """The WorkloadEndpoint record, read field by field the plain way (the graph's previous decoder)."""
    meta, spec = value.get("metadata"), value.get("spec")
    if not isinstance(meta, dict) or not isinstance(spec, dict):
        raise ValueError("maps")
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise ValueError("labels")
    ports = []
    for p in spec.get("ports") or ():
        if not isinstance(p, dict) or not isinstance(p.get("port"), int):
            raise ValueError("ports")
        if p.get("name"):
            number = fields.protocol_number(p.get("protocol") or "TCP") or 6
            ports.append(NamedPort(str(p["name"]), rules.NAMED_PORT_PROTOCOLS.get(number, "tcp"), p["port"]))
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    node, orchestrator = _ref_text(spec, "node"), _ref_text(spec, "orchestrator")
    workload = _ref_text(spec, "pod") or _ref_text(spec, "workload") or name
    endpoint = _ref_text(spec, "endpoint") or "eth0"
    service_account = _ref_text(spec, "serviceAccountName")
    nets = tuple(_ref_net(n) for n in _ref_strings(spec.get("ipNetworks"), "nets"))
    profiles = _ref_strings(spec.get("profiles"), "profiles")
    interface = _ref_text(spec, "interfaceName")
    mac = _ref_text(spec, "mac") or None
    spoof = tuple(str(ipaddress.ip_network(n, strict=False))
                  for n in _ref_strings(spec.get("allowSpoofedSourcePrefixes"), "spoof"))
    if not nets:
        return None
    own = {k: v for k, v in labels.items() if not k.startswith(("pcns.", "pcsa."))}
    own["projectcalico.org/namespace"] = namespace
    if orchestrator and "projectcalico.org/orchestrator" not in own:
        own["projectcalico.org/orchestrator"] = orchestrator
    if service_account:
        own["projectcalico.org/serviceaccount"] = service_account
    texts = tuple(text for _, text in nets)
    if node != hostname:
        return EndpointData(key, own, profiles, texts, tuple(ports))
    msg = WorkloadEndpointMsg(name=interface, mac=mac, ipv4_nets=tuple(t for v, t in nets if v == 4),
                              ipv6_nets=tuple(t for v, t in nets if v == 6), profile_ids=profiles, tiers=(),
                              key=key, allow_spoofed_source_prefixes=spoof)
    wid = WorkloadEndpointID(orchestrator or "k8s", f"{namespace}/{workload}", endpoint)
    return EndpointData(key, own, profiles, texts, tuple(ports), True, msg, wid)


ODD = st.sampled_from([None, "", 0, 5, True, [], ["x"], {}, {"a": "b"}, 1.5])
TEXT = st.one_of(st.sampled_from(["node1", "node2", "k8s", "pod-a", "eth0", "sa", "cali12345",
                                  "ee:ee:ee:ee:ee:ee", ""]), ODD)
IPS = st.sampled_from(["10.0.0.1/32", "10.0.0.1", "010.0.0.1", "10.0.0.300/32", "10.0.0.0/24", "fd00::1/128",
                       "fd00::1", "FD00::0001/128", "10.0.0.1/33", "not-an-ip", "1.2.3.4/32 "])
PORT = st.fixed_dictionaries({"port": st.one_of(st.integers(1, 9), st.just(True), st.just("80"))},
                             optional={"name": st.one_of(st.sampled_from(["http", "dns", ""]), ODD),
                                       "protocol": st.sampled_from(["TCP", "UDP", "SCTP", None, "17", 6, ""])})
LABELS = st.one_of(st.dictionaries(st.sampled_from(["app", "pcns.x", "pcsa.y", "projectcalico.org/orchestrator",
                                                    "projectcalico.org/namespace"]),
                                   st.one_of(st.sampled_from(["a", "b", ""]), ODD), max_size=4), ODD)


@st.composite
def workload_maps(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    for field in ("node", "orchestrator", "pod", "workload", "endpoint", "serviceAccountName", "interfaceName",
                  "mac"):
        if draw(st.booleans()):
            spec[field] = draw(TEXT)
    if draw(st.integers(0, 9)):
        spec["ipNetworks"] = draw(st.one_of(st.lists(IPS, max_size=3), ODD))
    if draw(st.booleans()):
        spec["profiles"] = draw(st.one_of(st.lists(st.sampled_from(["kns.a", "ksa.a.b"]), max_size=2),
                                          st.lists(ODD, min_size=1, max_size=2), ODD))
    if draw(st.booleans()):
        spec["ports"] = draw(st.one_of(st.lists(PORT, max_size=3), st.just(["x"])))
    if draw(st.integers(0, 5)) == 0:
        spec["allowSpoofedSourcePrefixes"] = draw(st.one_of(st.lists(IPS, max_size=2), ODD))
    meta: dict[str, Any] = {"name": draw(st.sampled_from(["a", "b"])), "namespace": "ns"}
    if draw(st.booleans()):
        meta["labels"] = draw(LABELS)
    return {"apiVersion": API, "kind": "WorkloadEndpoint", "metadata": meta,
            "spec": spec if draw(st.integers(0, 20)) else draw(ODD)}


def outcome(read: Any, value: dict[str, Any]) -> Any:
    try:
        return read("k", value, "node1")
    except (ValueError, KeyError, TypeError) as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(workload_maps())
def test_workload_reader_equals_the_plain_reading(value: dict[str, Any]) -> None:
    fast, plain = outcome(workload_record, value), outcome(reference_workload, value)
    if isinstance(plain, type):
        assert isinstance(fast, type), (value, fast)  # both reject it (the reason may be worded apart)
    else:
        assert fast == plain, value


def test_workload_reader_shares_what_endpoints_repeat() -> None:
    value = {"metadata": {"name": "a", "namespace": "ns"},
             "spec": {"node": "n2", "ipNetworks": ["10.0.0.1/32"], "profiles": ["kns.ns"],
                      "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}
    first, second = workload_record("k1", value, "node1"), workload_record("k2", value, "node1")
    assert first is not None and second is not None
    assert first.parents is second.parents and first.ports[0] is second.ports[0]
    assert first.ports == (NamedPort("http", "tcp", 80),)


# ------------------------------------------------------------ constants


def test_constants_kept_here_equal_the_models() -> None:
    assert rules.PROTOCOL_NUMBERS == fields.PROTOCOL_NUMBERS
    for value in [*fields.PROTOCOL_NAMES, 1, 255, "7", None]:
        assert rules.protocol_number(value) == fields.protocol_number(value)
    assert policies.DEFAULT_TIER == policy.DEFAULT_TIER
    assert policies.STATIC_TIER_ORDERS == policy.STATIC_TIER_ORDERS
    for ingress in (None, [], [1]):
        for egress in (None, [], [1]):
            assert policies.default_types(ingress, egress) == policy.default_types(ingress, egress)  # type: ignore
    assert endpoints.NAMESPACE_PROFILE_PREFIX == "kns."
