"""Status reporting: Calico's key layout, the CNI plugin's status file names, files and keys kept in step."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import SyncStatus
from services.cni.workload import Workload
from services.felix.messages import WorkloadEndpoint, WorkloadEndpointID
from services.felix.pipeline import EndpointStatus
from services.felix.status import (
    DatastoreStatusReporter,
    EndpointStatusFiles,
    escape_name,
    host_endpoint_status_key,
    status_filename,
    workload_status_key,
)

WID = WorkloadEndpointID("k8s", "ns1/pod-1", "eth0")
WEP = WorkloadEndpoint("cali1234567890a", None, ("10.65.0.2/32",), (), ("kns.ns1",), ())


def statuses(*items: tuple[WorkloadEndpointID, str]) -> dict[str, EndpointStatus]:
    return {f"wep {w.workload}": EndpointStatus(w, None, s, workload=WEP) for w, s in items}


def test_calico_status_key_layout_and_escaping() -> None:
    assert escape_name("a/b%c") == "a%2fb%25c"
    assert workload_status_key("no-region", "node1", WID) == \
        "/calico/felix/v2/no-region/host/node1/workload/k8s/ns1%2fpod-1/endpoint/eth0"
    assert host_endpoint_status_key("node1", "node1-eth0") == "/calico/felix/v1/host/node1/endpoint/node1-eth0"


def test_status_file_name_is_the_one_the_cni_plugin_waits_for() -> None:
    workload = Workload(orchestrator="k8s", node="node1", namespace="ns1", workload="pod-1", container_id="abc",
                        endpoint="eth0", network="k8s-pod-network")
    assert status_filename(WID) == workload.status_filename == "k8s ns1%2Fpod-1 eth0"


def test_status_files_exist_exactly_while_endpoints_are_up(tmp_path: Path) -> None:
    directory = tmp_path / "endpoint-status"
    directory.mkdir()
    (directory / "k8s old%2Fgone eth0").write_text("{}")  # left by an earlier run
    files = EndpointStatusFiles(str(directory))
    other = WorkloadEndpointID("k8s", "ns1/pod-2", "eth0")
    files.update(statuses((WID, "up"), (other, "down")))
    assert sorted(p.name for p in directory.iterdir()) == ["k8s ns1%2Fpod-1 eth0"]
    doc = json.loads((directory / "k8s ns1%2Fpod-1 eth0").read_text())
    assert doc == {"status": "up", "ifaceName": "cali1234567890a", "ipv4Nets": ["10.65.0.2/32"], "ipv6Nets": []}
    files.update(statuses((other, "up")))
    assert sorted(p.name for p in directory.iterdir()) == ["k8s ns1%2Fpod-2 eth0"]
    files.update({})
    assert list(directory.iterdir()) == []


async def test_datastore_reporter_writes_deletes_and_resyncs(tmp_path: Path) -> None:
    backend = SqliteBackend(str(tmp_path / "calico.db"))
    try:
        stale = "/calico/felix/v2/no-region/host/node1/workload/k8s/ns1%2fold/endpoint/eth0"
        await backend.apply(stale, {"status": "up"})
        reporter = DatastoreStatusReporter(backend, "node1", "no-region", interval=30, ttl=90,
                                           endpoints_enabled=True, endpoint_delay=0.01)
        reporter.update(statuses((WID, "up")))
        await reporter.resync()
        await reporter.flush()
        keys = {kv.key: kv.value for kv in (await backend.list("/calico/felix/v2/no-region/host/node1/")).items}
        assert keys == {workload_status_key("no-region", "node1", WID): {"status": "up"}}
        reporter.update({})
        await reporter.flush()
        assert (await backend.list("/calico/felix/v2/")).items == []
        await reporter.report_status()
        status = (await backend.get("/calico/felix/v2/no-region/host/node1/status")).value
        assert status["first_update"] is True and set(status) == {"time", "uptime", "first_update"}
        assert status["time"].endswith("Z")
        await reporter.report_status()
        assert (await backend.get("/calico/felix/v2/no-region/host/node1/last_reported_status")).value[
            "first_update"] is False
    finally:
        await backend.close()


async def test_status_key_expires_with_its_ttl(tmp_path: Path) -> None:
    backend = SqliteBackend(str(tmp_path / "calico.db"))
    try:
        reporter = DatastoreStatusReporter(backend, "node1", "no-region", interval=30, ttl=0.2,
                                           endpoints_enabled=False, endpoint_delay=1)
        await reporter.report_status()
        key = "/calico/felix/v2/no-region/host/node1/status"
        assert [kv.key for kv in (await backend.list(key)).items] == [key]
        deadline = time.monotonic() + 5
        while (await backend.list(key)).items and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert (await backend.list(key)).items == []  # gone: TTL'd
        assert (await backend.list("/calico/felix/v2/no-region/host/node1/last_reported_status")).items
    finally:
        await backend.close()


class _Recorder:
    """A status sink that records what it was given and on which thread."""

    def __init__(self, blocking: bool) -> None:
        self.blocking = blocking
        self.calls: list[tuple[int, dict[str, EndpointStatus]]] = []

    def update(self, given: Mapping[str, EndpointStatus]) -> None:
        self.calls.append((threading.get_ident(), dict(given)))


async def test_a_blocking_sink_is_written_off_the_event_loop_thread() -> None:
    """Status files (blocking: file I/O) are written in a worker thread, so a readiness probe is not held behind
    them; the datastore reporter (queues only) is called on the loop. Both get the same statuses, once."""
    from tests.unit.felix.test_felix_pipeline_snapshot import RecordingDataplane, make, world

    dp = RecordingDataplane()
    pipe = make(dp)
    files, keys = _Recorder(blocking=True), _Recorder(blocking=False)
    pipe.sinks = [files, keys]
    pipe.on_updates(world())
    pipe.on_status(SyncStatus.IN_SYNC)
    dp.early_started.set()
    dp.policies_started.set()
    async with asyncio.timeout(3):
        while not pipe.workloads:
            await asyncio.sleep(0.005)
        await pipe._report_endpoints()
        await pipe._report_endpoints()  # (nothing changed: not again)
    loop_thread = threading.get_ident()
    assert [ident != loop_thread for ident, _ in files.calls] == [True]
    assert [ident == loop_thread for ident, _ in keys.calls] == [True]
    assert files.calls[0][1] == keys.calls[0][1] == pipe.endpoint_statuses()
    assert len(files.calls[0][1]) == 2  # the two local workloads
    assert EndpointStatusFiles.blocking and not getattr(DatastoreStatusReporter, "blocking", False)
