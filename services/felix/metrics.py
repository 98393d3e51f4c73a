"""Felix's Prometheus metrics, under Calico's names (docs: "Monitoring Felix with Prometheus").

How it works::

    Pipeline ──inc/set/observe──► FelixMetrics (plain numbers)
                                       │ export(registry): one collector, read at scrape time
    graph / dataplane sizes ───────────┴──────────────────────────────► CollectorRegistry ──► GET /metrics

Values are plain numbers updated where things happen (the pipeline); one
collector turns them, and the graph's and the dataplane's sizes, into metric
families when Prometheus scrapes, so the sizes can never go stale. Nothing
here imports prometheus-client: the collector is registered when the
service's registry is first made (the first scrape), so a Felix that is not
scraped before its first dataplane apply never loads it.

prometheus-client appends ``_total`` to a Counter's name while Calico's Go
client exports its counters as named (``felix_resyncs_started``), so, as in
Typha, Calico's counters are gauges that only ever go up. Summaries export
``_count`` and ``_sum``.

One extension: ``felix_dataplane_applied_revision``, the newest datastore
revision known to be programmed into the kernel (tests and operators use it to
wait for "Felix has caught up with this write").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from libcalico.syncer import SyncStatus

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

    from services.felix.calc import GraphStats

# Calico's felix_resync_state values.
_RESYNC_STATE = {SyncStatus.WAIT_FOR_DATASTORE: 1, SyncStatus.RESYNC_IN_PROGRESS: 2, SyncStatus.IN_SYNC: 3}


class DataplaneSizes(NamedTuple):
    """What the dataplane holds, for the scrape-time gauges."""

    ipsets: int
    failures: int


class Value:
    """A number that is set or only goes up (a gauge, or a counter exported as a gauge)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1.0) -> None:
        """Add ``amount``."""
        self.value += amount

    def set(self, value: float) -> None:
        """Replace the value."""
        self.value = float(value)


class Observations:
    """A summary without quantiles: how many observations and their sum."""

    __slots__ = ("count", "sum")

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        """Record one observation."""
        self.count += 1
        self.sum += amount


class LabelledValues:
    """One :class:`Value` per label value."""

    __slots__ = ("values",)

    def __init__(self) -> None:
        self.values: dict[str, Value] = {}

    def labels(self, label: str) -> Value:
        """The value of one label value (made at zero on first use)."""
        value = self.values.get(label)
        if value is None:
            value = self.values[label] = Value()
        return value


# name -> (attribute, help); the order is the order of /metrics.
_GAUGES = {
    "felix_resyncs_started": ("resyncs_started", "Number of times Felix has started resyncing with the datastore."),
    "felix_resync_state": ("resync_state_gauge", "Current datastore state (1 wait-for-datastore, "
                                                 "2 resync-in-progress, 3 in-sync)."),
    "felix_calc_graph_updates_processed": ("calc_graph_updates",
                                           "Number of datastore updates processed by the calculation graph."),
    "felix_calc_graph_output_events": ("calc_graph_output_events",
                                       "Number of events emitted by the calculation graph."),
    "felix_dataplane_applied_revision": ("applied_revision",
                                         "Extension: newest datastore revision programmed into the dataplane."),
}
_SUMMARIES = {
    "felix_calc_graph_update_time_seconds": ("calc_graph_update_time",
                                             "Seconds to update calculation graph for each datastore OnUpdate call."),
    "felix_int_dataplane_apply_time_seconds": ("apply_time",
                                               "Time in seconds that it took to apply a dataplane update."),
}


class FelixMetrics:
    """Every metric Felix exports; ``export`` puts them on a registry."""

    def __init__(self) -> None:
        self.resyncs_started = Value()
        self.resync_state_gauge = Value()
        self.calc_graph_update_time = Observations()
        self.calc_graph_updates = Value()
        self.calc_graph_output_events = Value()
        self.apply_time = Observations()
        self.dataplane_messages = LabelledValues()
        self.applied_revision = Value()
        self._graph: Callable[[], GraphStats] | None = None
        self._dataplane: Callable[[], DataplaneSizes] | None = None

    def watch_sizes(self, graph: Callable[[], GraphStats], dataplane: Callable[[], DataplaneSizes]) -> None:
        """Export the graph's and the dataplane's sizes as gauges read at scrape time."""
        self._graph = graph
        self._dataplane = dataplane

    def resync_state(self, status: SyncStatus) -> None:
        """Record the stream's status."""
        self.resync_state_gauge.set(_RESYNC_STATE[status])

    def export(self, registry: CollectorRegistry) -> None:
        """Register the collector of every Felix metric on ``registry``."""
        registry.register(_FelixCollector(self))

    def families(self) -> Iterator[Metric]:
        """Every metric family with its current samples (prometheus-client must be importable)."""
        from prometheus_client.core import GaugeMetricFamily, SummaryMetricFamily

        for name, (attr, doc) in _GAUGES.items():
            yield GaugeMetricFamily(name, doc, value=getattr(self, attr).value)
        for name, (attr, doc) in _SUMMARIES.items():
            obs: Observations = getattr(self, attr)
            yield SummaryMetricFamily(name, doc, count_value=obs.count, sum_value=obs.sum)
        messages = GaugeMetricFamily("felix_int_dataplane_messages", "Number dataplane messages by type.",
                                     labels=["type"])
        for label, value in sorted(self.dataplane_messages.values.items()):
            messages.add_metric([label], value.value)
        yield messages
        if self._graph is not None and self._dataplane is not None:
            yield from _size_families(self._graph(), self._dataplane())


def _size_families(stats: GraphStats, sizes: DataplaneSizes) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    yield GaugeMetricFamily("felix_active_local_endpoints", "Number of active endpoints on this host.",
                            value=stats.local_endpoints)
    yield GaugeMetricFamily("felix_active_local_policies", "Number of active policies on this host.",
                            value=stats.active_policies)
    yield GaugeMetricFamily("felix_active_local_selectors", "Number of active selectors on this host.",
                            value=stats.active_ipsets)
    yield GaugeMetricFamily("felix_ipsets_calico", "Number of active Calico IP sets.", value=sizes.ipsets)
    yield GaugeMetricFamily("felix_int_dataplane_failures",
                            "Number of times dataplane updates failed and will be retried.", value=sizes.failures)


class _FelixCollector:
    """prometheus-client's collector protocol (``collect``) over :class:`FelixMetrics`."""

    def __init__(self, metrics: FelixMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self.metrics.families()
