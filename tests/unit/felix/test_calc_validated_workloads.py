"""``CalcGraph(validate_workloads=True)``: the graph validates WorkloadEndpoints itself, reading each once.

- The fast path's field reader says yes exactly when ``accepts`` does, and the
  record built from its fields equals :func:`workload_record` of the map.
- A graph that validates gives the same messages as one that trusts its
  stream, for valid data (bulk and incremental); invalid endpoints (which a
  trusting graph would read) are logged and left out, valid ones the fast
  path cannot vouch for go through the model and are kept.
- With it, a direct syncer leaves WorkloadEndpoints to the graph
  (``validated_kinds``), and the broken one is still rejected, by the graph.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.errors import ValidationError
from libcalico.resources import parse_resource
from libcalico.syncer import Syncer, Update, fastpath
from services.felix import messages as m
from services.felix.calc import CalcGraph
from services.felix.calc.endpoints import workload_from_fields, workload_record
from services.felix.config import SPEC
from services.felix.input import open_input
from tests.unit.felix.test_calc_builders import (
    HOST,
    GraphSink,
    Harness,
    ns_profile,
    policy,
    wep,
    wep_key,
)
from tests.unit.felix.test_calc_coldstart import ALL_OPS, content, same_dataplane, updates_of
from tests.unit.felix.test_calc_decoding import workload_maps
from tests.unit.felix.test_calc_ipsets import Store

API = "projectcalico.org/v3"
KEY = "/calico/resources/v3/projectcalico.org/workloadendpoints/ns/a"

TEXT = st.sampled_from(["node1", "node2", "k8s", "pod-a", "eth0", "sa", "", None])
NETS = st.sampled_from(["10.0.0.1/32", "10.0.0.2", "fd00::1/128", "fd00::2", "10.0.0.0/24", "010.0.0.1",
                        "10.0.0.300/32"])
LABELS = st.dictionaries(st.sampled_from(["app", "role", "pcns.x", "pcsa.y", "projectcalico.org/orchestrator",
                                          "projectcalico.org/namespace", "projectcalico.org/serviceaccount"]),
                         st.sampled_from(["a", "b", ""]), max_size=4)
PORT = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["http", "dns"]), "protocol": st.sampled_from(["TCP", "UDP"]),
                           "port": st.sampled_from([80, 53])}),
    st.fixed_dictionaries({"protocol": st.just("TCP"), "port": st.just(8080), "hostPort": st.just(30080)}),
    st.fixed_dictionaries({"name": st.just("web"), "protocol": st.just(6), "port": st.just(81)}),
)


@st.composite
def plain_workloads(draw: st.DrawFn) -> dict[str, Any]:
    """WorkloadEndpoint maps mostly in the plain form (the fast path vouches for many of them)."""
    spec: dict[str, Any] = {}
    for field in ("node", "orchestrator", "pod", "workload", "endpoint", "serviceAccountName"):
        if draw(st.booleans()):
            spec[field] = draw(TEXT)
    if draw(st.booleans()):
        spec["interfaceName"] = draw(st.sampled_from(["cali1", "eth.0", "x" * 16]))
    if draw(st.booleans()):
        spec["mac"] = draw(st.sampled_from(["ee:ee:ee:ee:ee:ee", "zz"]))
    if draw(st.integers(0, 9)):
        spec["ipNetworks"] = draw(st.lists(NETS, max_size=3))
    if draw(st.booleans()):
        spec["profiles"] = draw(st.lists(st.sampled_from(["kns.ns", "ksa.ns.sa"]), max_size=2))
    if draw(st.booleans()):
        spec["ports"] = draw(st.lists(PORT, max_size=2))
    if draw(st.integers(0, 6)) == 0:
        spec["containerID"] = draw(st.sampled_from(["abc123", "a-b", "-bad"]))
    meta: dict[str, Any] = {"name": "a"}
    if draw(st.integers(0, 5)):
        meta["namespace"] = "ns"
    if draw(st.booleans()):
        meta["labels"] = draw(LABELS)
    return {"apiVersion": API, "kind": "WorkloadEndpoint", "metadata": meta, "spec": spec}


def _outcome(value: dict[str, Any], hostname: str) -> Any:
    try:
        return workload_record(KEY, value, hostname)
    except (ValueError, KeyError, TypeError) as exc:
        return type(exc)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(plain_workloads(), workload_maps()))
def test_fields_reader_vouches_as_accepts_and_reads_as_the_map_reader(value: dict[str, Any]) -> None:
    fields = fastpath.workload_endpoint_fields(value)
    assert (fields is not None) == fastpath.accepts("WorkloadEndpoint", value)
    if fields is None:
        return
    parse_resource(value)  # vouched for: the model accepts it
    for hostname in ("node1", "elsewhere"):
        assert workload_from_fields(KEY, fields, hostname) == _outcome(value, hostname), value


def test_the_plain_form_is_vouched_for() -> None:
    """The generator above reaches the fields reader's yes (not only its no)."""
    value = {"apiVersion": API, "kind": "WorkloadEndpoint",
             "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"}},
             "spec": {"node": "node1", "orchestrator": "k8s", "pod": "a", "endpoint": "eth0",
                      "interfaceName": "cali1", "ipNetworks": ["10.0.0.1"], "profiles": ["kns.ns"],
                      "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}}
    fields = fastpath.workload_endpoint_fields(value)
    assert fields is not None
    record = workload_from_fields(KEY, fields, "node1")
    assert record is not None and record == workload_record(KEY, value, "node1")
    assert record.nets == ("10.0.0.1/32",) and record.local


class _Validating(Harness):
    def __init__(self) -> None:
        super().__init__()
        self.graph = CalcGraph(HOST, validate_workloads=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ALL_OPS, min_size=1, max_size=25), st.lists(ALL_OPS, max_size=6))
def test_a_validating_graph_gives_what_a_trusting_one_gives(ops: list[tuple[Any, ...]],
                                                            later: list[tuple[Any, ...]]) -> None:
    store = Store()
    updates = updates_of(ops, store)
    changes = updates_of(later, store)
    trusting, validating = Harness(), _Validating()
    assert content(trusting.start(*updates)) == content(validating.start(*updates))
    assert content(trusting.send(*changes)) == content(validating.send(*changes))
    same_dataplane(trusting, validating)
    incremental = _Validating()
    incremental.start()
    incremental.send(*updates)
    incremental.send(*changes)
    same_dataplane(trusting, incremental)


def _odd_workloads() -> tuple[Update, Update, Update]:
    """A WorkloadEndpoint the model rejects but a trusting reader reads (a bad MAC), one the fast path cannot
    vouch for but the model accepts (spoofed source prefixes), and one whose key names another."""
    bad = wep("bad-mac")
    spoof = wep("spoof", ips=("10.0.0.7/32",))
    misnamed = wep("elsewhere", ips=("10.0.0.8/32",))
    assert bad.value is not None and spoof.value is not None and misnamed.value is not None
    bad.value["spec"]["mac"] = "zz"
    spoof.value["spec"]["allowSpoofedSourcePrefixes"] = ["10.9.0.0/24"]
    misnamed.value["metadata"]["name"] = "other"
    with pytest.raises(ValidationError):
        parse_resource(bad.value)
    parse_resource(spoof.value)
    assert not fastpath.accepts("WorkloadEndpoint", spoof.value)
    return bad, spoof, misnamed


@pytest.mark.parametrize("bulk", [True, False])
def test_a_validating_graph_rejects_what_the_model_rejects(bulk: bool) -> None:
    bad, spoof, misnamed = _odd_workloads()
    h = _Validating()
    with structlog.testing.capture_logs() as logs:
        if bulk:
            h.start(ns_profile("ns0"), bad, spoof, misnamed)
        else:
            h.start(ns_profile("ns0"))
            h.send(bad, spoof, misnamed)
    assert [w.workload for w in h.dp.workloads] == ["default/spoof"]
    assert h.workload("spoof").allow_spoofed_source_prefixes == ("10.9.0.0/24",)
    logged = {e["key"]: e for e in logs if e["event"] == "calc invalid value"}
    assert set(logged) == {wep_key("bad-mac"), wep_key("elsewhere")}
    assert "mac" in logged[wep_key("bad-mac")]["reason"]
    # A trusting graph (its stream validated) reads the bad MAC's endpoint: the two differ only there.
    trusting = Harness()
    trusting.start(ns_profile("ns0"), bad, spoof, misnamed)
    assert sorted(w.workload for w in trusting.dp.workloads) == ["default/bad-mac", "default/spoof"]


def test_a_workload_turning_invalid_is_removed() -> None:
    h = _Validating()
    h.start(ns_profile("default"), wep("a"))
    assert list(h.dp.workloads) == [m.WorkloadEndpointID("k8s", "default/a", "eth0")]
    broken = wep("a")
    assert broken.value is not None
    broken.value["spec"]["mac"] = "zz"
    h.send(broken)
    assert h.dp.workloads == {}


def test_validated_kinds_name_workloads_only_when_the_graph_validates_them() -> None:
    assert "WorkloadEndpoint" not in CalcGraph("n").validated_kinds()
    kinds = CalcGraph("n", validate_workloads=True).validated_kinds()
    assert "WorkloadEndpoint" in kinds and "GlobalNetworkPolicy" in kinds


def stored_workload(name: str, ip: str) -> dict[str, object]:
    """A WorkloadEndpoint ``ns/<name>`` of node1 as stored, with one address (valid or not)."""
    return {"apiVersion": API, "kind": "WorkloadEndpoint", "metadata": {
        "name": name, "namespace": "ns", "labels": {"app": "a"}}, "spec": {
        "orchestrator": "k8s", "node": "node1", "pod": name, "endpoint": "eth0",
        "interfaceName": f"cali{name}", "ipNetworks": [ip], "profiles": ["kns.ns"]}}


async def test_a_direct_syncer_leaves_workloads_to_a_validating_graph(tmp_path: Path) -> None:
    root = "/calico/resources/v3/projectcalico.org/"
    backend = SqliteBackend(str(tmp_path / "calico.db"))
    graph = CalcGraph("node1", validate_workloads=True)
    out: list[m.Message] = []

    try:
        await backend.create(root + "workloadendpoints/ns/ok", stored_workload("ok", "10.65.0.1/32"))
        await backend.create(root + "workloadendpoints/ns/broken", stored_workload("broken", "10.65.0.300/32"))
        source, _ = open_input(SPEC.load([], {}).settings, "node1", backend, GraphSink(graph, out), {}, graph.validated_kinds())
        assert isinstance(source, Syncer)
        with structlog.testing.capture_logs() as logs:
            async with source:
                for _ in range(500):
                    if any(isinstance(msg, m.InSync) for msg in out):
                        break
                    await asyncio.sleep(0.01)
        assert any(isinstance(msg, m.InSync) for msg in out), "never in sync"
        assert {msg.endpoint.name for msg in out if isinstance(msg, m.WorkloadEndpointUpdate)} == {"caliok"}
        assert source.validation is not None and source.validation.rejected == 0  # the syncer left it
        assert [e["key"] for e in logs if e["event"] == "calc invalid value"] == [
            root + "workloadendpoints/ns/broken"]
    finally:
        await backend.close()


def test_a_validating_cold_start_of_plain_values_needs_no_models() -> None:
    code = """
        import json, sys
        from libcalico.syncer import SyncStatus
        from services.felix.calc import CalcGraph
        from tests.unit.felix.test_calc_builders import ns_profile, policy, wep

        graph = CalcGraph("node1", validate_workloads=True)
        graph.on_updates([ns_profile("default"), wep("a", labels={"app": "x"}),
                          wep("b", node="node2", labels={"app": "y"}, ips=("10.0.0.2/32",)),
                          policy("p", "default", "app == 'x'",
                                 ingress=[{"action": "Allow", "source": {"selector": "app == 'y'"}}])])
        graph.on_status(SyncStatus.IN_SYNC)
        kinds = sorted({type(m).__name__ for m in graph.flush()})
        print(json.dumps({"kinds": kinds, "models": "libcalico.resources" in sys.modules}))
    """
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got == {"kinds": ["ActivePolicyUpdate", "ActiveProfileUpdate", "ConfigUpdate", "IPSetUpdate", "InSync",
                             "WorkloadEndpointUpdate"], "models": False}


def test_policies_still_go_through_the_graph_alone() -> None:
    """Nothing else changed: a bad policy is the graph's to reject, validating workloads or not."""
    h = _Validating()
    h.start(ns_profile("default"), wep("a"), policy("bad", None, "app == ", ingress=[{"action": "Allow"}]))
    assert h.dp.policies == {}
