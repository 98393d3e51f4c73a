"""``fastpath.accepts`` for FelixConfiguration: the fast path's own field table is the model's, field by field,
and it never says True where the model says no.

- The table: each field's shape is derived from the model's pydantic type (the validator it
  runs and that validator's parameters: ranges, enum values and case rule, patterns, IP
  version, nested models and which of their fields are required) and compared with
  ``fastconfig.FIELDS`` / ``fastconfig.MODELS``: same fields, same shapes.
- Each field on its own: boundary and near-miss probes made from its shape; the fast path
  agrees with the model on every one, except that it leaves to the model what only Unicode
  folding or a negative sign makes valid.
- The cross-field rules, the corpora, a differential property test and a single-slot sweep
  from rich seeds, as for the other kinds.
"""

from __future__ import annotations

import copy
import inspect
import random
import types
import typing
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcalico.resources import felixconfig
from libcalico.resources import fields as model_fields
from libcalico.resources.fields import SpecModel
from libcalico.syncer import fastconfig
from tests.unit.test_syncer_fastpath_kinds import (
    _GONE,
    REPLACEMENTS,
    Chooser,
    _changed,
    _documents,
    _paths,
    fast_accepts,
    model_accepts,
    mutate,
)

V3 = "projectcalico.org/v3"
KIND = "FelixConfiguration"


def doc_of(spec: dict[str, Any], name: str = "default") -> dict[str, Any]:
    return {"apiVersion": V3, "kind": KIND, "metadata": {"name": name}, "spec": spec}


# ---------------------------------------------------------------- the model's table, read as shapes

_SIMPLE_VALIDATORS = {
    felixconfig._string: fastconfig.STR,
    model_fields.non_negative_duration: fastconfig.DURATION,
    felixconfig._regexp: fastconfig.REGEXP,
    felixconfig._key_value_list: fastconfig.KEY_VALUE_LIST,
    felixconfig._cidr_list_item: fastconfig.CIDR,
    model_fields._rule_port: fastconfig.PORT,
    felixconfig._proto_port_protocol: fastconfig.PROTOCOL,
    felixconfig._optional_cidr: fastconfig.CIDR_OR_EMPTY,
}


def model_shape(tp: Any) -> tuple[Any, ...]:
    """The shape of a field type of the model, read from the type and its validator's parameters."""
    if tp is bool:
        return fastconfig.BOOL
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return fastconfig.list_of(model_shape(args[0]))
    if origin is dict:
        assert args == (str, str), tp
        return fastconfig.STR_MAP
    if origin is typing.Annotated:
        (validator,) = args[1:]
        func = validator.func
        if func in _SIMPLE_VALIDATORS:
            return _SIMPLE_VALIDATORS[func]
        params = inspect.getclosurevars(func).nonlocals
        built_by = func.__qualname__.split(".<locals>")[0]
        if built_by == "int_range":
            return fastconfig.integer(params["low"], params["high"])
        if built_by == "enum":
            assert set(params["wanted"]) == {*(v.lower() if params["any_case"] else v for v in params["values"]), ""}
            return fastconfig.enum(*params["values"], any_case=params["any_case"])
        if built_by == "_matching":
            assert params["pattern"].flags == felixconfig.re.compile("").flags  # no flags beyond the default
            return fastconfig.matching(params["pattern"].pattern)
        if built_by == "_ip_of":
            return fastconfig.ip(params["version"])
    if isinstance(tp, type) and issubclass(tp, SpecModel):
        return fastconfig.model(tp.__name__)
    raise AssertionError(f"a field type this test cannot read: {tp!r}")


def without_none(tp: Any) -> tuple[Any, bool]:
    """``X | None`` → (X, True); anything else → (it, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(tp) if a is not type(None)]
        assert len(rest) == 1, tp
        return rest[0], True
    return tp, False


def nested_models() -> dict[str, type[SpecModel]]:
    found: dict[str, type[SpecModel]] = {}
    pending = list(felixconfig.FIELDS.values())
    while pending:
        tp = without_none(pending.pop())[0]
        if isinstance(tp, type) and issubclass(tp, SpecModel):
            found[tp.__name__] = tp
            pending += typing.get_type_hints(tp, include_extras=True).values()
        else:
            pending += [a for a in typing.get_args(tp) if typing.get_origin(tp) in (list, dict)]
    return found


def test_the_field_table_is_the_models_field_by_field() -> None:
    assert list(fastconfig.FIELDS) == list(felixconfig.FIELDS)  # same fields, same order
    for name, tp in felixconfig.FIELDS.items():
        assert fastconfig.FIELDS[name] == model_shape(tp), name
    spec_fields = felixconfig.FelixConfigurationSpec.model_fields
    assert set(spec_fields) == set(fastconfig.FIELDS)
    assert not any(f.is_required() for f in spec_fields.values())  # every field optional: null means unset


def test_the_nested_models_are_the_models_field_by_field() -> None:
    models = nested_models()
    assert set(models) == set(fastconfig.MODELS)
    for name, cls in models.items():
        hints = typing.get_type_hints(cls, include_extras=True)
        described = fastconfig.MODELS[name]
        assert list(described) == list(cls.model_fields), name
        for field, info in cls.model_fields.items():
            tp, optional = without_none(hints[field])
            assert described[field] == (model_shape(tp), info.is_required()), (name, field)
            assert optional == (not info.is_required()), (name, field)  # required fields take no null
        assert cls.model_config.get("extra") == "forbid" and cls.model_config.get("strict") is True


def test_every_shape_compiles() -> None:
    for shape in fastconfig.FIELDS.values():
        assert callable(fastconfig.compile_shape(shape))
    with pytest.raises(ValueError, match="unknown field shape"):
        fastconfig.compile_shape(("float",))


# ---------------------------------------------------------------- each field on its own

ODD: list[Any] = [None, True, False, 0, 1, -1, 1.5, "", "x", " ", "é", [], {}, [None], ["x"], {"a": "b"}, 2**63]


def probes(shape: tuple[Any, ...]) -> list[Any]:
    """Boundary and near-miss values for one shape."""
    tag = shape[0]
    if tag == "int":
        low, high = shape[1], shape[2]
        return [low, low + 1, low - 1, high - 1, high, high + 1, float(low), str(low), True]
    if tag == "enum":
        out: list[Any] = []
        for value in shape[1]:
            out += [value, value.lower(), value.upper(), value + " ", value[:-1], "\u0130" + value[1:]]
        return out + ["bogus", "K\u212a"]
    if tag == "match":
        return ["eth0", "x" * 15, "x" * 16, "x" * 64, "x" * 65, "a b", "a:b+c.d", "Auto", "auto", "10s", "1.5ms",
                ".5us", "1s2m", "a_b -c", "eth0\n", "é"]
    if tag == "ip":
        return ["10.0.0.1", "fd00::1", "10.0.0.1/32", "fe80::1%eth0", "010.0.0.1", "::ffff:10.0.0.1"]
    if tag == "list":
        inner = probes(shape[1])
        return [[], inner[:1], inner[:3], inner, "x", [None]]
    if tag == "model":
        fields = fastconfig.MODELS[shape[1]]
        good = GOOD[shape[1]]
        out = [good, {**good, "bogus": 1}, {}]
        for name in fields:
            out += [{k: v for k, v in good.items() if k != name}, {**good, name: None}]
            out += [{**good, name: p} for p in probes(fields[name][0])]
        return out
    simple: dict[str, list[Any]] = {
        "bool": [True, False, 1, 0, "true"],
        "str": ["", "x", "a\nb", "é"],
        "duration": ["0", "10s", "1m30s", "1.5h", ".5s", "5.s", "10", "-1s", "-0s", "+1s", "1d", "١s", "10µs",
                     "10μs", "1e3s", "10s ", " 10s", "0s", "00"],
        "regexp": ["a.*", "(", "[a-z]+", "(?i)eth.*", "*", "a{2,1}"],
        "key-value-list": ["a=b,c=d", "a=b,,", "=b", "a", "a=b\n", " a=b", "\ta=", "é=b", "a\u00a0=b", "a=b=c",
                           "SNATFullyRandom=true,MASQFullyRandom=false,RestoreSupportsLock="],
        "port": [80, "80", "80:90", "90:80", "http", "0", 0, 65535, 65536, "08:09", "80:80", ":80", "a--b", "٨٠"],
        "cidr": ["10.0.0.0/8", "10.0.0.1/8", "fd00::/64", "10.0.0.1", "10.0.0.0/33", "10.0.0.0/08"],
        "str-map": [{"eth0": "x"}, {"bad key!": "x"}, {"a": 1}, {"x" * 16: "y"}, {"eth0": None}],
        "protocol": ["TCP", "tcp", "Udp", "SCTP", "ICMP", "ſctp", "6"],
        "cidr-or-empty": ["", "10.0.0.0/8", "10.0.0.1", "fd00::/64", "bogus"],
    }
    return simple[tag]


GOOD: dict[str, dict[str, Any]] = {  # a valid value of each nested model, every field set
    "ProtoPort": {"protocol": "TCP", "port": 22, "net": "10.0.0.0/8"},
    "RouteTableRange": {"min": 1, "max": 250},
    "HealthTimeoutOverride": {"name": "CalculationGraph", "timeout": "30s"},
    "BPFConntrackTimeouts": {name: "Auto" for name in fastconfig.MODELS["BPFConntrackTimeouts"]},
}


def exotic(value: Any) -> bool:
    """Valid to the model only through Unicode folding or digits, or a negative sign: left to the model."""
    if isinstance(value, str):
        return not value.isascii() or value.startswith("-")
    if isinstance(value, list):
        return any(exotic(v) for v in value)
    if isinstance(value, dict):
        return any(exotic(k) or exotic(v) for k, v in value.items())
    return False


@pytest.mark.parametrize("field", list(fastconfig.FIELDS))
def test_each_field_agrees_with_the_model(field: str) -> None:
    shape = fastconfig.FIELDS[field]
    fast_taken = 0
    for value in [*ODD, *probes(shape)]:
        doc = doc_of({field: value})
        fast, model = fast_accepts(KIND, doc), model_accepts(KIND, doc)
        if fast:
            fast_taken += 1
            assert model, f"{field} = {value!r}: accepted, the model rejects it"
        elif model:
            assert exotic(value), f"{field} = {value!r}: valid but not on the fast path"
    assert fast_taken >= 2, field  # null and at least one real value


# ---------------------------------------------------------------- the cross-field rules

CROSS: list[dict[str, Any]] = [
    {"kubeNodePortRanges": ["30000:32767"] * 7}, {"kubeNodePortRanges": ["30000:32767"] * 8},
    {"kubeNodePortRanges": ["http"]}, {"kubeNodePortRanges": ["30000"]}, {"kubeNodePortRanges": [30000, "1:1"]},
    {"externalNodesList": ["10.0.0.0/8", "192.0.2.1"]}, {"externalNodesList": ["fd00::/64"]},
    {"openstackRegion": "r" * 46}, {"openstackRegion": "r" * 47}, {"openstackRegion": "Region"},
    {"openstackRegion": ""}, {"openstackRegion": "a-b"},
    {"routeTableRange": {"min": 1, "max": 250}}, {"routeTableRange": {"min": 0, "max": 250}},
    {"routeTableRange": {"min": 1, "max": 251}}, {"routeTableRange": {"min": 5, "max": 4}},
    {"routeTableRange": {"min": 1, "max": 2}, "routeTableRanges": []},
    {"routeTableRange": None, "routeTableRanges": [{"min": 1, "max": 2}]},
    {"routeTableRanges": [{"min": 1, "max": 65535}]}, {"routeTableRanges": [{"min": 1, "max": 65536}]},
    {"routeTableRanges": [{"min": 1, "max": 30000}, {"min": 40000, "max": 75535}]},
    {"routeTableRanges": [{"min": 1, "max": 30000}, {"min": 40000, "max": 75536}]},
    {"routeTableRanges": [{"min": 0, "max": 3}]}, {"routeTableRanges": [{"min": 3, "max": 2}]},
    {"routeTableRanges": [{"min": 2**32 - 1, "max": 2**32 - 1}]},
    {"bpfLogFilters": {"eth0": "tcp port 80", "all": ""}}, {"bpfLogFilters": {"not an iface": "x"}},
    {"bpfLogFilters": {"x" * 16: "x"}},
]


@pytest.mark.parametrize("spec", CROSS, ids=lambda s: repr(s)[:60])
def test_cross_field_rules_are_the_models(spec: dict[str, Any]) -> None:
    doc = doc_of(spec)
    assert fast_accepts(KIND, doc) == model_accepts(KIND, doc)


@pytest.mark.parametrize(("meta", "valid"), [
    ({"name": "default"}, True), ({"name": "node.node-1"}, True), ({"name": "Node1"}, False),
    ({"name": "default", "namespace": "x"}, False), ({"name": "default", "labels": {"a": "b"}}, True),
])
def test_names_and_metadata_are_the_models(meta: dict[str, Any], valid: bool) -> None:
    doc = {"apiVersion": V3, "kind": KIND, "metadata": meta, "spec": {"logSeverityScreen": "Info"}}
    assert model_accepts(KIND, doc) == valid
    assert fast_accepts(KIND, doc) == valid


def test_spec_left_out_is_valid_and_null_is_not() -> None:
    doc: dict[str, Any] = {"apiVersion": V3, "kind": KIND, "metadata": {"name": "default"}}
    assert fast_accepts(KIND, doc) and model_accepts(KIND, doc)
    doc["spec"] = None
    assert not fast_accepts(KIND, doc) and not model_accepts(KIND, doc)


# ---------------------------------------------------------------- seeds, mutants, sweep

FAILSAFE_IN = [{"protocol": "TCP", "port": 22}, {"protocol": "UDP", "port": 68}, {"protocol": "TCP", "port": 179},
               {"protocol": "tcp", "port": 6443, "net": "10.0.0.0/8"}, {"port": 2379, "net": ""}]
SEEDS: list[dict[str, Any]] = [
    doc_of({"logSeverityScreen": "Info", "reportingInterval": "0s", "healthPort": 9099, "bpfLogLevel": "",
            "floatingIPs": "Disabled", "bpfConnectTimeLoadBalancing": "TCP", "bpfHostNetworkedNATWithoutCTLB": "Enabled",
            "failsafeInboundHostPorts": FAILSAFE_IN, "failsafeOutboundHostPorts": [{"protocol": "UDP", "port": 53}],
            "vxlanVNI": 4096, "vxlanEnabled": True, "ipipEnabled": False, "nftablesMode": "Enabled",
            "featureDetectOverride": "SNATFullyRandom=true,MASQFullyRandom=false", "iptablesMarkMask": 0xFFFF0000,
            "kubeNodePortRanges": ["30000:32767", 8080], "natPortRange": "32768:65535",
            "externalNodesList": ["192.0.2.0/24"], "mtuIfacePattern": "^((en|wl|ww|sl|ib)[opsx].*|(eth|wlan|wwan).*)",
            "healthTimeoutOverrides": [{"name": "InternalDataplaneMainLoop", "timeout": "60s"}],
            "routeTableRanges": [{"min": 1, "max": 250}], "bpfConntrackTimeouts": {"tcpEstablished": "1h",
                                                                                   "udpTimeout": "Auto"},
            "bpfLogFilters": {"eth0": "tcp"}, "natOutgoingAddress": "192.0.2.1", "deviceRouteSourceAddressIPv6": "fd00::1",
            "openstackRegion": "region-one", "bpfForceTrackPacketsFromIfaces": ["docker+"], "debugPort": None}),
    doc_of({"defaultEndpointToHostAction": "accept", "chainInsertMode": "Append", "ipv6Support": False,
            "routeTableRange": {"min": 10, "max": 20}, "wireguardInterfaceName": "wireguard.cali",
            "prometheusMetricsHost": "0.0.0.0", "iptablesBackend": "nft", "logSeverityFile": "Debug",
            "bpfPSNATPorts": 20000, "endpointStatusPathPrefix": "/var/run/calico"}, "node.node-1"),
    doc_of({}),
]
FIELD_NAMES = list(fastconfig.FIELDS)


def mutate_field(c: Chooser, doc: dict[str, Any]) -> None:
    """Set one random field to one of its probe values, an odd value or nothing."""
    name = c.pick(FIELD_NAMES)
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        spec = doc["spec"] = {}
    spec[name] = copy.deepcopy(c.pick([*probes(fastconfig.FIELDS[name]), *ODD]))


@st.composite
def mutants(draw: st.DrawFn) -> dict[str, Any]:
    c = Chooser(draw=draw)
    doc = copy.deepcopy(c.pick(SEEDS))
    for _ in range(c.int(0, 3)):
        (mutate_field if c.int(0, 1) else mutate)(c, doc)
    return doc


def test_seeds_take_the_fast_path() -> None:
    for doc in SEEDS:
        assert model_accepts(KIND, doc), doc
        assert fast_accepts(KIND, doc), doc


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutants())
def test_fast_path_accepts_only_what_the_model_accepts(doc: dict[str, Any]) -> None:
    if fast_accepts(KIND, doc):
        assert model_accepts(KIND, doc), f"fast path accepted what the model rejects: {doc!r}"


def test_most_valid_mutants_take_the_fast_path() -> None:
    c = Chooser(rnd=random.Random("fastconfig"))
    valid = fast = 0
    for _ in range(1500):
        doc = copy.deepcopy(c.pick(SEEDS))
        (mutate_field if c.int(0, 1) else mutate)(c, doc)
        if model_accepts(KIND, doc):
            valid += 1
            fast += fast_accepts(KIND, doc)
        else:
            assert not fast_accepts(KIND, doc), doc
    assert valid >= 200
    assert fast >= 0.9 * valid, f"only {fast} of {valid} valid mutants took the fast path"


def test_every_single_slot_change_agrees_with_the_model() -> None:
    checked = 0
    for seed in SEEDS:
        for path in _paths(seed):
            for value in [_GONE, *REPLACEMENTS]:
                doc = _changed(seed, path, value)
                if fast_accepts(KIND, doc):
                    checked += 1
                    assert model_accepts(KIND, doc), f"{path} = {value!r} accepted, the model rejects it"
    assert checked > 100


# ---------------------------------------------------------------- the corpora


def test_corpus_felix_configurations() -> None:
    valid = [(n, d) for n, d in _documents("valid") if d.get("kind") == KIND]
    invalid = [(n, d) for n, d in _documents("invalid") if isinstance(d, dict) and d.get("kind") == KIND]
    assert len(valid) >= 2 and len(invalid) >= 10
    for name, doc in valid:
        assert fast_accepts(KIND, doc) and model_accepts(KIND, doc), name
    for name, doc in _documents("invalid"):
        assert not fast_accepts(KIND, doc), f"{name}: invalid, yet accepted"
