"""Lifecycle: resources closed in reverse, stop hooks, drain with a timeout, failures → exit 1."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from libcalico.runtime.errors import ServiceError
from libcalico.runtime.health import HealthAggregator
from libcalico.runtime.lifecycle import Lifecycle, serve
from libcalico.runtime.logs import configure_logging


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buf = io.StringIO()
    configure_logging("test", "Debug", stream=buf)
    try:
        yield buf
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


def events(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def event(buf: io.StringIO, name: str) -> dict[str, Any]:
    found = [e for e in events(buf) if e["event"] == name]
    assert found, f"no {name!r} event in {[e['event'] for e in events(buf)]}"
    return found[0]


class Resource:
    def __init__(self, name: str, record: list[str]) -> None:
        self.name = name
        self.record = record

    async def __aenter__(self) -> Resource:
        self.record.append(f"open {self.name}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.record.append(f"close {self.name}")


async def stop_now(lc: Lifecycle, reason: str = "test") -> None:
    lc.request_stop(reason)


async def test_clean_stop_order_and_exit_zero(logs: io.StringIO) -> None:
    record: list[str] = []
    intake_closed = asyncio.Event()

    async def worker(lc: Lifecycle) -> None:
        await intake_closed.wait()  # in-flight work that ends once no new work comes in
        record.append("worker drained")

    async def async_hook() -> None:
        record.append("intake 2")

    def close_intake() -> None:
        record.append("intake 1")
        intake_closed.set()

    async def wire(lc: Lifecycle) -> None:
        await lc.enter(Resource("a", record))
        await lc.enter(Resource("b", record))
        lc.on_stop(close_intake)
        lc.on_stop(async_hook)
        lc.spawn("worker", worker(lc))
        lc.spawn("stopper", stop_now(lc))

    code = await serve("test", wire, signals=())
    assert code == 0
    assert record == ["open a", "open b", "intake 2", "intake 1", "worker drained", "close b", "close a"]
    assert event(logs, "stopping")["reason"] == "test"
    assert event(logs, "service_stopped")["exit_code"] == 0
    assert "drained" in [e["event"] for e in events(logs)]


async def test_failing_task_is_logged_at_its_root_and_exits_nonzero(logs: io.StringIO) -> None:
    record: list[str] = []

    async def boom() -> None:
        raise RuntimeError("datastore went away")

    async def worker(lc: Lifecycle) -> None:
        await lc.stopping.wait()
        record.append("worker drained")

    async def wire(lc: Lifecycle) -> None:
        await lc.enter(Resource("db", record))
        lc.spawn("worker", worker(lc))
        lc.spawn("syncer", boom())

    code = await serve("test", wire, signals=())
    assert code == 1
    assert record == ["open db", "worker drained", "close db"]
    failed = event(logs, "task_failed")
    assert failed["task"] == "syncer" and failed["level"] == "error"
    assert failed["exception"][0]["exc_value"] == "datastore went away"
    assert event(logs, "stopping")["reason"] == "task syncer failed"
    assert event(logs, "service_stopped")["exit_code"] == 1


async def test_drain_timeout_cancels_stuck_tasks_and_still_exits_zero(logs: io.StringIO) -> None:
    cancelled = []

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def wire(lc: Lifecycle) -> None:
        lc.spawn("stuck", stuck())
        lc.spawn("stopper", stop_now(lc))

    started = time.monotonic()
    code = await serve("test", wire, drain_timeout=0.3, signals=())
    elapsed = time.monotonic() - started
    assert code == 0
    assert cancelled == [True]
    assert 0.3 <= elapsed < 5.0
    incomplete = event(logs, "drain_incomplete")
    assert incomplete["tasks"] == ["stuck"] and incomplete["timeout"] == 0.3


async def test_cancel_on_stop_tasks_do_not_hold_the_drain(logs: io.StringIO) -> None:
    cancelled = []

    async def watcher() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def wire(lc: Lifecycle) -> None:
        lc.spawn("watcher", watcher(), cancel_on_stop=True)
        lc.spawn("stopper", stop_now(lc))

    started = time.monotonic()
    assert await serve("test", wire, drain_timeout=60, signals=()) == 0
    assert time.monotonic() - started < 5.0
    assert cancelled == [True]
    assert "drain_incomplete" not in [e["event"] for e in events(logs)]


async def test_wiring_failure_closes_what_was_opened(logs: io.StringIO) -> None:
    record: list[str] = []

    async def wire(lc: Lifecycle) -> None:
        await lc.enter(Resource("a", record))
        raise OSError("address already in use")

    assert await serve("test", wire, signals=()) == 1
    assert record == ["open a", "close a"]
    assert event(logs, "startup_failed")["exception"][0]["exc_type"] == "OSError"


async def test_stop_during_a_long_start_up_interrupts_it(logs: io.StringIO) -> None:
    record: list[str] = []

    async def wire(lc: Lifecycle) -> None:
        await lc.enter(Resource("a", record))
        lc.spawn("stopper", stop_now(lc, "SIGTERM"))
        await asyncio.Event().wait()  # e.g. waiting for a datastore that never answers

    assert await serve("test", wire, signals=()) == 0
    assert record == ["open a", "close a"]
    assert event(logs, "startup_interrupted")["reason"] == "SIGTERM"


async def test_failing_stop_hook_exits_nonzero_but_still_closes(logs: io.StringIO) -> None:
    record: list[str] = []

    def bad_hook() -> None:
        raise RuntimeError("cannot close listener")

    async def wire(lc: Lifecycle) -> None:
        await lc.enter(Resource("a", record))
        lc.on_stop(bad_hook, name="listener")
        lc.spawn("stopper", stop_now(lc))

    assert await serve("test", wire, signals=()) == 1
    assert record == ["open a", "close a"]
    assert event(logs, "stop_hook_failed")["hook"] == "listener"


async def test_failing_resource_close_exits_nonzero(logs: io.StringIO) -> None:
    class BadClose(Resource):
        async def __aexit__(self, *exc: object) -> None:
            raise RuntimeError("flush failed")

    async def wire(lc: Lifecycle) -> None:
        await lc.enter(BadClose("a", []))
        lc.spawn("stopper", stop_now(lc))

    assert await serve("test", wire, signals=()) == 1
    assert event(logs, "shutdown_failed")["exception"][0]["exc_value"] == "flush failed"


async def test_readiness_follows_the_lifecycle(logs: io.StringIO) -> None:
    agg = HealthAggregator()
    seen: dict[str, bool] = {}

    async def check_started(lc: Lifecycle) -> None:
        for _ in range(1000):  # service_started is reported right after wire returns
            if agg.summary().ready:
                break
            await asyncio.sleep(0)
        seen["after start"] = agg.summary().ready
        lc.request_stop()

    async def wire(lc: Lifecycle) -> None:
        seen["during wiring"] = agg.summary().ready
        lc.on_stop(lambda: seen.__setitem__("while stopping", agg.summary().ready))
        lc.spawn("checker", check_started(lc))

    assert await serve("test", wire, health=agg, signals=()) == 0
    assert seen == {"during wiring": False, "after start": True, "while stopping": False}
    assert agg.summary().reporters[0].detail == "stopping"


async def test_signal_stops_and_second_signal_forces(logs: io.StringIO) -> None:
    async def stuck() -> None:
        await asyncio.Event().wait()

    async def signaller(lc: Lifecycle) -> None:
        os.kill(os.getpid(), signal.SIGUSR1)
        await lc.stopping.wait()
        os.kill(os.getpid(), signal.SIGUSR1)

    async def wire(lc: Lifecycle) -> None:
        lc.spawn("stuck", stuck())
        lc.spawn("signaller", signaller(lc))

    started = time.monotonic()
    code = await serve("test", wire, drain_timeout=60, signals=(signal.SIGUSR1,))
    assert code == 0
    assert time.monotonic() - started < 10
    assert event(logs, "signal_received")["signal"] == "SIGUSR1"
    assert event(logs, "stop_forced")["signal"] == "SIGUSR1"
    assert event(logs, "drain_incomplete")["forced"] is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL  # handler removed again


async def test_spawn_outside_a_running_lifecycle() -> None:
    lc = Lifecycle("test")
    with pytest.raises(ServiceError, match="not running"):
        lc.spawn("x", stop_now(lc))
    with pytest.raises(ServiceError, match="not running"):
        _ = lc.stack


async def test_registry_is_made_on_first_use_and_hooks_run_once() -> None:
    lc = Lifecycle("test")
    seen: list[object] = []
    lc.with_registry(seen.append)
    assert seen == []  # not made yet
    registry = lc.registry
    assert seen == [registry] and lc.registry is registry
    lc.with_registry(seen.append)  # after it exists: at once
    assert seen == [registry, registry]
