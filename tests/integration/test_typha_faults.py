"""Misbehaving clients against a real calico-typha: each closes only its own connection.

Malformed and fuzzed input, a missing hello, unanswered pings, and a client
that stops reading: the server drops that one connection (the last with
``bye: too-slow``) while a well-behaved client keeps receiving updates on time.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections.abc import Iterator

import pytest

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import SyncStatus, ViewCallbacks
from libcalico.typha.client import TyphaClient
from libcalico.typha.protocol import Bye, ByeReason, encode
from tests.unit.typha.harness import RawClient, TyphaProcess, async_wait_until, frame, hello
from tests.unit.typha.samples import global_policy, workload_endpoint


@pytest.fixture
def typhas() -> Iterator[list[TyphaProcess]]:
    started: list[TyphaProcess] = []
    yield started
    for t in started:
        t.kill()


MALFORMED = {
    "bad-length": struct.pack(">I", 0xFFFFFFF0) + b"xx",
    "bad-msgpack": struct.pack(">I", 3) + b"\xc1\xc1\xc1",
    "not-a-map": frame([1, 2, 3]),
    "wrong-field-type": frame({"type": "hello", "version": "1", "syncer": "felix", "node": "n"}),
    "missing-field": frame({"type": "hello", "version": 1, "node": "n"}),
    "frame-before-hello": frame({"type": "pong", "ts": 1.0}),
    "unknown-client-type": frame({"type": "kvs", "kvs": []}),
    "second-hello": hello("x") + hello("x"),
    "oversized-after-hello": hello("x") + frame({"type": "ping", "ts": 1.0, "pad": "x" * 100_000}),
    "unknown-syncer": frame({"type": "hello", "version": 1, "syncer": "nope", "node": "n", "client": ""}),
    "bad-version": frame({"type": "hello", "version": 7, "syncer": "felix", "node": "n", "client": ""}),
}


async def _healthy_client(typha: TyphaProcess) -> tuple[TyphaClient, ViewCallbacks]:
    view = ViewCallbacks()
    client = TyphaClient([typha.address], "felix", node="good", callbacks=view)
    client.start()
    await view.wait_for_status(SyncStatus.IN_SYNC, timeout=20)
    return client, view


async def test_malformed_and_fuzzed_input_closes_only_that_connection(
    sqlite_backend: SqliteBackend, sqlite_env: dict[str, str], typhas: list[TyphaProcess]
) -> None:
    for i in range(5):
        await sqlite_backend.create(*global_policy(i))
    typha = TyphaProcess(sqlite_env)
    typhas.append(typha)
    client, view = await _healthy_client(typha)
    try:
        for name, data in MALFORMED.items():
            raw = await RawClient.connect(typha.port)
            raw.writer.write(data)
            assert await raw.closed_by_server(timeout=10), f"{name}: connection left open"
            raw.close()
        rng = random.Random(4)
        for n in range(40):  # fuzz: random bytes, random valid-looking maps, truncated hellos
            kind = n % 3
            if kind == 0:
                data = rng.randbytes(rng.randint(1, 300))
            elif kind == 1:
                data = frame({rng.choice(["type", "ts", "x"]): rng.choice([1, "hello", None, [1], {"a": 1}])})
            else:
                whole = hello("fuzz")
                data = whole[: rng.randint(1, len(whole) - 1)] + rng.randbytes(rng.randint(1, 20))
            raw = await RawClient.connect(typha.port)
            raw.writer.write(data)
            raw.writer.write_eof()
            assert await raw.closed_by_server(timeout=10), f"fuzz case {n} left open: {data!r}"
            raw.close()
        # The server and the good client carried on throughout.
        key, value = global_policy(99)
        await sqlite_backend.create(key, value)
        await view.wait_for(lambda: key in view.view, 10, "update after the abuse")
        assert client.connections == 1
        assert typha.proc.poll() is None
        gone = typha.find_all("client_gone")
        reasons = {e["reason"] for e in gone}
        assert {"protocol-error", "refused"} <= reasons, reasons
    finally:
        await client.stop()


async def test_handshake_deadline_and_unanswered_pings(
    sqlite_backend: SqliteBackend, sqlite_env: dict[str, str], typhas: list[TyphaProcess]
) -> None:
    typha = TyphaProcess({**sqlite_env, "TYPHA_SERVERHANDSHAKETIMEOUTSECS": "1",
                          "TYPHA_SERVERPINGINTERVALSECS": "0.2", "TYPHA_SERVERPONGTIMEOUTSECS": "1"})
    typhas.append(typha)
    client, view = await _healthy_client(typha)
    try:
        silent = await RawClient.connect(typha.port)  # never says hello
        started = time.monotonic()
        assert await silent.closed_by_server(timeout=10)
        assert 0.8 < time.monotonic() - started < 5
        deaf = await RawClient.connect(typha.port)  # says hello, reads, never answers a ping
        deaf.writer.write(hello("deaf"))
        started = time.monotonic()
        for _ in range(10_000):
            data = await asyncio.wait_for(deaf.reader.read(1 << 16), 10)
            if not data:
                break
        assert time.monotonic() - started < 6
        # The good client answers its pings and is still connected.
        await asyncio.sleep(0)
        assert client.connections == 1
        key, value = global_policy(5)
        await sqlite_backend.create(key, value)
        await view.wait_for(lambda: key in view.view, 10)
        reasons = {e["reason"] for e in typha.find_all("client_gone")}
        assert {"handshake-timeout", "ping-timeout"} <= reasons, reasons
        assert typha.metric("typha_ping_latency_count", syncer="felix") > 0
    finally:
        await client.stop()


async def test_a_client_that_stops_reading_is_dropped_without_slowing_the_others(
    sqlite_backend: SqliteBackend, sqlite_env: dict[str, str], typhas: list[TyphaProcess]
) -> None:
    for i in range(300):
        await sqlite_backend.create(*workload_endpoint(i, f"node-{i % 10}"))
    typha = TyphaProcess({**sqlite_env, "TYPHA_SERVERMAXBACKLOGBYTES": "400000",
                          "TYPHA_SERVERMAXFALLBEHINDSECS": "30", "TYPHA_SERVERBATCHINTERVALSECS": "0.02"})
    typhas.append(typha)
    views = [ViewCallbacks() for _ in range(4)]
    clients = [TyphaClient([typha.address], "felix", node=f"node-{i}", callbacks=v) for i, v in enumerate(views)]
    for c in clients:
        c.start()
    for v in views:
        await v.wait_for_status(SyncStatus.IN_SYNC, timeout=20)

    # The slow client: a tiny receive buffer, a hello, then it never reads.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", typha.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.transport.pause_reading()
    writer.write(hello("slowpoke"))
    latencies: list[float] = []
    try:
        for round_no in range(60):  # ~600 KB of policy updates (never trimmed), each seen by every good client
            key, value = global_policy(round_no % 5)
            value["metadata"]["annotations"] = {"pad": "x" * 10_000, "round": str(round_no)}
            written = time.monotonic()
            await sqlite_backend.apply(key, value)
            for v in views:
                await v.wait_for(lambda v=v, key=key, r=round_no: v.view.get(key, {}).get("metadata", {})
                                 .get("annotations", {}).get("round") == str(r), 10, f"round {round_no}")
            latencies.append(time.monotonic() - written)
        dropped = await typha.await_event("client_dropped", timeout=15,
                                          where=lambda e: e.get("reason") == "too-slow")
        assert dropped["node"] == "slowpoke"
        # The slow client, reading at last, finds bye: too-slow at the end of what was sent to it.
        writer.transport.resume_reading()
        tail = b""
        for _ in range(100_000):
            data = await asyncio.wait_for(reader.read(1 << 20), 10)
            if not data:
                break
            tail = (tail + data)[-200:]
        assert tail.endswith(encode(Bye(ByeReason.TOO_SLOW)))
    finally:
        writer.close()
        for c in clients:
            await c.stop()
    latencies.sort()
    print(f"good clients' latency with a stalled peer: p50 {latencies[len(latencies) // 2]:.3f}s "
          f"max {latencies[-1]:.3f}s")
    assert latencies[-1] < 1.0  # the normal latency (batching + sqlite watch), never the stalled peer's
    assert all(c.connections == 1 for c in clients)
    assert await async_wait_until(lambda: typha.metric("typha_connections_dropped") >= 1, 5)
