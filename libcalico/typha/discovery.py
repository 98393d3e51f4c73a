"""Finding Typha replicas through their Kubernetes Service, as Calico does on the kubernetes datastore.

How it works::

    ServiceEndpoints(namespace, service, port_name)
        EndpointSlices (discovery.k8s.io/v1, label kubernetes.io/service-name=<service>)
        ── none, or the API does not serve them ──► the Service's Endpoints (core v1)
        ──► the ready addresses on the port named <port_name> (default ``calico-typha``),
            each with the node it runs on

    KubernetesDiscovery  (the client side: FELIX_TYPHAK8SSERVICENAME / FELIX_TYPHAK8SNAMESPACE)
        ──► addresses for TyphaClient, those on the client's own node marked local (tried first)
    count_replicas()     (the server side: TYPHA_K8SSERVICENAME / TYPHA_K8SNAMESPACE)
        ──► how many distinct replica IPs back the Service (for the connection limit)

Every failure (no kubeconfig, API unreachable, no such Service, no ready
address) is a :class:`DiscoveryError`, an ``OSError``: the Typha client retries
with backoff, and the server falls back to its upper connection limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio.client.exceptions import ApiException

from libcalico.datastore.kubernetes import incluster_connector, kubeconfig_connector
from libcalico.errors import CalicoError
from libcalico.typha.client import Address

DEFAULT_PORT_NAME = "calico-typha"
DEFAULT_NAMESPACE = "kube-system"
DEFAULT_SERVICE = "calico-typha"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class DiscoveryError(CalicoError, OSError):
    """The Service's endpoints could not be read, or none is ready."""


@dataclass(frozen=True, slots=True)
class TyphaEndpoint:
    """One ready replica behind the Service."""

    ip: str
    port: int
    node: str | None = None

    @property
    def address(self) -> str:
        """``ip:port`` (``[ip]:port`` for IPv6)."""
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


def endpoints_from_slices(slices: list[dict[str, Any]], port_name: str) -> list[TyphaEndpoint]:
    """Ready endpoints on the named port, from EndpointSlice objects (``ready`` unset counts as ready)."""
    out: list[TyphaEndpoint] = []
    for piece in slices:
        port = next((p.get("port") for p in piece.get("ports") or () if p.get("name") == port_name), None)
        if not isinstance(port, int):
            continue
        for ep in piece.get("endpoints") or ():
            if (ep.get("conditions") or {}).get("ready") is False:
                continue
            for ip in ep.get("addresses") or ():
                out.append(TyphaEndpoint(ip, port, ep.get("nodeName")))
    return _unique(out)


def endpoints_from_endpoints(obj: dict[str, Any], port_name: str) -> list[TyphaEndpoint]:
    """Ready endpoints on the named port, from a core v1 Endpoints object (``notReadyAddresses`` left out)."""
    out: list[TyphaEndpoint] = []
    for subset in obj.get("subsets") or ():
        port = next((p.get("port") for p in subset.get("ports") or () if p.get("name") == port_name), None)
        if not isinstance(port, int):
            continue
        for address in subset.get("addresses") or ():
            if address.get("ip"):
                out.append(TyphaEndpoint(address["ip"], port, address.get("nodeName")))
    return _unique(out)


def _unique(endpoints: list[TyphaEndpoint]) -> list[TyphaEndpoint]:
    seen: dict[tuple[str, int], TyphaEndpoint] = {}
    for ep in endpoints:
        seen.setdefault((ep.ip, ep.port), ep)
    return list(seen.values())


class ServiceEndpoints:
    """The ready endpoints of one Kubernetes Service, read through kubernetes-asyncio."""

    def __init__(self, namespace: str, service: str, *, port_name: str = DEFAULT_PORT_NAME,
                 kubeconfig: str = "", request_timeout: float = 10.0) -> None:
        if not namespace or not service:
            raise ValueError("a Kubernetes namespace and service name are needed to find Typha")
        self.namespace = namespace
        self.service = service
        self.port_name = port_name
        self.request_timeout = request_timeout
        self._connect = kubeconfig_connector(kubeconfig) if kubeconfig else incluster_connector()

    @property
    def where(self) -> str:
        return f"service {self.namespace}/{self.service}"

    async def read(self) -> list[TyphaEndpoint]:
        """Every ready endpoint on the named port; raise DiscoveryError when none can be had."""
        try:
            api = await self._connect()
        except CalicoError as exc:
            raise DiscoveryError(f"cannot reach the Kubernetes API for {self.where}: {exc}") from exc
        try:
            async with api:
                found = await self._from_slices(api)
                if not found:
                    found = await self._from_endpoints(api)
        except (ApiException, aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise DiscoveryError(f"cannot read the endpoints of {self.where}: {_reason(exc)}") from exc
        if not found:
            raise DiscoveryError(f"{self.where} has no ready endpoint with a port named {self.port_name!r}")
        return found

    async def _from_slices(self, api: kclient.ApiClient) -> list[TyphaEndpoint]:
        rsp = await kclient.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
            self.namespace, label_selector=f"{SERVICE_NAME_LABEL}={self.service}",
            _preload_content=False, _request_timeout=self.request_timeout)
        body = await self._body(rsp, allow_missing=True)  # not served by this API server: use Endpoints
        return endpoints_from_slices(body.get("items") or [], self.port_name)

    async def _from_endpoints(self, api: kclient.ApiClient) -> list[TyphaEndpoint]:
        rsp = await kclient.CoreV1Api(api).read_namespaced_endpoints(
            self.service, self.namespace, _preload_content=False, _request_timeout=self.request_timeout)
        return endpoints_from_endpoints(await self._body(rsp), self.port_name)

    async def _body(self, rsp: Any, *, allow_missing: bool = False) -> dict[str, Any]:
        """The JSON body of a raw response; a non-2xx status is an error (404 empty when allowed)."""
        raw = await rsp.read()
        if rsp.status == 404 and allow_missing:
            return {}
        if not 200 <= rsp.status < 300:
            try:
                message = json.loads(raw).get("message")
            except (ValueError, AttributeError):
                message = None
            raise DiscoveryError(f"cannot read the endpoints of {self.where}: {rsp.status} {message or rsp.reason}")
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise DiscoveryError(f"cannot read the endpoints of {self.where}: the API answered {type(body).__name__}")
        return body

    async def count_replicas(self) -> int:
        """How many distinct replica IPs back the Service (Calico's ``GetNumTyphas``)."""
        return len({ep.ip for ep in await self.read()})


class KubernetesDiscovery:
    """Typha's addresses for a :class:`~libcalico.typha.client.TyphaClient`, from its Kubernetes Service.

    Replicas on the client's own node are marked local, so the client tries them first.
    """

    def __init__(self, namespace: str, service: str, *, node: str = "", port_name: str = DEFAULT_PORT_NAME,
                 kubeconfig: str = "") -> None:
        self.endpoints = ServiceEndpoints(namespace, service, port_name=port_name, kubeconfig=kubeconfig)
        self.node = node

    async def __call__(self) -> list[Address]:
        """The current ready addresses; raises DiscoveryError (an OSError) when there are none."""
        found = await self.endpoints.read()
        return [Address(ep.ip, ep.port, local=bool(self.node) and ep.node == self.node) for ep in found]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__
