"""Felix's input: the felix syncer straight from the datastore, or the same stream through Typha.

How it works::

    FELIX_TYPHAADDR set ───────────────► TyphaClient([addr])          ─┐
    FELIX_TYPHAK8SSERVICENAME set ─────► TyphaClient(discovery)        ├─► callbacks (on_status / on_updates)
    neither ───────────────────────────► new_syncer("felix", backend)  ─┘        the same code path after here

:class:`InputLink` tells health whether the stream is connected: for the
direct syncer, "not waiting for the datastore"; for Typha, a server accepted
our hello and the connection has not ended. While Typha is lost the last
stream stays programmed (nothing is torn down) but Felix is not ready; the
client reconnects by itself and a fresh snapshot follows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from libcalico.datastore.backend import Backend
from libcalico.syncer import (
    Syncer,
    SyncerCallbacks,
    SyncStatus,
    Update,
    ValidationFilter,
    syncer_spec,
)
from libcalico.typha.tls import TLSConfig
from services.felix.config import FelixSettings

if TYPE_CHECKING:
    from libcalico.typha.stream import Output, StreamAssembler

# The Typha client and its protocol, and aiohttp (Kubernetes discovery of Typha), are imported only when
# Felix reads through Typha that way (start-up time).

log = structlog.get_logger("felix.input")

TYPHA_PORT_NAME = "calico-typha"


class Runnable(Protocol):
    """A stream source: runs until cancelled."""

    async def run(self) -> None:
        """Stream into the callbacks."""


@dataclass
class InputLink:
    """Whether the input stream is connected, and who wants to hear when that changes."""

    via: str  # "datastore" or "typha"
    connected: bool = False
    listeners: list[Callable[[], None]] = field(default_factory=list)

    def set(self, connected: bool) -> None:
        """Record the connection state; tell the listeners when it changed."""
        if connected == self.connected:
            return
        self.connected = connected
        log.info("input connected" if connected else "input disconnected", via=self.via)
        for listener in list(self.listeners):
            listener()


def _tracked_assembler(link: InputLink) -> StreamAssembler:
    """The Typha client's stream assembler, telling ``link`` about connects and disconnects."""
    from libcalico.typha.stream import StreamAssembler

    class _TrackedAssembler(StreamAssembler):
        def __init__(self, link: InputLink) -> None:
            super().__init__()
            self._link = link

        def connected(self) -> list[Output]:
            out = super().connected()
            self._link.set(True)
            return out

        def disconnected(self) -> None:
            super().disconnected()
            self._link.set(False)

    return _TrackedAssembler(link)


class _DatastoreCallbacks:
    """Callbacks wrapper for the direct syncer: connected unless it is waiting for the datastore."""

    def __init__(self, inner: SyncerCallbacks, link: InputLink) -> None:
        self._inner = inner
        self._link = link

    def on_status(self, status: SyncStatus) -> Awaitable[None] | None:
        self._link.set(status is not SyncStatus.WAIT_FOR_DATASTORE)
        return self._inner.on_status(status)

    def on_updates(self, updates: list[Update]) -> Awaitable[None] | None:
        return self._inner.on_updates(updates)


class GraphValidatesFilter(ValidationFilter):
    """The syncer's validation filter, minus the kinds the calculation graph validates itself.

    The graph parses those into typed models anyway (and treats a value it
    cannot parse as deleted, as this filter would); checking them here too
    parsed every policy twice.
    """

    def __init__(self, syncer: str, graph_kinds: frozenset[str]) -> None:
        super().__init__(syncer, skip_kinds=graph_kinds)
        self.graph_kinds = graph_kinds


def datastore_syncer(backend: Backend, callbacks: SyncerCallbacks, graph_kinds: frozenset[str]) -> Syncer:
    """The felix syncer on ``backend``, validating what the graph does not (``graph_kinds``)."""
    syncer = Syncer(backend, syncer_spec("felix"), callbacks, validate=False)
    syncer.validation = syncer.core.validation = GraphValidatesFilter("felix", graph_kinds)
    return syncer


def typha_tls(settings: FelixSettings) -> TLSConfig:
    """The TLS configuration towards Typha (check it with ``.check()``)."""
    return TLSConfig(ca_file=settings.typha_ca_file, cert_file=settings.typha_cert_file,
                     key_file=settings.typha_key_file, peer_cn=settings.typha_cn,
                     peer_uri_san=settings.typha_uri_san)


TLS_NAMES = {"ca_file": "TyphaCAFile", "cert_file": "TyphaCertFile", "key_file": "TyphaKeyFile",
             "peer_cn": "TyphaCN", "peer_uri_san": "TyphaURISAN"}


def uses_typha(settings: FelixSettings) -> bool:
    """Whether Felix reads its stream through Typha."""
    return bool(settings.typha_addr or settings.typha_k8s_service_name)


def open_input(settings: FelixSettings, hostname: str, backend: Backend, callbacks: SyncerCallbacks,
               datastore_env: Mapping[str, str], graph_kinds: frozenset[str] = frozenset()
               ) -> tuple[Runnable, InputLink]:
    """The stream source Felix's settings select, and its connection link.

    ``graph_kinds``: kinds the consumer validates itself; the direct syncer skips them.
    """
    if not uses_typha(settings):
        link = InputLink("datastore")
        return datastore_syncer(backend, _DatastoreCallbacks(callbacks, link), graph_kinds), link
    from libcalico.typha.client import TyphaClient

    link = InputLink("typha")
    addresses: Sequence[str] | Callable[[], Awaitable[Sequence[str]]]
    if settings.typha_addr:
        addresses = [settings.typha_addr]
    else:
        addresses = KubernetesTyphaDiscovery(settings.typha_k8s_namespace, settings.typha_k8s_service_name,
                                             datastore_env.get("KUBECONFIG", ""))
    client = TyphaClient(addresses, "felix", node=hostname, callbacks=callbacks, client="felix/calico-py",
                         tls=typha_tls(settings), read_timeout=settings.typha_read_timeout,
                         connect_timeout=settings.typha_write_timeout)
    client.assembler = _tracked_assembler(link)
    log.info("reading through typha", addresses=settings.typha_addr or None,
             service=settings.typha_k8s_service_name or None, namespace=settings.typha_k8s_namespace)
    return client, link


def addresses_from_endpoints(endpoints: Mapping[str, Any], port_name: str = TYPHA_PORT_NAME) -> list[str]:
    """``ip:port`` of every ready address of a Kubernetes Endpoints object on the port named ``port_name``."""
    out: list[str] = []
    for subset in endpoints.get("subsets") or ():
        ports = [p for p in subset.get("ports") or () if p.get("name") == port_name]
        if not ports:
            continue
        port = ports[0].get("port")
        for address in subset.get("addresses") or ():
            ip = address.get("ip")
            if ip and isinstance(port, int):
                out.append(f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}")
    return out


class KubernetesTyphaDiscovery:
    """Typha's addresses from the endpoints of its Kubernetes Service (``TyphaK8sServiceName``)."""

    def __init__(self, namespace: str, service: str, kubeconfig: str) -> None:
        self.namespace = namespace
        self.service = service
        self.kubeconfig = kubeconfig

    async def __call__(self) -> list[str]:
        """Look the Service's endpoints up; raise OSError when the API cannot answer."""
        import aiohttp  # Kubernetes discovery only: aiohttp is not loaded otherwise (start-up time)
        from kubernetes_asyncio import client, config
        from kubernetes_asyncio.client.exceptions import ApiException
        from kubernetes_asyncio.config import ConfigException

        try:
            configuration = client.Configuration()
            if self.kubeconfig:
                await config.load_kube_config(config_file=self.kubeconfig, client_configuration=configuration)
            else:
                config.load_incluster_config(client_configuration=configuration)
            async with client.ApiClient(configuration) as api:
                found = await client.CoreV1Api(api).read_namespaced_endpoints(self.service, self.namespace)
                doc = api.sanitize_for_serialization(found)
        except (TimeoutError, ApiException, ConfigException, aiohttp.ClientError) as exc:
            raise OSError(f"cannot read endpoints of service {self.namespace}/{self.service}: {exc}") from exc
        addresses = addresses_from_endpoints(doc)
        if not addresses:
            raise OSError(f"service {self.namespace}/{self.service} has no ready endpoint with a port named "
                          f"{TYPHA_PORT_NAME!r}")
        return addresses
