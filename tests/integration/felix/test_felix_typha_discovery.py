"""Finding Typha through its Kubernetes Service (``FELIX_TYPHAK8SSERVICENAME``) on the test API server."""

from __future__ import annotations

import json

import aiohttp

from services.felix.input import KubernetesTyphaDiscovery
from tests.fixtures.kube import TOKEN
from tests.fixtures.kube_apiserver import KubeApiServer, ResType


async def test_discovery_reads_the_service_endpoints(kube_server: KubeApiServer,
                                                     kubernetes_env: dict[str, str]) -> None:
    kube_server.serve(ResType("", "v1", "endpoints", "Endpoints", True))
    endpoints = {
        "apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "calico-typha", "namespace": "kube-system"},
        "subsets": [{"addresses": [{"ip": "10.0.0.5"}, {"ip": "10.0.0.6"}],
                     "ports": [{"name": "calico-typha", "port": 5473, "protocol": "TCP"}]}],
    }
    url = str(kube_server.url).rstrip("/") + "/api/v1/namespaces/kube-system/endpoints"
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        async with http.post(url, data=json.dumps(endpoints), headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 201, await resp.text()
    discovery = KubernetesTyphaDiscovery("kube-system", "calico-typha", kubernetes_env["KUBECONFIG"])
    assert sorted(await discovery()) == ["10.0.0.5:5473", "10.0.0.6:5473"]
    missing = KubernetesTyphaDiscovery("kube-system", "no-such-service", kubernetes_env["KUBECONFIG"])
    try:
        await missing()
    except OSError as exc:
        assert "kube-system/no-such-service" in str(exc)
    else:
        raise AssertionError("a missing service must be an OSError the Typha client retries on")
