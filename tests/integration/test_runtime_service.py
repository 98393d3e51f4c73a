"""A real service built on libcalico.runtime, run as a subprocess and probed over HTTP and TCP.

The service (runtime_example_service.py beside this file) logs JSON lines on
stderr; the tests learn its ports from those lines, never from fixed numbers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = "tests.integration.runtime_example_service"
T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class ExampleProcess:
    """The example service in a subprocess, with its stderr parsed as JSON lines."""

    def __init__(self, env: dict[str, str], args: list[str]) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.upper().startswith("EXAMPLE_")}
        full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, *args], cwd=REPO, env=full_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.bad_lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError:
                with self._lock:
                    self.bad_lines.append(line)
                continue
            with self._lock:
                self.events.append(parsed)

    def find(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return next((e for e in self.events if e.get("event") == name), None)

    def wait_event(self, name: str, timeout: float = 15.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            found = self.find(name)
            if found is None and self.proc.poll() is not None:
                raise AssertionError(f"service exited {self.proc.returncode} before {name!r}: {self.names()}")
            return found

        return wait_until(check, timeout, f"log event {name!r}")

    def names(self) -> list[str]:
        with self._lock:
            return [e.get("event", "?") for e in self.events]

    def finish(self, timeout: float = 15.0) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        assert not self.bad_lines, f"non-JSON lines on stderr: {self.bad_lines}"
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture
def start() -> Iterator[Callable[..., ExampleProcess]]:
    started: list[ExampleProcess] = []

    def _start(env: dict[str, str] | None = None, args: list[str] | None = None) -> ExampleProcess:
        proc = ExampleProcess(env or {}, args or [])
        started.append(proc)
        return proc

    yield _start
    for proc in started:
        proc.kill()
        if proc.proc.stderr is not None:
            proc.proc.stderr.close()


def http_get(port: int, path: str) -> tuple[int, str, str]:
    """Status, content type and body of a GET to the service."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as rsp:
            return rsp.status, rsp.headers["Content-Type"], rsp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def echo(conn: socket.socket, text: bytes) -> bytes:
    conn.sendall(text)
    data = b""
    deadline = time.monotonic() + 5
    while not data.endswith(b"\n") and time.monotonic() < deadline:
        chunk = conn.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_ready_after_first_sync_metrics_and_graceful_drain(tmp_path: Path, start: Callable[..., ExampleProcess]) -> None:
    gate = tmp_path / "synced"
    svc = start({"EXAMPLE_SYNCGATEFILE": str(gate), "EXAMPLE_PROMETHEUSMETRICSENABLED": "true",
                 "EXAMPLE_DRAINTIMEOUT": "30s"})
    port = svc.wait_event("status_server_started")["port"]
    echo_port = svc.wait_event("echo_listening")["port"]
    svc.wait_event("service_started")

    assert http_get(port, "/liveness")[0] == 200
    status, ctype, body = http_get(port, "/readiness")
    assert (status, ctype.split(";")[0]) == (503, "application/json")
    assert json.loads(body)["notReady"] == ["first-sync"]

    gate.touch()  # the "first sync" completes
    wait_until(lambda: http_get(port, "/readiness")[0] == 200, what="readiness after first sync")
    assert json.loads(http_get(port, "/readiness")[2])["notReady"] == []

    conn = socket.create_connection(("127.0.0.1", echo_port), timeout=5)
    assert echo(conn, b"hello\n") == b"hello\n"
    status, ctype, metrics = http_get(port, "/metrics")
    assert status == 200 and ctype.startswith("text/plain; version=")
    assert "example_connections_total 1.0" in metrics
    assert "example_in_sync 1.0" in metrics
    assert "process_resident_memory_bytes" in metrics

    svc.proc.send_signal(signal.SIGTERM)
    assert svc.wait_event("stopping")["tasks"] == ["conn-1", "syncer"]
    wait_until(lambda: refused(echo_port), what="echo listener closed")   # intake stopped
    assert http_get(port, "/readiness")[0] == 503                          # not ready while draining
    assert http_get(port, "/liveness")[0] == 200
    assert echo(conn, b"in flight\n") == b"in flight\n"                    # open work still served
    assert svc.proc.poll() is None
    conn.close()

    assert svc.finish() == 0
    assert svc.find("drained") is not None
    assert svc.find("service_stopped")["exit_code"] == 0  # type: ignore[index]
    opened = svc.find("connection_opened")
    assert opened is not None and opened["task"] == "conn-1" and opened["peer"].startswith("127.0.0.1:")
    assert opened["service"] == "example" and opened["level"] == "info" and "timestamp" in opened
    assert svc.find("connection_closed")["lines"] == 2  # type: ignore[index]


def test_drain_timeout_bounds_the_stop(start: Callable[..., ExampleProcess]) -> None:
    svc = start({"EXAMPLE_DRAINTIMEOUT": "500ms"})
    echo_port = svc.wait_event("echo_listening")["port"]
    svc.wait_event("service_started")
    with socket.create_connection(("127.0.0.1", echo_port), timeout=5) as conn:
        assert echo(conn, b"x\n") == b"x\n"
        began = time.monotonic()
        svc.proc.send_signal(signal.SIGTERM)
        assert svc.finish() == 0
        assert time.monotonic() - began < 10
    incomplete = svc.find("drain_incomplete")
    assert incomplete is not None and incomplete["tasks"] == ["conn-1"] and incomplete["timeout"] == 0.5


def test_failed_task_exits_nonzero(tmp_path: Path, start: Callable[..., ExampleProcess]) -> None:
    gate = tmp_path / "fail"
    svc = start({"EXAMPLE_FAILGATEFILE": str(gate)})
    svc.wait_event("service_started")
    gate.touch()
    assert svc.finish() == 1
    failed = svc.find("task_failed")
    assert failed is not None and failed["task"] == "failer" and failed["level"] == "error"
    assert failed["exception"][0]["exc_value"] == "fail gate opened"
    assert svc.find("service_stopped")["exit_code"] == 1  # type: ignore[index]


@pytest.mark.parametrize("where", ["env", "file", "flag"])
def test_bad_setting_exits_2_naming_source(tmp_path: Path, start: Callable[..., ExampleProcess], where: str) -> None:
    cfg = tmp_path / "example.cfg"
    cfg.write_text("[global]\n# drain\nDrainTimeout = 1m30\n")
    env = {"EXAMPLE_HEALTHPORT": "abc"} if where == "env" else {}
    args = {"env": [], "file": ["-c", str(cfg)], "flag": ["--health-enabled=maybe"]}[where]
    svc = start(env, args)
    assert svc.finish() == 2
    invalid = svc.find("settings_invalid")
    assert invalid is not None and invalid["level"] == "error"
    expected = {
        "env": ("HealthPort", "environment variable EXAMPLE_HEALTHPORT"),
        "file": ("DrainTimeout", f"{cfg}:3"),
        "flag": ("HealthEnabled", "flag --health-enabled"),
    }[where]
    assert (invalid["param"], invalid["source"]) == expected
    assert svc.find("service_started") is None


def test_separate_metrics_port_config_file_and_sigint(tmp_path: Path, start: Callable[..., ExampleProcess]) -> None:
    with socket.socket() as probe:  # a free port for the metrics server
        probe.bind(("127.0.0.1", 0))
        metrics_port = probe.getsockname()[1]
    cfg = tmp_path / "example.cfg"
    cfg.write_text(f"[global]\nPrometheusMetricsEnabled = true\nPrometheusMetricsHost = 127.0.0.1\n"
                   f"PrometheusMetricsPort = {metrics_port}\nLogSeverityScreen = Debug\n")
    svc = start({"EXAMPLE_LOGSEVERITYSCREEN": "info"}, ["--config-file", str(cfg), "--health-port", "0"])
    svc.wait_event("service_started")
    servers = [e for e in list(svc.events) if e.get("event") == "status_server_started"]
    health = next(e for e in servers if e["health"])
    metrics = next(e for e in servers if e["metrics"])
    assert health is not metrics and metrics["port"] == metrics_port
    assert http_get(metrics_port, "/metrics")[0] == 200
    assert http_get(metrics_port, "/readiness")[0] == 404
    assert http_get(health["port"], "/metrics")[0] == 404
    wait_until(lambda: http_get(health["port"], "/readiness")[0] == 200, what="readiness")
    loaded = svc.find("settings_loaded")
    assert loaded is not None
    assert loaded["sources"]["PrometheusMetricsPort"] == f"{cfg}:4"
    assert loaded["sources"]["LogSeverityScreen"] == "environment variable EXAMPLE_LOGSEVERITYSCREEN"
    assert loaded["sources"]["HealthPort"] == "flag --health-port"
    assert loaded["settings"]["LogSeverityScreen"] == "Info"
    assert all(e["level"] != "debug" for e in list(svc.events))  # env beat the file's Debug
    svc.proc.send_signal(signal.SIGINT)
    assert svc.finish() == 0
    assert svc.find("signal_received")["signal"] == "SIGINT"  # type: ignore[index]
