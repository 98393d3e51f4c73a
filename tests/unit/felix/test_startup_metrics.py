"""Felix's metrics are plain numbers until the first scrape; exported then under Calico's names."""

from __future__ import annotations

from types import SimpleNamespace

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from libcalico.runtime.health import new_registry
from libcalico.runtime.lifecycle import Lifecycle
from libcalico.syncer import SyncStatus
from services.felix.metrics import DataplaneSizes, FelixMetrics


def samples(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def test_values_exported_under_calico_names_when_the_registry_is_made() -> None:
    metrics = FelixMetrics()
    metrics.resyncs_started.inc()
    metrics.resync_state(SyncStatus.IN_SYNC)
    metrics.calc_graph_updates.inc(40)
    metrics.calc_graph_output_events.inc(7)
    metrics.calc_graph_update_time.observe(0.25)
    metrics.calc_graph_update_time.observe(0.5)
    metrics.apply_time.observe(1.5)
    metrics.dataplane_messages.labels("InSync").inc()
    metrics.dataplane_messages.labels("ConfigUpdate").inc(2)
    metrics.applied_revision.set(1234)
    stats = SimpleNamespace(local_endpoints=3, active_policies=5, active_ipsets=8)
    sizes = DataplaneSizes(ipsets=9, failures=1)
    metrics.watch_sizes(lambda: stats, lambda: sizes)  # type: ignore[arg-type, return-value]

    lc = Lifecycle("felix")
    lc.with_registry(metrics.export)  # what Felix's wiring does: nothing is made yet
    got = samples(generate_latest(lc.registry).decode())  # the first scrape makes the registry
    assert {k: v for k, v in got.items() if k.startswith("felix_")} == {
        "felix_resyncs_started": 1.0, "felix_resync_state": 3.0,
        "felix_calc_graph_updates_processed": 40.0, "felix_calc_graph_output_events": 7.0,
        "felix_calc_graph_update_time_seconds_count": 2.0, "felix_calc_graph_update_time_seconds_sum": 0.75,
        "felix_int_dataplane_apply_time_seconds_count": 1.0, "felix_int_dataplane_apply_time_seconds_sum": 1.5,
        'felix_int_dataplane_messages{type="ConfigUpdate"}': 2.0,
        'felix_int_dataplane_messages{type="InSync"}': 1.0,
        "felix_dataplane_applied_revision": 1234.0,
        "felix_active_local_endpoints": 3.0, "felix_active_local_policies": 5.0,
        "felix_active_local_selectors": 8.0, "felix_ipsets_calico": 9.0, "felix_int_dataplane_failures": 1.0,
    }
    assert "process_cpu_seconds_total" in got  # the service registry's own collectors


def test_sizes_are_read_at_scrape_time() -> None:
    metrics = FelixMetrics()
    sizes = [DataplaneSizes(ipsets=1, failures=0)]
    stats = SimpleNamespace(local_endpoints=0, active_policies=0, active_ipsets=0)
    metrics.watch_sizes(lambda: stats, lambda: sizes[0])  # type: ignore[arg-type, return-value]
    registry = new_registry(process=False)
    metrics.export(registry)
    assert samples(generate_latest(registry).decode())["felix_ipsets_calico"] == 1.0
    sizes[0] = DataplaneSizes(ipsets=6, failures=0)
    assert samples(generate_latest(registry).decode())["felix_ipsets_calico"] == 6.0
