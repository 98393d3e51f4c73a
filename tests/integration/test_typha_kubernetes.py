"""Typha on Kubernetes: replicas counted from the Typha Service's endpoints, clients finding them the same way.

The test API server (kmock-based, ``tests/fixtures/kube_apiserver.py``) serves any
resource type it is told to; here core v1 Endpoints and, where a test says so,
``discovery.k8s.io/v1`` EndpointSlices. Two calico-typha replicas listen on the
same port at 127.0.0.1 and 127.0.0.2, as two pods would at their pod IPs, with
``ConnectionRebalancingMode=kubernetes``; the Service's endpoints are edited by
the test as the endpoints controller would when a replica becomes ready.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import SyncStatus, ViewCallbacks
from libcalico.typha.client import Address, TyphaClient
from libcalico.typha.discovery import DiscoveryError, KubernetesDiscovery, ServiceEndpoints
from tests.fixtures.kube_apiserver import KubeApiServer, ResType
from tests.unit.typha.harness import TyphaProcess, async_wait_until, free_port
from tests.unit.typha.samples import global_policy, node

NS, SERVICE = "kube-system", "calico-typha"
ENDPOINTS = ResType("", "v1", "endpoints", "Endpoints", True)
SLICES = ResType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", True)
CLIENTS = 20


class TyphaService:
    """Writes the Typha Service's Endpoints / EndpointSlices as the endpoints controller would."""

    def __init__(self, api: kclient.ApiClient) -> None:
        self.core: Any = kclient.CoreV1Api(api)
        self.discovery: Any = kclient.DiscoveryV1Api(api)

    async def set_endpoints(self, ips: list[str], port: int, *, not_ready: tuple[str, ...] = ()) -> None:
        """Create or replace the Endpoints object with these ready (and not-ready) addresses."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": SERVICE, "namespace": NS},
                "subsets": [{"addresses": [{"ip": ip, "nodeName": f"node-{ip}"} for ip in ips],
                             "notReadyAddresses": [{"ip": ip} for ip in not_ready],
                             "ports": [{"name": "calico-typha", "port": port, "protocol": "TCP"}]}]}
        try:
            current = await self.core.read_namespaced_endpoints(SERVICE, NS)
        except kclient.ApiException as exc:
            assert exc.status == 404, exc
            await self.core.create_namespaced_endpoints(NS, body)
            return
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        await self.core.replace_namespaced_endpoints(SERVICE, NS, body)

    async def delete_endpoints(self) -> None:
        await self.core.delete_namespaced_endpoints(SERVICE, NS)

    async def add_slice(self, name: str, endpoints: list[dict[str, Any]], port: int,
                        port_name: str = "calico-typha") -> None:
        """Create one EndpointSlice of the Service."""
        await self.discovery.create_namespaced_endpoint_slice(NS, {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
            "metadata": {"name": name, "namespace": NS, "labels": {"kubernetes.io/service-name": SERVICE}},
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}], "endpoints": endpoints})


@pytest.fixture
async def service(kube_server: KubeApiServer, kubernetes_env: dict[str, str]) -> Any:
    kube_server.serve(ENDPOINTS)
    api = await kconfig.new_client_from_config(config_file=kubernetes_env["KUBECONFIG"])
    async with api:
        yield TyphaService(api)


@pytest.fixture
def typhas() -> Iterator[list[TyphaProcess]]:
    started: list[TyphaProcess] = []
    yield started
    for t in started:
        t.kill()


async def test_discovery_prefers_endpoint_slices_and_marks_replicas_on_this_node_local(
    kube_server: KubeApiServer, kubernetes_env: dict[str, str], service: TyphaService
) -> None:
    kubeconfig = kubernetes_env["KUBECONFIG"]
    await service.set_endpoints(["10.0.0.1"], 5473)
    # Without the EndpointSlice API the Endpoints object is used.
    assert await KubernetesDiscovery(NS, SERVICE, kubeconfig=kubeconfig)() == [Address("10.0.0.1", 5473)]
    kube_server.serve(SLICES)
    await service.add_slice(f"{SERVICE}-a", [
        {"addresses": ["10.0.0.5"], "conditions": {"ready": True}, "nodeName": "node-a"},
        {"addresses": ["10.0.0.6"], "conditions": {"ready": False}, "nodeName": "node-b"},
    ], 5473)
    await service.add_slice(f"{SERVICE}-b", [
        {"addresses": ["10.0.0.7"], "conditions": {"ready": True}, "nodeName": "node-b"}], 5473)
    await service.add_slice(f"{SERVICE}-metrics", [
        {"addresses": ["10.0.0.8"], "conditions": {"ready": True}, "nodeName": "node-b"}], 9093, "metrics")
    found = await KubernetesDiscovery(NS, SERVICE, node="node-b", kubeconfig=kubeconfig)()
    assert sorted(found, key=str) == [Address("10.0.0.5", 5473), Address("10.0.0.7", 5473)]
    assert {str(a): a.local for a in found} == {"10.0.0.5:5473": False, "10.0.0.7:5473": True}
    assert await ServiceEndpoints(NS, SERVICE, kubeconfig=kubeconfig).count_replicas() == 2

    with pytest.raises(DiscoveryError, match="kube-system/no-such-service"):
        await KubernetesDiscovery(NS, "no-such-service", kubeconfig=kubeconfig)()
    with pytest.raises(DiscoveryError, match="no ready endpoint with a port named 'nope'"):
        await KubernetesDiscovery(NS, SERVICE, port_name="nope", kubeconfig=kubeconfig)()
    with pytest.raises(OSError, match="cannot reach the Kubernetes API"):  # the client retries on OSError
        await KubernetesDiscovery(NS, SERVICE, kubeconfig="/nonexistent/kubeconfig")()


def _has(view: ViewCallbacks, key: str) -> bool:
    return key in view.view


def replica_env(sqlite_env: dict[str, str], kubeconfig: str, name: str, host: str, port: int) -> dict[str, str]:
    return {**sqlite_env, "KUBECONFIG": kubeconfig, "TYPHA_SERVERHOST": host, "TYPHA_SERVERPORT": str(port),
            "TYPHA_REPLICANAME": name, "TYPHA_CONNECTIONREBALANCINGMODE": "kubernetes",
            "TYPHA_K8SNAMESPACE": NS, "TYPHA_K8SSERVICENAME": SERVICE,
            "TYPHA_K8SSERVICEPOLLINTERVALSECS": "0.3", "TYPHA_CONNECTIONDROPINTERVALSECS": "0.1",
            "TYPHA_MAXCONNECTIONSLOWERLIMIT": "1"}


async def test_replicas_counted_from_the_service_split_the_clients(
    sqlite_backend: SqliteBackend, sqlite_env: dict[str, str], kubernetes_env: dict[str, str],
    service: TyphaService, typhas: list[TyphaProcess],
) -> None:
    kubeconfig = kubernetes_env["KUBECONFIG"]
    for i in range(3):
        await sqlite_backend.create(*node(f"n{i}", i + 1))
    await sqlite_backend.create(*global_policy(1))
    port = free_port()
    await service.set_endpoints(["127.0.0.1"], port, not_ready=("127.0.0.2",))
    a = TyphaProcess(replica_env(sqlite_env, kubeconfig, "typha-a", "127.0.0.1", port))
    typhas.append(a)
    await a.await_event("connection_limit", where=lambda e: e["reason"] == "lone typha")
    views = [ViewCallbacks() for _ in range(CLIENTS)]
    clients = [TyphaClient(KubernetesDiscovery(NS, SERVICE, node=f"client-{i}", kubeconfig=kubeconfig), "felix",
                           node=f"client-{i}", callbacks=v, local_hosts=set()) for i, v in enumerate(views)]
    for c in clients:
        c.start()
    try:
        for v in views:
            await v.wait_for_status(SyncStatus.IN_SYNC, timeout=30)
        assert all(c.address == Address("127.0.0.1", port) for c in clients)

        # Replica B becomes ready: the endpoints controller lists it; A counts 2 replicas and 3 nodes:
        # 3 × (1 + 3·120/100/1) = 12, and sheds the rest one at a time to B.
        b = TyphaProcess(replica_env(sqlite_env, kubeconfig, "typha-b", "127.0.0.2", port))
        typhas.append(b)
        await b.await_event("typha_listening")
        await service.set_endpoints(["127.0.0.1", "127.0.0.2"], port)
        limit = await a.await_event("connection_limit", where=lambda e: e["reason"] == "fraction+20%")
        assert (limit["limit"], limit["replicas"], limit["nodes"]) == (12, 2, 3)

        def split() -> tuple[int, int] | None:
            on_a = sum(1 for c in clients if c.address is not None and c.address.host == "127.0.0.1")
            on_b = sum(1 for c in clients if c.address is not None and c.address.host == "127.0.0.2")
            in_sync = all(v.status is SyncStatus.IN_SYNC for v in views)
            return (on_a, on_b) if in_sync and on_a + on_b == CLIENTS and on_a <= 12 and on_b >= 8 else None

        on_a, on_b = await async_wait_until(split, 30, "clients split within the limits")
        assert len(a.find_all("client_shed")) >= CLIENTS - 12
        key, value = global_policy(42)
        await sqlite_backend.create(key, value)
        for v in views:
            await v.wait_for(functools.partial(_has, v, key), 10, "update through both replicas")
            assert v.anomalies == []

        # The Service cannot be read: back to the upper limit (Calico's "error"), nothing is shed.
        await service.delete_endpoints()
        failed = await a.await_event("connection_limit", where=lambda e: e["reason"] == "error")
        assert failed["limit"] == 10000
        assert a.find_all("replica_count_failed")
        print(f"split after rebalancing from the Service's endpoints: A {on_a}, B {on_b}")
    finally:
        for c in clients:
            await c.stop()
