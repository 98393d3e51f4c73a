"""IP-set membership: the incremental index against a from-scratch recomputation.

The property test drives the whole graph with random sequences of endpoint,
network-set, profile and policy changes, applies every flush to a checking
dataplane model, and then compares each set the dataplane holds with:

- a brute-force evaluation written here, independently of the graph, over the
  final datastore contents (own labels over profile labels, nets, named ports);
- a fresh graph fed the final contents as one snapshot (the same sets, the
  same members).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcalico.selector import parse
from libcalico.syncer import Update, UpdateType
from services.felix.calc.ipsets import IPSetDef, IPSetIndex, NamedPort
from tests.unit.felix.test_calc_builders import (
    Harness,
    delete,
    hep,
    netset,
    policy,
    profile,
    rkey,
    wep,
    wep_key,
)

# ---------------------------------------------------------- IPSetIndex unit


def recorder() -> tuple[IPSetIndex, list[tuple[str, str, str]]]:
    events: list[tuple[str, str, str]] = []
    index = IPSetIndex(lambda s, mem: events.append(("+", s, mem)), lambda s, mem: events.append(("-", s, mem)))
    return index, events


def test_activate_counts_existing_members_quietly_and_deactivate_forgets() -> None:
    index, events = recorder()
    index.update_item("a", {"app": "x"}, ("10.0.0.1/32",), ())
    index.update_item("b", {"app": "y"}, ("10.0.0.2/32",), ())
    defn = IPSetDef(parse("app == 'x'"))
    index.activate(defn)
    assert events == []  # a new set goes out whole: its first members are not reported one by one
    assert index.members(defn.id) == {"10.0.0.1/32"}
    index.update_item("c", {"app": "x"}, ("10.0.0.3/32",), ())
    assert events == [("+", defn.id, "10.0.0.3/32")]
    index.deactivate(defn.id)
    assert index.members(defn.id) == frozenset() and index.definition(defn.id) is None
    index.update_item("d", {"app": "x"}, ("10.0.0.4/32",), ())
    assert len(events) == 1


def test_load_then_activate_equals_one_by_one() -> None:
    items = [(f"i{n}", {"app": "xy"[n % 2], "role": "db" if n % 3 else "web"},
              (f"10.0.0.{n}/32", "10.9.0.0/16"), (NamedPort("http", "tcp", 80 + n % 2),) if n % 4 else ())
             for n in range(40)]
    defs = [IPSetDef(parse(text), *port) for text in ("app == 'x'", "role != 'db'", "app == 'y' && has(role)",
                                                      "all()", "role contains 'e'")
            for port in ((), ("http", "tcp"))]
    bulk, _ = recorder()
    bulk.load({i[0]: i[1] for i in items}, {i[0]: i[2] for i in items}, {i[0]: i[3] for i in items if i[3]})
    one, _ = recorder()
    for defn in defs:
        one.activate(defn)
    for item in items:
        one.update_item(*item)
    for defn in defs:
        bulk.activate(defn)
        assert bulk.members(defn.id) == one.members(defn.id), str(defn.selector)
    assert bulk.members(defs[0].id) == {f"10.0.0.{n}/32" for n in range(0, 40, 2)} | {"10.9.0.0/16"}
    assert bulk.members(defs[1].id) == {f"10.0.0.{n},tcp:80" for n in range(2, 40, 4)} | {"10.9.0.0,tcp:80"}


def test_two_sets_on_one_selector() -> None:
    index, _ = recorder()
    ports = (NamedPort("http", "tcp", 80), NamedPort("dns", "udp", 53))
    index.update_item("a", {"app": "x"}, ("10.0.0.1/32", "fd00::1/128"), ports)
    plain = IPSetDef(parse("app == 'x'"))
    named = IPSetDef(parse("app == 'x'"), "http", "tcp")
    index.activate(plain)
    index.activate(named)
    assert index.members(named.id) == {"10.0.0.1,tcp:80", "fd00::1,tcp:80"}
    index.deactivate(plain.id)
    index.update_item("a", {"app": "x"}, ("10.0.0.9/32",), ports)
    assert index.members(named.id) == {"10.0.0.9,tcp:80"}


def test_members_are_counted() -> None:
    index, events = recorder()
    defn = IPSetDef(parse("has(ext)"))
    index.activate(defn)
    index.update_item("a", {"ext": ""}, ("10.0.0.0/8",), ())
    index.update_item("b", {"ext": ""}, ("10.0.0.0/8",), ())
    index.delete_item("a")
    assert index.members(defn.id) == {"10.0.0.0/8"}
    index.delete_item("b")
    assert events == [("+", defn.id, "10.0.0.0/8"), ("-", defn.id, "10.0.0.0/8")]


def test_named_port_set_needs_a_protocol() -> None:
    try:
        IPSetDef(parse("all()"), "http")
    except ValueError as exc:
        assert "protocol" in str(exc)
    else:
        raise AssertionError("a named-port set without a protocol was accepted")


# ------------------------------------------------------------ the property

NODES = ("node1", "node2")
NAMESPACES = ("ns0", "ns1")
KEYS = ("app", "role")
VALUES = ("a", "b")
IPS = ("10.0.0.1/32", "10.0.0.2/32", "10.0.0.3/32", "fd00::1/128")
NETS = ("10.9.0.0/16", "10.0.0.1/32", "192.168.0.0/24")
SELECTORS = ("app == 'a'", "role == 'b'", "has(app)", "app != 'a'", "pcns.team == 'x'", "all()",
             "!has(role)", "pcsa.tier == 'b'", "p == 'a' || app == 'b'")
HTTP_TCP = {"name": "http", "protocol": "TCP", "port": 80}
HTTP_UDP = {"name": "http", "protocol": "UDP", "port": 81}
DNS = {"name": "dns", "protocol": "UDP", "port": 53}
PORT_CHOICES = ((), (HTTP_TCP,), (HTTP_UDP,), (DNS,), (HTTP_TCP, DNS), (HTTP_UDP, DNS))

labels = st.dictionaries(st.sampled_from(KEYS + ("p",)), st.sampled_from(VALUES), max_size=3)


@st.composite
def workload_op(draw: Any) -> tuple[Any, ...]:
    return ("wep", draw(st.integers(0, 5)), draw(st.sampled_from(NAMESPACES)),
            draw(st.sampled_from(NODES + ("node1",))),  # two in three on this node
            draw(labels), tuple(draw(st.lists(st.sampled_from(IPS), min_size=1, max_size=2, unique=True))),
            tuple(draw(st.lists(st.sampled_from(("p0", "p1", "kns.ns0", "kns.ns1", "ksa.ns0.sa")),
                                max_size=2, unique=True))),
            draw(st.sampled_from(range(len(PORT_CHOICES)))),
            draw(st.sampled_from((None, "sa", "other"))))


@st.composite
def rule_op(draw: Any) -> dict[str, Any]:
    side: dict[str, Any] = {}
    if draw(st.booleans()):
        side["selector"] = draw(st.sampled_from(SELECTORS))
    choice = draw(st.integers(0, 4))
    if choice == 1:
        side["namespaceSelector"] = draw(st.sampled_from(("team == 'x'", "all()", "global()")))
    elif choice == 2:
        side["notSelector"] = draw(st.sampled_from(SELECTORS))
    elif choice == 3:
        side["serviceAccounts"] = {"names": ["sa"]}
    rule: dict[str, Any] = {"action": draw(st.sampled_from(("Allow", "Deny"))), "source": side}
    if draw(st.booleans()):
        rule["protocol"] = draw(st.sampled_from(("TCP", "UDP")))
        rule["destination"] = {"ports": [draw(st.sampled_from(("http", "dns", 443)))]}
    return rule


POLICY_OPS = st.tuples(st.just("policy"), st.integers(0, 3), st.sampled_from((None,) + NAMESPACES),
                       st.sampled_from(("all()", "has(app)") + SELECTORS), st.lists(rule_op(), min_size=1, max_size=2))
OPS = st.one_of(
    workload_op(),
    workload_op(),
    POLICY_OPS,
    POLICY_OPS,
    st.tuples(st.just("netset"), st.integers(0, 2), st.sampled_from((None,) + NAMESPACES), labels,
              st.lists(st.sampled_from(NETS), max_size=2, unique=True).map(tuple)),
    st.tuples(st.just("hep"), st.integers(0, 1), st.sampled_from(NODES), labels,
              st.lists(st.sampled_from(("192.168.5.1", "10.0.0.2")), max_size=2, unique=True).map(tuple)),
    st.tuples(st.just("profile"), st.sampled_from(("p0", "p1", "ksa.ns0.sa")),
              st.dictionaries(st.sampled_from(("app", "p", "pcsa.tier")), st.sampled_from(VALUES), max_size=2)),
    st.tuples(st.just("nsprofile"), st.sampled_from(NAMESPACES), st.sampled_from(("x", "y"))),
    st.tuples(st.just("delete"), st.sampled_from(("wep", "netset", "hep", "profile", "policy")), st.integers(0, 5)),
)


class Store:
    """The final datastore contents, kept by key, to recompute from."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, Any]] = {}
        self.keys_by_op: dict[tuple[str, int], list[str]] = {}

    def apply(self, update: Update) -> Update:
        if update.value is None:
            self.values.pop(update.key, None)
        else:
            self.values[update.key] = update.value
        return update


def to_updates(op: tuple[Any, ...], store: Store) -> list[Update]:
    kind = op[0]
    if kind == "wep":
        _, i, ns, node, labs, ips, profs, ports, sa = op
        name = f"w{i}"
        # One pod name lives in one namespace at a time.
        out = [store.apply(delete(wep_key(name, other))) for other in NAMESPACES
               if other != ns and wep_key(name, other) in store.values]
        return out + [store.apply(wep(name, ns, node, ips, labs, profs, list(PORT_CHOICES[ports]), sa))]
    if kind == "netset":
        _, i, ns, labs, nets = op
        return [store.apply(netset(f"n{i}", nets, ns, labs))]
    if kind == "hep":
        _, i, node, labs, ips = op
        return [store.apply(hep(f"h{i}", node, "eth0", ips, labs))]
    if kind == "profile":
        return [store.apply(profile(op[1], op[2]))]
    if kind == "nsprofile":
        return [store.apply(profile(f"kns.{op[1]}", {"pcns.team": op[2]}))]
    if kind == "policy":
        _, i, ns, sel, rules = op
        return [store.apply(policy(f"pol{i}", ns, sel, ingress=rules))]
    _, what, i = op
    prefixes = {"wep": "/workloadendpoints/", "netset": "networksets/", "hep": "/hostendpoints/h",
                "profile": "/profiles/p", "policy": "policies/"}
    names = {"wep": f"/w{i}", "netset": f"/n{i}", "hep": f"h{i}", "profile": f"p{i}", "policy": f"/pol{i}"}
    return [store.apply(delete(k)) for k in sorted(store.values)
            if prefixes[what] in k and k.endswith(names[what])]


def effective_items(store: Store) -> dict[str, tuple[dict[str, str], list[str], list[tuple[str, str, int]]]]:
    """Brute force: every item's effective labels, nets and named ports, from the raw values."""
    profiles = {v["metadata"]["name"]: v["spec"].get("labelsToApply") or {}
                for v in store.values.values() if v["kind"] == "Profile"}
    out = {}
    for key, v in store.values.items():
        meta, spec, kind = v["metadata"], v["spec"], v["kind"]
        own = dict(meta.get("labels") or {})
        ports: list[tuple[str, str, int]] = []
        if kind == "WorkloadEndpoint":
            if not spec.get("ipNetworks"):
                continue
            own = {k: x for k, x in own.items() if not k.startswith(("pcns.", "pcsa."))}
            own["projectcalico.org/namespace"] = meta["namespace"]
            own.setdefault("projectcalico.org/orchestrator", "k8s")
            if spec.get("serviceAccountName"):
                own["projectcalico.org/serviceaccount"] = spec["serviceAccountName"]
            parents, nets = spec.get("profiles") or [], spec["ipNetworks"]
            ports = [(p["name"], p["protocol"].lower(), p["port"]) for p in spec.get("ports") or []]
        elif kind == "HostEndpoint":
            parents, nets = spec.get("profiles") or [], spec.get("expectedIPs") or []
        elif kind in ("NetworkSet", "GlobalNetworkSet"):
            parents, nets = [], spec.get("nets") or []
            if kind == "NetworkSet":
                own["projectcalico.org/namespace"] = meta["namespace"]
                parents = [f"kns.{meta['namespace']}"]
        else:
            continue
        merged: dict[str, str] = {}
        for parent in reversed(parents):
            merged.update(profiles.get(parent, {}))
        merged.update(own)
        out[key] = (merged, [str(ipaddress.ip_network(n, strict=False)) for n in nets], ports)
    return out


def brute_members(defn: IPSetDef, items: dict[str, Any]) -> set[str]:
    members: set[str] = set()
    for labs, nets, ports in items.values():
        if not defn.selector.evaluate(labs):
            continue
        if not defn.named_port:
            members.update(nets)
            continue
        for name, proto, number in ports:
            if name == defn.named_port and proto == defn.protocol:
                members.update(f"{n.split('/')[0]},{proto}:{number}" for n in nets)
    return members


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(OPS, min_size=1, max_size=8), min_size=2, max_size=10))
def test_incremental_membership_equals_recomputation(batches: list[list[tuple[Any, ...]]]) -> None:
    store = Store()
    h = Harness()
    first, rest = batches[0], batches[1:]
    h.start(*[u for op in first for u in to_updates(op, store)])
    for batch in rest:
        h.send(*[u for op in batch for u in to_updates(op, store)])

    items = effective_items(store)
    for set_id, members in h.dp.ipsets.items():
        defn = h.graph.ipset_definition(set_id)
        assert defn is not None, f"the dataplane holds {set_id}, which the graph no longer has"
        assert members == brute_members(defn, items), (set_id, str(defn.selector), defn.named_port)

    fresh = Harness()
    fresh.start(*_snapshot(store))
    assert fresh.dp.ipsets == h.dp.ipsets
    assert fresh.dp.policies == h.dp.policies
    assert fresh.dp.workloads == h.dp.workloads


def _snapshot(store: Store) -> list[Update]:
    return [Update(k, v, 1, UpdateType.NEW) for k, v in sorted(store.values.items())]


def test_store_deletes_match_keys() -> None:
    store = Store()
    to_updates(("policy", 1, "ns0", "all()", [{"action": "Allow"}]), store)
    to_updates(("hep", 1, "node1", {}, ()), store)
    assert rkey("networkpolicies", "pol1", "ns0") in store.values
    to_updates(("delete", "policy", 1), store)
    to_updates(("delete", "hep", 1), store)
    assert store.values == {}
