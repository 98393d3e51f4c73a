"""Input selection: the felix syncer or Typha by settings, connection tracking, Typha's Kubernetes endpoints."""

from __future__ import annotations

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
