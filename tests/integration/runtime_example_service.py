"""A tiny service built on libcalico.runtime, run as a subprocess by test_runtime_service.py.

It echoes lines over TCP (the "intake"), becomes ready only after its "first
sync" (the file named by EXAMPLE_SYNCGATEFILE appears), counts connections in a
Prometheus counter, and can be told to fail a root task (EXAMPLE_FAILGATEFILE).
Each accepted connection is served by its own named root task, so SIGTERM
closes the listener and then drains open connections.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import structlog
from prometheus_client import Counter, Gauge

from libcalico.runtime import Lifecycle, ServiceSettings, SettingsSpec, launch, setting
from libcalico.runtime.paramtypes import Bool, Duration, Port, Str

log = structlog.get_logger("example")


@dataclass(frozen=True)
class ExampleSettings(ServiceSettings):
    health_enabled: bool = setting("HealthEnabled", Bool(), True)
    health_host: str = setting("HealthHost", Str(), "127.0.0.1")
    health_port: int = setting("HealthPort", Port(), 0)
    prometheus_metrics_port: int = setting("PrometheusMetricsPort", Port(), 0)
    echo_host: str = setting("EchoHost", Str(), "127.0.0.1")
    echo_port: int = setting("EchoPort", Port(), 0)
    sync_gate_file: str = setting("SyncGateFile", Str(), "", help="ready once this file exists")
    fail_gate_file: str = setting("FailGateFile", Str(), "", help="a root task fails once this file exists")
    drain_timeout: float = setting("DrainTimeout", Duration(), "5s")


SPEC = SettingsSpec(ExampleSettings, env_prefix="EXAMPLE_", config_file="/etc/calico/example.cfg",
                    program="calico-example")


async def _wait_for_file(lc: Lifecycle, path: str) -> bool:
    """Poll for a file until it exists (True) or the service stops (False)."""
    while not lc.stopping.is_set():
        if not path or Path(path).exists():
            return True
        try:
            await asyncio.wait_for(lc.stopping.wait(), timeout=0.05)
        except TimeoutError:
            pass
    return False


async def wire(lc: Lifecycle, settings: ExampleSettings) -> None:
    """Open the echo listener and start the syncer (and the failer when asked)."""
    connections = Counter("example_connections", "Echo connections accepted", registry=lc.registry)
    in_sync = Gauge("example_in_sync", "1 once the first sync is done", registry=lc.registry)
    first_sync = lc.health.register("first-sync", live=True, ready=True, timeout=5.0)
    first_sync.report(live=True, ready=False, detail="waiting for first sync")
    serial = 0

    async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        structlog.contextvars.bind_contextvars(peer=peer)
        log.info("connection_opened")
        lines = 0
        try:
            for _ in range(100_000):
                line = await reader.readline()
                if not line:
                    break
                writer.write(line)
                await writer.drain()
                lines += 1
        finally:
            writer.close()
            log.info("connection_closed", lines=lines)

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal serial
        serial += 1
        host, port = writer.get_extra_info("peername")[:2]
        connections.inc()
        lc.spawn(f"conn-{serial}", serve_connection(reader, writer, f"{host}:{port}"))

    server = await asyncio.start_server(accept, settings.echo_host, settings.echo_port)
    await lc.enter(server)
    lc.on_stop(server.close, name="echo-listener")
    log.info("echo_listening", host=settings.echo_host, port=server.sockets[0].getsockname()[1])

    async def syncer() -> None:
        if not await _wait_for_file(lc, settings.sync_gate_file):
            return
        in_sync.set(1)
        log.info("in_sync")
        while not lc.stopping.is_set():
            first_sync.report(live=True, ready=True)
            try:
                await asyncio.wait_for(lc.stopping.wait(), timeout=0.5)
            except TimeoutError:
                pass

    async def failer() -> None:
        if await _wait_for_file(lc, settings.fail_gate_file):
            raise RuntimeError("fail gate opened")

    lc.spawn("syncer", syncer())
    if settings.fail_gate_file:
        lc.spawn("failer", failer(), cancel_on_stop=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m tests.integration.runtime_example_service``."""
    return launch(SPEC, wire, sys.argv[1:] if argv is None else argv, os.environ, service="example",
                  drain_timeout=lambda s: s.drain_timeout)


if __name__ == "__main__":
    sys.exit(main())
