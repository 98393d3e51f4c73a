"""Health aggregation (Calico's semantics, timeouts on an injected clock) and the status HTTP server."""

from __future__ import annotations

from contextlib import AsyncExitStack

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from libcalico.runtime.errors import ServiceError
from libcalico.runtime.health import HealthAggregator, StatusServer, new_registry, open_status


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_no_reporters_is_live_and_ready() -> None:
    summary = HealthAggregator().summary()
    assert (summary.live, summary.ready, summary.reporters) == (True, True, ())


def test_new_reporter_is_live_but_not_ready_until_it_reports() -> None:
    agg = HealthAggregator()
    reporter = agg.register("syncer", live=True, ready=True)
    summary = agg.summary()
    assert (summary.live, summary.ready, summary.not_ready) == (True, False, ["syncer"])
    assert summary.reporters[0].readiness == "reporting non-ready"
    reporter.report(live=True, ready=True)
    assert agg.summary().ready is True


def test_all_reporters_must_agree() -> None:
    agg = HealthAggregator()
    a = agg.register("a")
    b = agg.register("b")
    a.report(ready=True)
    b.report(ready=False, detail="resyncing")
    summary = agg.summary()
    assert (summary.ready, summary.not_ready) == (False, ["b"])
    assert summary.reporters[1].detail == "resyncing"
    b.report(live=False, ready=True)
    summary = agg.summary()
    assert (summary.live, summary.not_live, summary.ready) == (False, ["b"], True)
    assert summary.reporters[1].liveness == "reporting non-live"


def test_reporter_of_liveness_only_does_not_affect_readiness() -> None:
    agg = HealthAggregator()
    agg.register("watchdog", live=True, ready=False).report(live=True, ready=False)
    summary = agg.summary()
    assert (summary.live, summary.ready, summary.reporters[0].readiness) == (True, True, "-")


def test_silent_reporter_times_out_and_recovers_when_it_reports() -> None:
    clock = FakeClock()
    agg = HealthAggregator(clock=clock)
    reporter = agg.register("dataplane", timeout=20.0)
    reporter.report(live=True, ready=True)
    clock.now += 20.0
    assert agg.summary().ready is True          # exactly at the timeout: still fine
    clock.now += 0.5
    summary = agg.summary()
    assert (summary.live, summary.ready) == (False, False)
    assert summary.reporters[0].liveness == summary.reporters[0].readiness == "timed out"
    reporter.report(live=True, ready=True)
    assert agg.summary().ready is True


def test_reporter_without_timeout_never_expires() -> None:
    clock = FakeClock()
    agg = HealthAggregator(clock=clock)
    agg.register("a").report(ready=True)
    clock.now += 10**9
    assert agg.summary().ready is True


def test_timeout_counts_from_registration_before_any_report() -> None:
    clock = FakeClock()
    agg = HealthAggregator(clock=clock)
    agg.register("a", live=True, ready=False, timeout=5)
    assert agg.summary().live is True
    clock.now += 6
    assert agg.summary().live is False


def test_report_from_unknown_reporter() -> None:
    with pytest.raises(ServiceError, match="'ghost' is not registered"):
        HealthAggregator().report("ghost", live=True, ready=True)


async def test_status_server_probes_and_metrics_on_one_port() -> None:
    agg = HealthAggregator()
    reporter = agg.register("first-sync")
    registry = new_registry()
    hits = Counter("demo_hits", "Hits", registry=registry)
    hits.inc(3)
    async with StatusServer("127.0.0.1", 0, health=agg, registry=registry) as server, aiohttp.ClientSession() as http:
        assert server.port != 0
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(f"{base}/liveness") as rsp:
            assert rsp.status == 200
            assert (await rsp.json())["live"] is True
        async with http.get(f"{base}/readiness") as rsp:
            assert rsp.status == 503
            body = await rsp.json()
            assert body["ready"] is False and body["notReady"] == ["first-sync"]
            assert body["reporters"][0]["readiness"] == "reporting non-ready"
        reporter.report(ready=True)
        async with http.get(f"{base}/readiness") as rsp:
            assert rsp.status == 200
        async with http.get(f"{base}/metrics") as rsp:
            assert rsp.status == 200
            assert rsp.headers["Content-Type"].startswith("text/plain; version=")
            text = await rsp.text()
            assert "demo_hits_total 3.0" in text
            assert "process_cpu_seconds_total" in text
        async with http.get(f"{base}/metrics", headers={"Accept": "application/openmetrics-text"}) as rsp:
            assert rsp.headers["Content-Type"].startswith("application/openmetrics-text")
            assert (await rsp.text()).rstrip().endswith("# EOF")


async def test_metrics_on_a_separate_port() -> None:
    agg = HealthAggregator()
    registry = new_registry(process=False)
    Counter("demo_sep", "Sep", registry=registry).inc()
    async with AsyncExitStack() as stack, aiohttp.ClientSession() as http:
        endpoints = await open_status(stack, health=agg, registry=registry, health_addr=("127.0.0.1", 0),
                                      metrics_addr=("127.0.0.1", 0))
        assert endpoints.health is not None and endpoints.metrics is not None
        assert endpoints.health is not endpoints.metrics
        health_base = f"http://127.0.0.1:{endpoints.health.port}"
        metrics_base = f"http://127.0.0.1:{endpoints.metrics.port}"
        async with http.get(f"{health_base}/metrics") as rsp:
            assert rsp.status == 404
        async with http.get(f"{metrics_base}/liveness") as rsp:
            assert rsp.status == 404
        async with http.get(f"{metrics_base}/metrics") as rsp:
            assert "demo_sep_total 1.0" in await rsp.text()
        async with http.get(f"{health_base}/readiness") as rsp:
            assert rsp.status == 200
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(f"{health_base}/liveness"):
            pass


async def test_port_in_use_is_a_clear_error() -> None:
    agg = HealthAggregator()
    async with StatusServer("127.0.0.1", 0, health=agg) as first:
        with pytest.raises(ServiceError, match=f"cannot listen on 127.0.0.1:{first.port}"):
            await StatusServer("127.0.0.1", first.port, health=agg).start()


async def test_metrics_registry_is_made_on_the_first_scrape_only() -> None:
    made: list[int] = []

    def factory() -> CollectorRegistry:
        made.append(1)
        registry = new_registry(process=False)
        Counter("lazy_hits", "Hits", registry=registry).inc(2)
        return registry

    agg = HealthAggregator()
    async with StatusServer("127.0.0.1", 0, health=agg, registry=factory) as server, \
            aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.port}"
        async with http.get(f"{base}/readiness") as rsp:
            assert rsp.status == 200
        assert made == []
        for _ in range(2):
            async with http.get(f"{base}/metrics") as rsp:
                assert "lazy_hits_total 2.0" in await rsp.text()
        assert made == [1]


async def test_wrong_method_is_405_unknown_path_404_and_head_has_no_body() -> None:
    agg = HealthAggregator()
    async with StatusServer("127.0.0.1", 0, health=agg) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.port}"
        async with http.post(f"{base}/liveness", data=b"x") as rsp:
            assert (rsp.status, rsp.headers["Allow"]) == (405, "GET, HEAD")
        async with http.get(f"{base}/nothing") as rsp:
            assert rsp.status == 404
        async with http.head(f"{base}/liveness") as rsp:
            assert rsp.status == 200 and int(rsp.headers["Content-Length"]) > 0
            assert await rsp.read() == b""
        async with http.get(f"{base}/liveness?verbose=true") as rsp:  # a query does not change the route
            assert rsp.headers["Content-Type"] == "application/json; charset=utf-8"
            assert (await rsp.json())["notLive"] == []
