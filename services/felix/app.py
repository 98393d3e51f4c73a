"""Felix's wiring: datastore, input stream, calculation graph, dataplane, health, metrics and status.

How it works::

    backend (DATASTORE_TYPE …) ──► input: felix syncer | Typha client ──► Pipeline ──► CalcGraph ──► Dataplane
                                                                            │                          │
            health: async_calc_graph (in sync and connected) ◄──────────────┘                          │
                    int_dataplane (first apply after in-sync; watchdog) ◄──────────────────────────────┘
            status: endpoint status files, datastore status keys ◄── Pipeline.monitor (after each apply)

Every root task is cancelled at stop: nothing is torn down in the kernel, so
traffic keeps flowing while Felix restarts, and the next run's start-up sweep
takes over the table in one transaction.

:func:`assemble` builds and connects the parts without starting anything (no
kernel access; tests run it as the real pre-apply path); :func:`wire` adds
health and metrics and starts the root tasks. Metrics are plain numbers until
the registry is first used (the first scrape), so prometheus-client is not
loaded on the way to the first apply.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import structlog

from libcalico.datastore import backend_from_env
from libcalico.datastore.backend import Backend
from libcalico.runtime import Lifecycle, Reporter
from services.felix.calc import CalcGraph
from services.felix.config import SPEC, STATUS_DIR_NAME, FelixSettings, StartContext, region_string
from services.felix.dataplane.dataplane import Dataplane, DataplaneOptions
from services.felix.dataplane.settings import settings_from_config
from services.felix.input import InputLink, Runnable, open_input, uses_typha
from services.felix.memory import settle, settle_after_startup
from services.felix.metrics import DataplaneSizes, FelixMetrics
from services.felix.pipeline import ConfigTracker, Pipeline, StatusSink
from services.felix.status import DatastoreStatusReporter, EndpointStatusFiles

log = structlog.get_logger("felix")

WATCHDOG_INTERVAL = 1.0


class Health:
    """Felix's two health reporters, recomputed whenever something they depend on changes."""

    def __init__(self, lc: Lifecycle, dataplane: Dataplane, link: InputLink, pipeline: Pipeline,
                 watchdog_timeout: float) -> None:
        self.dataplane = dataplane
        self.link = link
        self.pipeline = pipeline
        self.dataplane_live = True
        self.calc: Reporter = lc.health.register("async_calc_graph", live=False, ready=True)
        self.dp: Reporter = lc.health.register("int_dataplane", live=True, ready=True,
                                               timeout=watchdog_timeout + 5 * WATCHDOG_INTERVAL)

    def refresh(self) -> None:
        """Report both reporters' current state."""
        connected, in_sync = self.link.connected, self.pipeline.in_sync
        if not connected:
            detail = f"{self.link.via} connection lost" if self.pipeline.ever_in_sync else f"connecting to {self.link.via}"
        elif not in_sync:
            detail = f"{self.link.via} not in sync ({self.pipeline.status.value if self.pipeline.status else '-'})"
        else:
            detail = ""
        self.calc.report(live=True, ready=connected and in_sync, detail=detail)
        programmed = self.dataplane.ready.is_set()
        dp_detail = "" if programmed else "waiting for the first apply after in-sync"
        if not self.dataplane_live:
            dp_detail = "dataplane stuck"
        self.dp.report(live=self.dataplane_live, ready=self.dataplane_live and programmed, detail=dp_detail)

    async def watchdog(self, timeout: float) -> None:
        """Mark the dataplane not live when it has not caught up with its queue for ``timeout`` seconds."""
        for _ in iter(int, 1):  # until cancelled
            try:
                await self.dataplane.settled(timeout)
                self.dataplane_live = True
            except TimeoutError:
                self.dataplane_live = False
                log.error("dataplane watchdog expired", timeout=timeout)
            self.refresh()
            await asyncio.sleep(WATCHDOG_INTERVAL)


class Parts(NamedTuple):
    """Felix's parts, connected but not running: nothing here has touched the kernel yet."""

    metrics: FelixMetrics
    dataplane: Dataplane
    graph: CalcGraph
    reporter: DatastoreStatusReporter
    pipeline: Pipeline
    source: Runnable
    link: InputLink


def assemble(settings: FelixSettings, ctx: StartContext, backend: Backend,
             on_restart: Callable[[list[str], dict[str, Any]], None]) -> Parts:
    """Build the input stream, pipeline, graph, dataplane and status sinks on an open ``backend``."""
    hostname = ctx.hostname
    metrics = FelixMetrics()
    dataplane = Dataplane(DataplaneOptions(hostname=hostname, netns=settings.dataplane_netns or None,
                                           settings=settings_from_config(ctx.overlay), while_programming=settle))
    # Fed by the syncer directly, the graph validates WorkloadEndpoints itself, reading each map once
    # (10,100 endpoints: ~42 ms against ~65 ms for the syncer's check plus the graph's read); Typha has
    # validated them already.
    graph = CalcGraph(hostname, validate_workloads=not uses_typha(settings))
    metrics.watch_sizes(graph.stats, lambda: DataplaneSizes(len(dataplane.filter.table.sets),
                                                            dataplane.stats.nft_failures))
    reporter = DatastoreStatusReporter(
        backend, hostname, region_string(settings.openstack_region), interval=settings.reporting_interval_secs,
        ttl=settings.reporting_ttl_secs, endpoints_enabled=settings.endpoint_reporting_enabled,
        endpoint_delay=settings.endpoint_reporting_delay_secs)
    sinks: list[StatusSink] = [reporter]
    if settings.endpoint_status_path_prefix:
        sinks.append(EndpointStatusFiles(os.path.join(settings.endpoint_status_path_prefix, STATUS_DIR_NAME)))
    config = ConfigTracker(SPEC, ctx.argv, ctx.environ, settings, ctx.overlay, on_restart)
    pipeline = Pipeline(graph, dataplane, config, metrics, sinks)
    source, link = open_input(settings, hostname, backend, pipeline, ctx.datastore_env, graph.validated_kinds())
    return Parts(metrics, dataplane, graph, reporter, pipeline, source, link)


async def wire(lc: Lifecycle, settings: FelixSettings, ctx: StartContext) -> None:
    """Open the datastore, start the input stream, the dataplane and the reporters."""
    for note in ctx.notes:
        log.warning("startup note", detail=note)
    backend = await lc.enter(backend_from_env(ctx.datastore_env))

    def restart(reasons: list[str], datastore: dict[str, Any]) -> None:
        ctx.restart.requested = True
        ctx.restart.reasons = reasons
        ctx.restart.datastore = datastore
        lc.request_stop("config changed: " + ", ".join(reasons))

    parts = assemble(settings, ctx, backend, restart)
    lc.with_registry(parts.metrics.export)  # registered when metrics are first served
    dataplane, pipeline, link = parts.dataplane, parts.pipeline, parts.link
    health = Health(lc, dataplane, link, pipeline, settings.dataplane_watchdog_timeout)
    pipeline.on_change = health.refresh
    link.listeners.append(health.refresh)
    dataplane.ready_listeners.append(health.refresh)  # ready as soon as the first apply is done
    health.refresh()

    lc.spawn("dataplane", dataplane.run(), cancel_on_stop=True)
    lc.spawn("dataplane-monitor", pipeline.monitor(), cancel_on_stop=True)
    lc.spawn("dataplane-watchdog", health.watchdog(settings.dataplane_watchdog_timeout), cancel_on_stop=True)
    lc.spawn("input", parts.source.run(), cancel_on_stop=True)
    lc.spawn("status-reporter", parts.reporter.run(dataplane.ready), cancel_on_stop=True)
    lc.spawn("startup-gc", settle_after_startup(dataplane.ready), cancel_on_stop=True)
    log.info("felix started", hostname=ctx.hostname, input=link.via, netns=settings.dataplane_netns or None,
             datastore=ctx.datastore_env.get("DATASTORE_TYPE", "sqlite"),
             status_dir=os.path.join(settings.endpoint_status_path_prefix, STATUS_DIR_NAME)
             if settings.endpoint_status_path_prefix else None)
