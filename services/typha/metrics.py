"""Typha's Prometheus metrics, with Calico's names.

prometheus-client appends ``_total`` to every Counter's name, while Calico's Go
client exports its counters ``typha_connections_accepted``,
``typha_connections_dropped`` and ``typha_updates_skipped`` as named. Those
three are therefore Gauges that only ever go up, so that the exported names
are exactly Calico's; ``typha_updates_total`` is a Counter (its name already
ends in ``_total``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Summary
from prometheus_client.core import Metric, SummaryMetricFamily

# Stage timings of the fan-out path (extensions): 1 ms .. 10 s.
STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SummaryTotals:
    """A Summary (count and sum per label value) that can take many observations in one call.

    The fan-out writes one breadcrumb to a thousand clients in one loop; observing each
    write through prometheus-client's Summary would cost a lock per client. This keeps
    plain totals and exports them as a Summary with the same name and labels.
    """

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self._totals: dict[str, tuple[int, float]] = {}
        registry.register(self)

    def labels(self, value: str) -> tuple[int, float]:
        """The (count, sum) of one label value (created at zero)."""
        return self._totals.setdefault(value, (0, 0.0))

    def observe(self, value: str, seconds: float) -> None:
        """One observation."""
        self.observe_many(value, 1, seconds)

    def observe_many(self, value: str, count: int, total: float) -> None:
        """``count`` observations summing to ``total``."""
        old_count, old_total = self.labels(value)
        self._totals[value] = (old_count + count, old_total + total)

    def collect(self) -> Iterator[Metric]:
        """Export as a Prometheus summary."""
        family = SummaryMetricFamily(self.name, self.documentation, labels=[self.label])
        for value, (count, total) in sorted(self._totals.items()):
            family.add_metric([value], count_value=count, sum_value=total)
        yield family

    def describe(self) -> Iterator[Metric]:
        """Announce the family (lets the registry check for name clashes)."""
        yield SummaryMetricFamily(self.name, self.documentation, labels=[self.label])


@dataclass(frozen=True)
class TyphaMetrics:
    """Every metric Typha exports, registered on the service's own registry."""

    connections_active: Gauge
    connections_accepted: Gauge
    connections_dropped: Gauge
    cache_size: Gauge
    updates_total: Counter
    updates_skipped: Gauge
    breadcrumb_seq: Gauge
    snapshot_send_secs: Summary
    client_latency_secs: SummaryTotals
    ping_latency: Summary
    max_connections: Gauge
    breadcrumb_wait_secs: Histogram
    fanout_secs: Histogram
    fanout_fallbehind: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> TyphaMetrics:
        """Register every metric on ``registry``."""
        return cls(
            connections_active=Gauge("typha_connections_active", "Number of open client connections.",
                                     ["syncer"], registry=registry),
            connections_accepted=Gauge("typha_connections_accepted",
                                         "Total number of connections accepted over time.", registry=registry),
            connections_dropped=Gauge("typha_connections_dropped",
                                        "Total number of connections dropped (too slow, timed out, "
                                        "shed for rebalancing, refused, protocol errors).",
                                        registry=registry),
            cache_size=Gauge("typha_cache_size", "The number of keys in the snapshot cache.", ["syncer"],
                             registry=registry),
            updates_total=Counter("typha_updates_total", "Total number of updates received from the syncer.",
                                  ["syncer"], registry=registry),
            updates_skipped=Gauge("typha_updates_skipped",
                                    "Total number of updates skipped because they changed nothing.",
                                    ["syncer"], registry=registry),
            breadcrumb_seq=Gauge("typha_breadcrumb_seq_number", "Sequence number of the newest breadcrumb.",
                                 ["syncer"], registry=registry),
            snapshot_send_secs=Summary("typha_client_snapshot_send_secs",
                                       "How long it took to send the initial snapshot to each client.",
                                       ["syncer"], registry=registry),
            client_latency_secs=SummaryTotals("typha_client_latency_secs",
                                              "Per-client latency: how long a breadcrumb waited after it was "
                                              "published before it was written to the client.", "syncer",
                                              registry),
            ping_latency=Summary("typha_ping_latency", "Round-trip ping latency to clients.", ["syncer"],
                                 registry=registry),
            max_connections=Gauge("typha_max_connections", "The connection limit in force on this replica.",
                                  registry=registry),
            breadcrumb_wait_secs=Histogram(
                "typha_breadcrumb_wait_secs", "Extension: how long the oldest update of each breadcrumb waited "
                "between arriving from the datastore and being published (batching).", ["syncer"],
                buckets=STAGE_BUCKETS, registry=registry),
            fanout_secs=Histogram(
                "typha_fanout_secs", "Extension: time from publishing a breadcrumb until every client on the "
                "fast path had it written to its socket.", ["syncer"], buckets=STAGE_BUCKETS, registry=registry),
            fanout_fallbehind=Counter(
                "typha_fanout_fallbehind", "Extension: times a client left the fast path because its socket "
                "buffers were full (it then catches up on its own).", ["syncer"], registry=registry),
        )
