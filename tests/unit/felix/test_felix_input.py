"""Input selection: the felix syncer or Typha by settings, connection tracking, Typha's Kubernetes endpoints."""

from __future__ import annotations

import asyncio
from pathlib import Path

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import Syncer, SyncStatus, Update
from libcalico.typha.client import TyphaClient
from libcalico.typha.protocol import Status
from services.felix.config import SPEC
from services.felix.input import (
    InputLink,
    KubernetesTyphaDiscovery,
    addresses_from_endpoints,
    open_input,
)
from tests.unit.felix.test_calc_builders import GraphSink


class Recorder:
    def __init__(self) -> None:
        self.statuses: list[SyncStatus] = []

    def on_status(self, status: SyncStatus) -> None:
        self.statuses.append(status)

    def on_updates(self, updates: list[Update]) -> None:
        pass


async def test_direct_syncer_without_typha_settings(tmp_path: Path) -> None:
    backend = SqliteBackend(str(tmp_path / "calico.db"))
    try:
        rec = Recorder()
        source, link = open_input(SPEC.load([], {}).settings, "node1", backend, rec, {})
        assert isinstance(source, Syncer) and link.via == "datastore"
        # The wrapper marks the link connected unless the syncer waits for the datastore.
        callbacks = source.callbacks
        callbacks.on_status(SyncStatus.WAIT_FOR_DATASTORE)
        assert not link.connected
        callbacks.on_status(SyncStatus.RESYNC_IN_PROGRESS)
        assert link.connected and rec.statuses == [SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS]
    finally:
        await backend.close()


async def test_typha_address_selects_the_typha_client_and_tracks_connection(tmp_path: Path) -> None:
    backend = SqliteBackend(str(tmp_path / "calico.db"))
    try:
        settings = SPEC.load([], {"FELIX_TYPHAADDR": "127.0.0.1:15473", "FELIX_TYPHAREADTIMEOUT": "7"}).settings
        changes: list[bool] = []
        source, link = open_input(settings, "node1", backend, Recorder(), {})
        link.listeners.append(lambda: changes.append(link.connected))
        assert isinstance(source, TyphaClient) and link.via == "typha"
        assert source.read_timeout == 7.0 and source.node == "node1" and source.syncer == "felix"
        source.assembler.connected()
        assert source.assembler.on_message(Status(SyncStatus.IN_SYNC)) == [SyncStatus.IN_SYNC]
        source.assembler.disconnected()
        assert changes == [True, False]
    finally:
        await backend.close()


async def test_typha_service_name_uses_kubernetes_discovery(tmp_path: Path) -> None:
    backend = SqliteBackend(str(tmp_path / "calico.db"))
    try:
        settings = SPEC.load([], {"FELIX_TYPHAK8SSERVICENAME": "calico-typha"}).settings
        source, link = open_input(settings, "node1", backend, Recorder(), {"KUBECONFIG": "/nonexistent"})
        assert isinstance(source, TyphaClient) and link.via == "typha"
        discovery = KubernetesTyphaDiscovery(settings.typha_k8s_namespace, settings.typha_k8s_service_name,
                                             "/nonexistent")
        try:
            await discovery()
        except OSError as exc:  # a missing kubeconfig is an OSError the client retries on
            assert "kube-system/calico-typha" in str(exc)
        else:
            raise AssertionError("discovery without a kubeconfig must fail")
    finally:
        await backend.close()


def test_addresses_from_endpoints_use_the_calico_typha_port() -> None:
    doc = {"subsets": [
        {"addresses": [{"ip": "10.0.0.5"}, {"ip": "10.0.0.6"}], "notReadyAddresses": [{"ip": "10.0.0.7"}],
         "ports": [{"name": "metrics", "port": 9093}, {"name": "calico-typha", "port": 5473}]},
        {"addresses": [{"ip": "fd00::5"}], "ports": [{"name": "calico-typha", "port": 5474}]},
        {"addresses": [{"ip": "10.0.0.8"}], "ports": [{"name": "other", "port": 1}]},
    ]}
    assert addresses_from_endpoints(doc) == ["10.0.0.5:5473", "10.0.0.6:5473", "[fd00::5]:5474"]
    assert addresses_from_endpoints({}) == []


def test_input_link_notifies_only_on_change() -> None:
    link = InputLink("datastore")
    seen: list[bool] = []
    link.listeners.append(lambda: seen.append(link.connected))
    link.set(False)
    link.set(True)
    link.set(True)
    link.set(False)
    assert seen == [True, False]


async def test_policies_are_validated_once_by_the_graph_and_endpoints_by_the_syncer(tmp_path: Path) -> None:
    from libcalico.resources import parse_resource
    from services.felix import messages as m
    from services.felix.calc import CalcGraph
    from tests.unit.felix.test_calc_validated_workloads import stored_workload

    root = "/calico/resources/v3/projectcalico.org/"
    api = "projectcalico.org/v3"

    def gnp(name: str, selector: str) -> dict[str, object]:
        return {"apiVersion": api, "kind": "GlobalNetworkPolicy", "metadata": {"name": name},
                "spec": {"selector": selector, "ingress": [{"action": "Deny"}]}}

    good, bad = gnp("good", "app == 'a'"), gnp("bad", "app == ")
    parse_resource(good)
    backend = SqliteBackend(str(tmp_path / "calico.db"))
    graph = CalcGraph("node1")
    out: list[m.Message] = []

    try:
        # Written raw, as another writer could: the stored values are not checked on the way in.
        await backend.create(root + "globalnetworkpolicies/good", good)
        await backend.create(root + "globalnetworkpolicies/bad", bad)
        await backend.create(root + "workloadendpoints/ns/ok", stored_workload("ok", "10.65.0.1/32"))
        await backend.create(root + "workloadendpoints/ns/broken", stored_workload("broken", "10.65.0.300/32"))
        source, _ = open_input(SPEC.load([], {}).settings, "node1", backend, GraphSink(graph, out), {}, graph.validated_kinds())
        assert isinstance(source, Syncer)
        assert "GlobalNetworkPolicy" in graph.validated_kinds() and "WorkloadEndpoint" not in graph.validated_kinds()
        async with source:
            for _ in range(500):
                if any(isinstance(msg, m.InSync) for msg in out):
                    break
                await asyncio.sleep(0.01)
        assert any(isinstance(msg, m.InSync) for msg in out), "never in sync"
        policies = {msg.id.name for msg in out if isinstance(msg, m.ActivePolicyUpdate)}
        endpoints = {msg.endpoint.name for msg in out if isinstance(msg, m.WorkloadEndpointUpdate)}
        assert policies == {"good"}  # the graph rejected the bad selector itself
        assert endpoints == {"caliok"}  # the syncer rejected the bad address
        assert source.validation is not None and source.validation.rejected == 1
    finally:
        await backend.close()
