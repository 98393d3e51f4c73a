"""The WorkloadEndpoint fast path never accepts what the model rejects, and accepts the common form.

The property test draws endpoints from the common form and from near misses of it
(wrong types, unknown fields, names with a trailing newline, non-ASCII digits,
out-of-range ports, duplicate port names...) and checks, against the full model,
that whatever the fast path accepts the model accepts too.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcalico.errors import ValidationError
from libcalico.resources.base import parse_resource
from libcalico.syncer import fastpath
from libcalico.syncer.fastpath import accepts_workload_endpoint

V3 = "projectcalico.org/v3"


def common(n: int = 1) -> dict[str, Any]:
    """A WorkloadEndpoint as Calico's CNI plugin writes one."""
    return {
        "apiVersion": V3, "kind": "WorkloadEndpoint",
        "metadata": {"name": f"node--1-k8s-web--{n}-eth0", "namespace": "shop", "generateName": "web-",
                     "uid": "0f6c1c1e-8d6f-4b7e-9a55-3c1d2f1e0b7a", "resourceVersion": "17",
                     "creationTimestamp": "2024-05-01T12:00:00Z",
                     "labels": {"app": "web", "projectcalico.org/namespace": "shop",
                                "projectcalico.org/orchestrator": "k8s"},
                     "annotations": {"cni.projectcalico.org/podIP": f"10.0.0.{n}/32"}},
        "spec": {"orchestrator": "k8s", "node": "node-1", "pod": f"web-{n}", "endpoint": "eth0",
                 "containerID": "5f1a" * 16, "serviceAccountName": "default",
                 "ipNetworks": [f"10.0.0.{n}/32"], "profiles": ["kns.shop", "ksa.shop.default"],
                 "interfaceName": f"cali{n:011x}", "mac": "ee:ee:ee:00:00:01",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 8080},
                           {"protocol": "UDP", "port": 53, "hostPort": 5353}]},
    }


def model_accepts(value: dict[str, Any]) -> bool:
    try:
        parse_resource(value)
    except ValidationError:
        return False
    return True


# --- near misses, each beside valid choices -------------------------------------------------

NAMES = st.sampled_from(["web-1", "a.b-c", "x" * 253, "x" * 254, "Web", "web-", "-web", "web\n", "we_b", "",
                         "web..1", "١٢٣", "web.", "a" * 63 + "." + "b"]) | st.text(max_size=12)
NAMESPACES = st.sampled_from(["shop", "a" * 63, "a" * 64, "Shop", "shop\n", "sh.op", "", "-shop"])
LABEL_KEYS = st.sampled_from(["app", "projectcalico.org/namespace", "a/b", "/b", "a/", "A_b.c", "-a", "a" * 64,
                              "x.y/" + "z" * 63, "app\n", "é"]) | st.text(max_size=8)
LABEL_VALUES = st.sampled_from(["web", "", "a" * 63, "a" * 64, "-a", "a-", "a b", "v1.2_3", "web\n", "ü"]) | st.text(
    max_size=8)
IPS = st.sampled_from(["10.0.0.1/32", "10.0.0.1", "10.0.0.1/31", "10.0.0.0/24", "010.0.0.1/32", "256.0.0.1/32",
                       "١٠.0.0.1/32", "fd00::1/128", "fd00::1", "10.0.0.1/32\n", "", "10.0.0.1/032"]) | st.text(
    max_size=6)
INTERFACES = st.sampled_from(["cali0123456789a", "cali0123456789ab", "eth0", "cali\n", "caliä", "", "a.b_c-d"])
MACS = st.sampled_from(["ee:ee:ee:00:00:01", "EE-EE-EE-00-00-01", "ee:ee-ee:00:00:01", "ee:ee:ee:00:00",
                        "ee:ee:ee:00:00:01\n", "ee:ee:ee:00:00:0١", "gg:ee:ee:00:00:01"])
CONTAINER_IDS = st.sampled_from(["5f1a" * 16, "abc-def", "-abc", "abc-", "ab\n", "äbc", "", "ABC123"])
PROTOCOLS = st.sampled_from(["TCP", "UDP", "SCTP", "ICMP", "tcp", "6", 6, 17, True, None, "", "256"])
PORT_NUMBERS = st.sampled_from([1, 80, 65535, 0, 65536, -1, True, "80", 8.0, None])
PORT_NAMES = st.sampled_from(["http", "dns", "", "HTTP", "a--b", "-a", "123", "a" * 15, "a" * 16, None, 5, "a\n"])
ODD_VALUES = st.sampled_from([None, 1, 1.5, True, [], {}, "x", ["x"], {"a": 1}])


@st.composite
def ports(draw: st.DrawFn) -> list[Any]:
    out: list[Any] = []
    for _ in range(draw(st.integers(0, 3))):
        port: dict[str, Any] = {}
        if draw(st.booleans()):
            port["name"] = draw(PORT_NAMES)
        if draw(st.integers(0, 9)):
            port["protocol"] = draw(PROTOCOLS)
        if draw(st.integers(0, 9)):
            port["port"] = draw(PORT_NUMBERS)
        if draw(st.booleans()):
            port["hostPort"] = draw(PORT_NUMBERS)
        if not draw(st.integers(0, 12)):
            port[draw(st.sampled_from(["hostIP", "extra"]))] = "10.0.0.1"
        out.append(port if draw(st.integers(0, 12)) else draw(ODD_VALUES))
    return out


@st.composite
def endpoints(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly the common form with a few fields replaced by near misses (or valid alternatives)."""
    value = common(draw(st.integers(1, 250)))
    meta, spec = value["metadata"], value["spec"]
    changes = draw(st.integers(0, 3))
    for _ in range(changes):
        what = draw(st.integers(0, 16))
        if what == 0:
            meta["name"] = draw(NAMES)
        elif what == 1:
            meta["namespace"] = draw(NAMESPACES)
        elif what == 2:
            meta["labels"] = draw(st.dictionaries(LABEL_KEYS, LABEL_VALUES | ODD_VALUES, max_size=3))
        elif what == 3:
            meta["annotations"] = draw(st.dictionaries(LABEL_KEYS, LABEL_VALUES | ODD_VALUES, max_size=3))
        elif what == 4:
            spec["ipNetworks"] = draw(st.lists(IPS | ODD_VALUES, max_size=3))
        elif what == 5:
            spec["interfaceName"] = draw(INTERFACES | ODD_VALUES)
        elif what == 6:
            spec["mac"] = draw(MACS | ODD_VALUES)
        elif what == 7:
            spec["containerID"] = draw(CONTAINER_IDS | ODD_VALUES)
        elif what == 8:
            spec["ports"] = draw(ports())
        elif what == 9:
            spec["node"] = draw(NAMES | ODD_VALUES)
        elif what == 10:
            spec["profiles"] = draw(st.lists(NAMES | ODD_VALUES, max_size=3))
        elif what == 11:  # a field dropped
            target = draw(st.sampled_from([value, meta, spec]))
            if target:
                target.pop(draw(st.sampled_from(sorted(target))), None)
        elif what == 12:  # an odd type anywhere
            target = draw(st.sampled_from([value, meta, spec]))
            if target:
                target[draw(st.sampled_from(sorted(target)))] = draw(ODD_VALUES)
        elif what == 13:  # a field the fast path leaves to the model, or an unknown one
            spec[draw(st.sampled_from(["ipNATs", "ipv4Gateway", "allowSpoofedSourcePrefixes", "bogus"]))] = draw(
                st.sampled_from([[], "10.0.0.1", ["10.0.0.0/24"], [{"internalIP": "10.0.0.1",
                                                                     "externalIP": "1.2.3.4"}]]))
        elif what == 14:
            meta[draw(st.sampled_from(["deletionTimestamp", "generation", "finalizers", "bogus"]))] = draw(
                ODD_VALUES | st.just("2024-01-01T00:00:00Z"))
        elif what == 15:
            value[draw(st.sampled_from(["apiVersion", "kind"]))] = draw(
                st.sampled_from(["projectcalico.org/v2", "HostEndpoint", "workloadendpoint", V3]))
        else:
            spec[draw(st.sampled_from(["orchestrator", "workload", "pod", "endpoint", "serviceAccountName"]))] = (
                draw(st.text(max_size=4) | ODD_VALUES))
    return value


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(endpoints())
def test_fast_path_accepts_only_what_the_model_accepts(value: dict[str, Any]) -> None:
    before = copy.deepcopy(value)
    if accepts_workload_endpoint(value):
        assert model_accepts(value), f"fast path accepted what the model rejects: {value!r}"
    assert value == before, "the fast path must not change the value"


def test_the_common_form_takes_the_fast_path() -> None:
    samples = [common(n) for n in range(1, 40)]
    assert all(accepts_workload_endpoint(v) for v in samples)
    assert all(model_accepts(v) for v in samples)
    without_optional = common()
    for field in ("ports", "mac", "containerID", "profiles", "node"):
        del without_optional["spec"][field]
    del without_optional["metadata"]["labels"], without_optional["metadata"]["annotations"]
    assert accepts_workload_endpoint(without_optional) and model_accepts(without_optional)


@pytest.mark.parametrize("path, value", [
    (("spec", "ipNATs"), [{"internalIP": "10.0.0.1", "externalIP": "1.2.3.4"}]),
    (("spec", "allowSpoofedSourcePrefixes"), ["10.9.0.0/16"]),
    (("spec", "ipv4Gateway"), "10.0.0.254"),
    (("metadata", "generation"), 3),
    (("metadata", "finalizers"), ["a/b"]),
])
def test_forms_it_does_not_know_go_to_the_model(path: tuple[str, str], value: Any) -> None:
    doc = common()
    doc[path[0]][path[1]] = value
    assert not accepts_workload_endpoint(doc)
    assert model_accepts(doc)


@pytest.mark.parametrize("path, value", [
    (("spec", "ipNetworks"), ["fd00::1/128"]),  # IPv6: checked the model's way (ipaddress)
    (("spec", "ipNetworks"), ["10.0.0.1", "fd00::1"]),
    (("spec", "ports"), [{"name": "http", "protocol": 6, "port": 80}]),  # a protocol by number
    (("spec", "ports"), [{"name": "dns", "protocol": "17", "port": 53, "hostPort": 53, "hostIP": "10.1.1.1"}]),
    (("metadata", "namespace"), None),  # the model allows a namespaced resource without one
])
def test_other_valid_forms_take_the_fast_path(path: tuple[str, str], value: Any) -> None:
    doc = common()
    doc[path[0]][path[1]] = value
    assert accepts_workload_endpoint(doc)
    assert model_accepts(doc)


@pytest.mark.parametrize("path, bad", [
    (("spec", "ipNetworks"), ["10.0.0.0/24"]),
    (("spec", "ipNetworks"), ["١٠.0.0.1/32"]),
    (("spec", "interfaceName"), "cali0123456789ab"),
    (("spec", "ports"), [{"name": "http", "protocol": "TCP", "port": 80}, {"name": "http", "protocol": "UDP",
                                                                          "port": 81}]),
    (("spec", "ports"), [{"protocol": "TCP", "port": 80}]),
    (("spec", "ports"), [{"name": "http", "protocol": "ICMP", "port": 80}]),
    (("spec", "ports"), [{"name": "http", "protocol": "TCP", "port": 0}]),
    (("metadata", "labels"), {"app": "-web"}),
    (("metadata", "name"), "web\n"),  # both reject a trailing newline (the model uses fullmatch)
    (("metadata", "namespace"), "Shop"),
])
def test_invalid_endpoints_are_rejected(path: tuple[str, str], bad: Any) -> None:
    value = common()
    value[path[0]][path[1]] = bad
    assert not accepts_workload_endpoint(value)
    assert not model_accepts(value)


def test_the_models_are_the_ones_the_fast_path_was_checked_against() -> None:
    assert fastpath.model_fingerprint() == fastpath.MODEL_FINGERPRINT, (
        "a resource model module changed: review libcalico/syncer/fast*.py against it,"
        " run test_syncer_fastpath*.py (property and corpus tests), then set MODEL_FINGERPRINT to the new value")


def test_a_changed_model_turns_the_fast_path_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastpath, "MODEL_FINGERPRINT", "0" * 64)
    monkeypatch.setattr(fastpath, "_enabled", None)
    with structlog.testing.capture_logs() as logs:
        assert not accepts_workload_endpoint(common())
        assert not accepts_workload_endpoint(common(2))
    assert [e["event"] for e in logs] == ["syncer fast validation disabled"]
