"""Felix's Prometheus metrics, under Calico's names (docs: "Monitoring Felix with Prometheus").

Counters and summaries are updated where things happen (the pipeline); gauges
that mirror the graph's and the dataplane's sizes are read at scrape time by a
collector, so they can never go stale.

prometheus-client appends ``_total`` to a Counter's name while Calico's Go
client exports its counters as named (``felix_resyncs_started``), so, as in
Typha, Calico's counters are Gauges that only ever go up.

One extension: ``felix_dataplane_applied_revision``, the newest datastore
revision known to be programmed into the kernel (tests and operators use it to
wait for "Felix has caught up with this write").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge, Summary
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from libcalico.syncer import SyncStatus
from services.felix.calc import GraphStats

# Calico's felix_resync_state values.
_RESYNC_STATE = {SyncStatus.WAIT_FOR_DATASTORE: 1, SyncStatus.RESYNC_IN_PROGRESS: 2, SyncStatus.IN_SYNC: 3}


@dataclass(frozen=True, slots=True)
class DataplaneSizes:
    """What the dataplane holds, for the scrape-time gauges."""

    ipsets: int
    failures: int


class _SizesCollector(Collector):
    def __init__(self, graph: Callable[[], GraphStats], dataplane: Callable[[], DataplaneSizes]) -> None:
        self._graph = graph
        self._dataplane = dataplane

    def collect(self) -> Iterator[Metric]:
        stats = self._graph()
        sizes = self._dataplane()
        yield GaugeMetricFamily("felix_active_local_endpoints", "Number of active endpoints on this host.",
                                value=stats.local_endpoints)
        yield GaugeMetricFamily("felix_active_local_policies", "Number of active policies on this host.",
                                value=stats.active_policies)
        yield GaugeMetricFamily("felix_active_local_selectors", "Number of active selectors on this host.",
                                value=stats.active_ipsets)
        yield GaugeMetricFamily("felix_ipsets_calico", "Number of active Calico IP sets.", value=sizes.ipsets)
        yield GaugeMetricFamily("felix_int_dataplane_failures",
                                  "Number of times dataplane updates failed and will be retried.",
                                  value=sizes.failures)


class FelixMetrics:
    """Every metric Felix exports, registered in one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.resyncs_started = Gauge("felix_resyncs_started",
                                       "Number of times Felix has started resyncing with the datastore.",
                                       registry=registry)
        self.resync_state_gauge = Gauge("felix_resync_state",
                                        "Current datastore state (1 wait-for-datastore, 2 resync-in-progress, "
                                        "3 in-sync).", registry=registry)
        self.calc_graph_update_time = Summary("felix_calc_graph_update_time_seconds",
                                              "Seconds to update calculation graph for each datastore OnUpdate call.",
                                              registry=registry)
        self.calc_graph_updates = Gauge("felix_calc_graph_updates_processed",
                                          "Number of datastore updates processed by the calculation graph.",
                                          registry=registry)
        self.calc_graph_output_events = Gauge("felix_calc_graph_output_events",
                                                "Number of events emitted by the calculation graph.",
                                                registry=registry)
        self.apply_time = Summary("felix_int_dataplane_apply_time_seconds",
                                  "Time in seconds that it took to apply a dataplane update.", registry=registry)
        self.dataplane_messages = Gauge("felix_int_dataplane_messages",
                                          "Number dataplane messages by type.", ["type"], registry=registry)
        self.applied_revision = Gauge("felix_dataplane_applied_revision",
                                      "Extension: newest datastore revision programmed into the dataplane.",
                                      registry=registry)

    def watch_sizes(self, graph: Callable[[], GraphStats], dataplane: Callable[[], DataplaneSizes]) -> None:
        """Export the graph's and the dataplane's sizes as gauges read at scrape time."""
        self.registry.register(_SizesCollector(graph, dataplane))

    def resync_state(self, status: SyncStatus) -> None:
        """Record the stream's status."""
        self.resync_state_gauge.set(_RESYNC_STATE[status])
