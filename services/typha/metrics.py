"""Typha's Prometheus metrics, with Calico's names.

prometheus-client appends ``_total`` to every Counter's name, while Calico's Go
client exports its counters ``typha_connections_accepted``,
``typha_connections_dropped`` and ``typha_updates_skipped`` as named. Those
three are therefore Gauges that only ever go up, so that the exported names
are exactly Calico's; ``typha_updates_total`` is a Counter (its name already
ends in ``_total``).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Summary


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
    client_latency_secs: Summary
    ping_latency: Summary
    max_connections: Gauge

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
            client_latency_secs=Summary("typha_client_latency_secs",
                                        "Per-client latency: how long an update waited before it was "
                                        "written to the client.", ["syncer"], registry=registry),
            ping_latency=Summary("typha_ping_latency", "Round-trip ping latency to clients.", ["syncer"],
                                 registry=registry),
            max_connections=Gauge("typha_max_connections", "The connection limit in force on this replica.",
                                  registry=registry),
        )
