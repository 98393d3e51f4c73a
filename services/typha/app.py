"""Typha's wiring: the datastore, one pipeline per syncer type, the server, rebalancing, shutdown.

How it works::

    wire(lc, settings)
      backend (DATASTORE_TYPE …)                                   closed last
      pipelines: felix, bgp, tunnel-ip-allocation                  each reports ready once in sync
      server: listen on ServerHost:ServerPort                      sessions, housekeeping, shedding
      limits: count replicas (Typha Service endpoints, or the datastore) and nodes → connection limit
      on stop: deregister, stop accepting, bye every client one at a time over ShutdownTimeoutSecs,
               then stop the pipelines
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

import structlog

from libcalico.datastore import backend_from_env
from libcalico.runtime import Lifecycle
from libcalico.syncer import SYNCER_TYPES
from services.typha.cli import TyphaSettings
from services.typha.filtering import SHAPERS
from services.typha.metrics import TyphaMetrics
from services.typha.pipeline import Pipeline
from services.typha.rebalance import ReplicaCounter, ReplicaRegistry, ServiceReplicas, poll_limits
from services.typha.server import ServerConfig, TyphaServer
from services.typha.snapcache import no_shaping

log = structlog.get_logger(__name__)


def server_config(settings: TyphaSettings) -> ServerConfig:
    """The server's bounds from the settings."""
    return ServerConfig(
        handshake_timeout=settings.server_handshake_timeout_secs,
        ping_interval=settings.server_ping_interval_secs,
        pong_timeout=settings.server_pong_timeout_secs,
        max_fall_behind=settings.server_max_fall_behind_secs,
        new_client_grace=settings.server_new_client_fall_behind_grace_period,
        max_backlog_bytes=settings.server_max_backlog_bytes,
        max_inbound_frame=settings.server_max_inbound_frame_bytes,
        drop_interval=settings.connection_drop_interval_secs,
    )


async def wire(lc: Lifecycle, settings: TyphaSettings, *, datastore_env: Mapping[str, str]) -> None:
    """Open the datastore, start every pipeline and the server, and arrange the graceful stop."""
    replica = settings.replica_name or f"{socket.gethostname()}-{os.getpid()}"
    metrics = TyphaMetrics.create(lc.registry)
    backend = backend_from_env(datastore_env)
    await lc.enter(backend)
    pipelines_stop = asyncio.Event()
    server_stop = asyncio.Event()
    pipelines: dict[str, Pipeline] = {}
    for name in SYNCER_TYPES:
        shaper = SHAPERS[name] if settings.per_node_filtering else no_shaping
        reporter = lc.health.register(f"cache-{name}", live=True, ready=True)
        pipelines[name] = Pipeline(name, backend, shaper, metrics=metrics, reporter=reporter,
                                   batch_interval=settings.server_batch_interval_secs)
    for name, pipeline in pipelines.items():
        lc.spawn(f"pipeline-{name}", pipeline.run(pipelines_stop))

    rebalancing = settings.connection_rebalancing_mode != "none"
    server = TyphaServer(
        pipelines, replica=replica, config=server_config(settings), metrics=metrics,
        max_connections=settings.max_connections_upper_limit, tls=settings.tls,
    )
    await server.listen(settings.server_host, settings.server_port)
    registry: ReplicaCounter | None = None
    if settings.connection_rebalancing_mode == "kubernetes":
        # Imported here: the Kubernetes client takes half a second to import and only this mode needs it.
        from libcalico.typha.discovery import ServiceEndpoints

        registry = ServiceReplicas(ServiceEndpoints(
            settings.k8s_namespace, settings.k8s_service_name, port_name=settings.k8s_port_name,
            kubeconfig=datastore_env.get("KUBECONFIG", "")).count_replicas)
    elif settings.connection_rebalancing_mode == "datastore":
        poll = settings.k8s_service_poll_interval_secs
        registry = ReplicaRegistry(backend, replica, ttl=max(3 * poll, 1.0))

    async def limits() -> None:
        await poll_limits(
            registry, lambda: pipelines["felix"].nodes, server.set_max_connections,
            lower=settings.max_connections_lower_limit, upper=settings.max_connections_upper_limit,
            syncer_types=len(pipelines), interval=settings.k8s_service_poll_interval_secs, stopping=server_stop,
        )

    async def serve() -> None:
        """Housekeeping and shedding until stop; then the paced drain, then the pipelines stop."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(server.housekeeping(pipelines_stop), name="housekeeping")
            if rebalancing:
                tg.create_task(limits(), name="limits")
                tg.create_task(server.shed(server_stop), name="shedding")
            await lc.stopping.wait()
            server_stop.set()
            if registry is not None:
                await registry.deregister()
            await server.drain(settings.shutdown_timeout_secs, settings.shutdown_connection_drop_interval_max_secs)
            await server.close()
            pipelines_stop.set()

    lc.on_stop(server.stop_accepting, name="typha-listener")
    lc.spawn("server", serve())
    log.info("typha_started", replica=replica, port=server.port, syncers=list(pipelines),
             filtering=settings.per_node_filtering, rebalancing=settings.connection_rebalancing_mode)
