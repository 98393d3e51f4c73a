"""Running real calico-typha processes in tests: start, read their JSON logs, probe, stop.

Ports are never fixed: Typha listens on port 0 and the tests read the bound
ports from its ``typha_listening`` and ``status_server_started`` log lines.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import msgpack

REPO = Path(__file__).resolve().parents[3]
T = TypeVar("T")


def wait_until(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy, or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(1_000_000):
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def async_wait_until(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition") -> T:
    """``wait_until`` for coroutines: polls without blocking the event loop."""
    deadline = time.monotonic() + timeout
    for _ in range(1_000_000):
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TyphaProcess:
    """One calico-typha subprocess (``python -m services.typha``), its stderr parsed as JSON lines."""

    def __init__(self, env: dict[str, str], args: list[str] | None = None) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.upper().startswith(("TYPHA_", "DATASTORE_",
                                                                                       "CALICO_DB", "ETCD_"))}
        full_env.update({"TYPHA_SERVERHOST": "127.0.0.1", "TYPHA_SERVERPORT": "0", "TYPHA_HEALTHENABLED": "true",
                         "TYPHA_HEALTHHOST": "127.0.0.1", "TYPHA_HEALTHPORT": "0",
                         "TYPHA_PROMETHEUSMETRICSENABLED": "true", "TYPHA_PROMETHEUSMETRICSHOST": "127.0.0.1",
                         "TYPHA_PROMETHEUSMETRICSPORT": "0", "TYPHA_SHUTDOWNTIMEOUTSECS": "3"})
        full_env.update(env)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.typha", *(args or [])], cwd=REPO, env=full_env,
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

    def find_all(self, name: str) -> list[dict[str, Any]]:
        """Every log event with this name so far."""
        with self._lock:
            return [e for e in self.events if e.get("event") == name]

    def wait_event(self, name: str, timeout: float = 20.0, where: Callable[[dict[str, Any]], bool] | None = None
                   ) -> dict[str, Any]:
        """The first event ``name`` (matching ``where``); fails if the process exits first."""

        def check() -> dict[str, Any] | None:
            found = [e for e in self.find_all(name) if where is None or where(e)]
            if not found and self.proc.poll() is not None:
                raise AssertionError(f"typha exited {self.proc.returncode} before {name!r}: "
                                     f"{[e.get('event') for e in self.events][-30:]}")
            return found[0] if found else None

        return wait_until(check, timeout, f"typha log event {name!r}")

    async def await_event(self, name: str, timeout: float = 20.0,
                          where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
        """``wait_event`` without blocking the test's event loop."""

        def check() -> dict[str, Any] | None:
            found = [e for e in self.find_all(name) if where is None or where(e)]
            return found[0] if found else None

        return await async_wait_until(check, timeout, f"typha log event {name!r}")

    @property
    def port(self) -> int:
        return int(self.wait_event("typha_listening")["port"])

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def status_port(self) -> int:
        return int(self.wait_event("status_server_started")["port"])

    def http(self, path: str) -> tuple[int, str]:
        """Status and body of a GET on the health/metrics server."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.status_port}{path}", timeout=5) as rsp:
                return rsp.status, rsp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of one metric's samples with these labels (0 when absent)."""
        _, text = self.http("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            head, _, value = line.rpartition(" ")
            if head.split("{", 1)[0] != name:
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.proc.stderr is not None:
            self._reader.join(timeout=5)
            self.proc.stderr.close()


def frame(payload: Any) -> bytes:
    """One protocol frame holding ``payload`` (any msgpack value)."""
    body = msgpack.packb(payload, use_bin_type=True)
    return struct.pack(">I", len(body)) + body


def hello(node: str, syncer: str = "felix") -> bytes:
    """A client hello frame."""
    return frame({"type": "hello", "version": 1, "syncer": syncer, "node": node, "client": "test"})


class RawClient:
    """A hand-driven protocol client: sends bytes as told, decodes frames, counts bytes received."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = 0
        self._buf = b""

    @classmethod
    async def connect(cls, port: int, **kwargs: Any) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, **kwargs)
        return cls(reader, writer)

    async def next_message(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """The next frame's map, or None at EOF."""
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            if len(self._buf) >= 4:
                (n,) = struct.unpack(">I", self._buf[:4])
                if len(self._buf) >= 4 + n:
                    body, self._buf = self._buf[4 : 4 + n], self._buf[4 + n :]
                    msg = msgpack.unpackb(body, raw=False)
                    if msg.get("type") == "ping":
                        self.writer.write(frame({"type": "pong", "ts": msg["ts"]}))
                    return dict(msg)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no message in time")
            data = await asyncio.wait_for(self.reader.read(1 << 20), remaining)
            if not data:
                return None
            self.received += len(data)
            self._buf += data
        return None

    async def until(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10.0) -> dict[str, Any]:
        """Read messages until one satisfies ``predicate``; fail at EOF or timeout."""
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            msg = await self.next_message(max(0.01, deadline - time.monotonic()))
            if msg is None:
                raise AssertionError("connection closed before the expected message")
            if predicate(msg):
                return msg
        raise AssertionError("unreachable")

    async def closed_by_server(self, timeout: float = 10.0) -> bool:
        """Read (answering pings) until EOF; True when the server closed the connection in time."""
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            try:
                msg = await self.next_message(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return False
            except ConnectionError:
                return True
            if msg is None:
                return True
        return False

    def close(self) -> None:
        self.writer.close()
