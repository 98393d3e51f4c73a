"""Health aggregation (as Calico's ``libcalico-go/lib/health``) and the health/metrics HTTP server.

How it works::

    component ──Reporter.report(live, ready)──► HealthAggregator ──summary()──► GET /liveness  200 | 503
    component ──Reporter.report(...)─────────►        │                       GET /readiness 200 | 503
                                                      │
    prometheus_client metrics ──► CollectorRegistry ──┴───────────────────────► GET /metrics

A reporter is registered with the kinds of health it reports (live, ready) and
an optional timeout. Overall the service is live (ready) when every reporter
that reports liveness (readiness) said so in its latest report and, when it has
a timeout, reported within it; a silent reporter past its timeout counts as not
live and not ready. A new reporter starts live and not ready. With no reporters
the service is live and ready. The body of a probe answer is JSON naming the
reporters that are not live or not ready.

The server is :mod:`libcalico.runtime.http11` (standard library only; GET and
HEAD, keep-alive, bounded requests, deadlines and a connection cap).
prometheus-client is imported only when metrics are first asked for: a
registry may be handed over as a zero-argument callable that makes it, and
``new_registry`` imports the library when it is called. A service that never
serves or builds metrics (Felix until its first scrape) never loads it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeAlias

import orjson
import structlog

from libcalico.runtime.errors import ServiceError
from libcalico.runtime.http11 import HTTPServer, Limits, Request, Response, error_response

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

#: A metrics registry, or a callable that makes it when metrics are first served.
RegistrySource: TypeAlias = "CollectorRegistry | Callable[[], CollectorRegistry]"

log = structlog.get_logger(__name__)


class ReporterStatus(NamedTuple):
    """One reporter's contribution to the summary, with Calico's wording for each state."""

    name: str
    timeout: float | None
    live: bool
    liveness: str
    ready: bool
    readiness: str
    detail: str

    def as_dict(self) -> dict[str, Any]:
        """The JSON form used in probe answers."""
        return {
            "name": self.name, "timeout": self.timeout, "live": self.live, "liveness": self.liveness,
            "ready": self.ready, "readiness": self.readiness, "detail": self.detail,
        }


class HealthSummary(NamedTuple):
    """Overall liveness and readiness, and every reporter's status sorted by name."""

    live: bool
    ready: bool
    reporters: tuple[ReporterStatus, ...]

    @property
    def not_live(self) -> list[str]:
        return [r.name for r in self.reporters if not r.live]

    @property
    def not_ready(self) -> list[str]:
        return [r.name for r in self.reporters if not r.ready]


class _State:
    __slots__ = ("name", "reports_live", "reports_ready", "timeout", "live", "ready", "detail", "stamp")

    def __init__(self, name: str, live: bool, ready: bool, timeout: float | None, now: float) -> None:
        self.name = name
        self.reports_live = live
        self.reports_ready = ready
        self.timeout = timeout
        self.live = True
        self.ready = False
        self.detail = ""
        self.stamp = now


class Reporter:
    """The handle a component uses to report its own health."""

    def __init__(self, aggregator: HealthAggregator, name: str) -> None:
        self.aggregator = aggregator
        self.name = name

    def report(self, *, live: bool = True, ready: bool = True, detail: str = "") -> None:
        """Report current health; also refreshes the timeout clock."""
        self.aggregator.report(self.name, live=live, ready=ready, detail=detail)


class HealthAggregator:
    """Named reporters, each reporting live and/or ready with an optional timeout."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._reporters: dict[str, _State] = {}
        self._last: tuple[bool, bool] | None = None

    def register(self, name: str, *, live: bool = True, ready: bool = True,
                 timeout: float | None = None) -> Reporter:
        """Add (or replace) a reporter; ``timeout`` seconds of silence make it not live/ready."""
        if timeout is not None and timeout <= 0:
            timeout = None
        self._reporters[name] = _State(name, live, ready, timeout, self._clock())
        return Reporter(self, name)

    def report(self, name: str, *, live: bool = True, ready: bool = True, detail: str = "") -> None:
        """Record a reporter's latest health."""
        state = self._reporters.get(name)
        if state is None:
            raise ServiceError(f"health reporter {name!r} is not registered")
        if (state.live, state.ready, state.detail) != (live, ready, detail):
            log.info("health_changed", reporter=name, live=live, ready=ready, detail=detail or None)
        state.live, state.ready, state.detail = live, ready, detail
        state.stamp = self._clock()

    def summary(self) -> HealthSummary:
        """The current overall health; logs when overall liveness or readiness changes."""
        now = self._clock()
        statuses = []
        for state in sorted(self._reporters.values(), key=lambda s: s.name):
            timed_out = state.timeout is not None and now - state.stamp > state.timeout
            live, liveness = _judge(state.reports_live, timed_out, state.live, "live")
            ready, readiness = _judge(state.reports_ready, timed_out, state.ready, "ready")
            statuses.append(ReporterStatus(state.name, state.timeout, live, liveness, ready, readiness, state.detail))
        summary = HealthSummary(all(s.live for s in statuses), all(s.ready for s in statuses), tuple(statuses))
        if self._last != (summary.live, summary.ready):
            self._last = (summary.live, summary.ready)
            log.info("overall_health_changed", live=summary.live, ready=summary.ready,
                     not_live=summary.not_live, not_ready=summary.not_ready)
        return summary


def _judge(reports: bool, timed_out: bool, latest: bool, quality: str) -> tuple[bool, str]:
    if not reports:
        return True, "-"
    if timed_out:
        return False, "timed out"
    if latest:
        return True, f"reporting {quality}"
    return False, f"reporting non-{quality}"


def new_registry(*, process: bool = True) -> CollectorRegistry:
    """A service's own metrics registry, with process, platform and GC collectors."""
    import prometheus_client

    registry = prometheus_client.CollectorRegistry(auto_describe=True)
    if process:
        prometheus_client.ProcessCollector(registry=registry)
        prometheus_client.PlatformCollector(registry=registry)
        prometheus_client.GCCollector(registry=registry)
    return registry


_JSON = "application/json; charset=utf-8"
_ALLOWED = (("Allow", "GET, HEAD"),)


class StatusServer:
    """One HTTP listener serving /liveness and /readiness, /metrics, or all three."""

    def __init__(self, host: str, port: int, *, health: HealthAggregator | None = None,
                 registry: RegistrySource | None = None, limits: Limits | None = None) -> None:
        if health is None and registry is None:
            raise ServiceError("a status server needs a health aggregator, a metrics registry or both")
        self.host = host
        self.requested_port = port
        self.health = health
        self._registry_source = registry
        self._registry: CollectorRegistry | None = None
        self._http: HTTPServer | None = None
        self.limits = limits or Limits()
        self.port = port
        self._routes: dict[str, Callable[[Request], Response]] = {}
        if health is not None:
            self._routes.update({"/liveness": self._liveness, "/readiness": self._readiness})
        if registry is not None:
            self._routes["/metrics"] = self._metrics

    @property
    def registry(self) -> CollectorRegistry | None:
        """The metrics registry (made now if it was handed over as a callable), or None."""
        if self._registry is None and self._registry_source is not None:
            source = self._registry_source
            self._registry = source() if callable(source) else source
        return self._registry

    async def start(self) -> None:
        """Listen; afterwards ``port`` is the bound port (useful with port 0)."""
        http = HTTPServer(self.handle, self.limits)
        try:
            self.port = await http.listen(self.host or None, self.requested_port)
        except OSError as exc:
            await http.close()
            raise ServiceError(f"cannot listen on {self.host or '*'}:{self.requested_port}: "
                               f"{exc.strerror or exc}") from exc
        self._http = http
        log.info("status_server_started", host=self.host or "*", port=self.port,
                 health=self.health is not None, metrics=self._registry_source is not None)

    async def close(self) -> None:
        """Stop listening and close open connections."""
        if self._http is not None:
            http, self._http = self._http, None
            await http.close()

    async def __aenter__(self) -> StatusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def handle(self, request: Request) -> Response:
        """Answer one request: the route's answer, 404 for an unknown path, 405 for a method not GET/HEAD."""
        route = self._routes.get(request.path)
        if route is None:
            return error_response(404, f"no such path {request.path!r}")
        if request.method not in ("GET", "HEAD"):
            return Response(405, f"405 Method Not Allowed: {request.method}\n".encode(), headers=_ALLOWED)
        return route(request)

    def _liveness(self, request: Request) -> Response:
        assert self.health is not None
        summary = self.health.summary()
        body = {"live": summary.live, "notLive": summary.not_live,
                "reporters": [r.as_dict() for r in summary.reporters]}
        return Response(200 if summary.live else 503, orjson.dumps(body), _JSON)

    def _readiness(self, request: Request) -> Response:
        assert self.health is not None
        summary = self.health.summary()
        body = {"ready": summary.ready, "notReady": summary.not_ready,
                "reporters": [r.as_dict() for r in summary.reporters]}
        return Response(200 if summary.ready else 503, orjson.dumps(body), _JSON)

    def _metrics(self, request: Request) -> Response:
        from prometheus_client.exposition import choose_encoder

        registry = self.registry
        assert registry is not None
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(200, encoder(registry), content_type)


class StatusConfig(Protocol):
    """The settings a status server needs (``ServiceSettings`` has them)."""

    health_enabled: bool
    health_host: str
    health_port: int
    prometheus_metrics_enabled: bool
    prometheus_metrics_host: str
    prometheus_metrics_port: int


class StatusEndpoints(NamedTuple):
    """The servers opened for a service: health and metrics may be the same server, or absent."""

    health: StatusServer | None
    metrics: StatusServer | None


async def open_status(
    stack: AsyncExitStack,
    *,
    health: HealthAggregator | None,
    registry: RegistrySource | None,
    health_addr: tuple[str, int] | None,
    metrics_addr: tuple[str, int] | None,
    shared: bool = False,
) -> StatusEndpoints:
    """Open the health and metrics servers on ``stack``; ``shared`` serves metrics on the health server."""
    health_server = metrics_server = None
    if health_addr is not None and health is not None:
        health_server = StatusServer(*health_addr, health=health, registry=registry if shared else None)
        await stack.enter_async_context(health_server)
        if shared:
            metrics_server = health_server
    if metrics_addr is not None and registry is not None and metrics_server is None:
        metrics_server = StatusServer(*metrics_addr, registry=registry)
        await stack.enter_async_context(metrics_server)
    return StatusEndpoints(health_server, metrics_server)


async def open_status_from_settings(
    stack: AsyncExitStack, settings: StatusConfig, health: HealthAggregator, registry: RegistrySource
) -> StatusEndpoints:
    """Open the servers ``settings`` ask for; one server when the metrics port equals the health port."""
    health_addr = (settings.health_host, settings.health_port) if settings.health_enabled else None
    metrics_addr = None
    if settings.prometheus_metrics_enabled:
        metrics_addr = (settings.prometheus_metrics_host, settings.prometheus_metrics_port)
    shared = (
        health_addr is not None and metrics_addr is not None
        and settings.prometheus_metrics_port == settings.health_port
        and settings.prometheus_metrics_host in ("", settings.health_host)
    )
    return await open_status(stack, health=health, registry=registry, health_addr=health_addr,
                             metrics_addr=metrics_addr, shared=shared)
