"""The sqlite datastore shared by several processes: creation races, crashes, locks, cross-process watches."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libcalico.datastore.backend import EventType, WatchEvent
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.errors import Unavailable

K = "/calico/resources/v3/projectcalico.org/globalnetworksets/"

WRITER = r"""
import asyncio, json, sys, time
from libcalico.datastore.sqlite import SqliteBackend

async def main(path, me, count, pause):
    async with SqliteBackend(path) as backend:
        for n in range(count):
            kv = await backend.create(f"{sys.argv[5]}{me}-{n}", {"n": n, "by": me})
            print(json.dumps({"key": kv.key, "revision": kv.revision, "at": time.time()}), flush=True)
            if pause:
                await asyncio.sleep(pause)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])))
"""

LOCKER = r"""
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("COMMIT")
print("released", flush=True)
"""


def acks_in(out: str) -> list[dict[str, Any]]:
    """The JSON acknowledgement lines a writer printed (other lines are logs)."""
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def spawn(*args: str, stdin: bool = False) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", *args,
        stdin=asyncio.subprocess.PIPE if stdin else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def finish(procs: list[asyncio.subprocess.Process], timeout: float = 120) -> list[str]:
    """Wait for every process, killing leftovers; return their stdout, failing on a non-zero exit."""
    try:
        async with asyncio.timeout(timeout):
            results = [await p.communicate() for p in procs]
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()
    for p, (_, err) in zip(procs, results, strict=True):
        assert p.returncode == 0, f"child failed ({p.returncode}): {err.decode()[-2000:]}"
    return [out.decode() for out, _ in results]


class LoopLag:
    """Measures how late the event loop wakes a 5 ms timer while something else runs."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        for _ in range(100_000):
            before = time.monotonic()
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, time.monotonic() - before - 0.005)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def test_processes_creating_one_new_file_at_once_all_succeed(sqlite_db_path: str) -> None:
    racers, each = 4, 25
    procs = [await spawn(WRITER, sqlite_db_path, str(i), str(each), "0", K) for i in range(racers)]
    outputs = await finish(procs)
    acks = [a for out in outputs for a in acks_in(out)]
    assert len(acks) == racers * each
    assert sorted(a["revision"] for a in acks) == list(range(1, racers * each + 1))
    async with SqliteBackend(sqlite_db_path) as backend:
        listing = await backend.list(K)
        assert len(listing.items) == racers * each and listing.revision == racers * each
        assert {kv.key: kv.revision for kv in listing.items} == {a["key"]: a["revision"] for a in acks}


async def test_acknowledged_writes_survive_the_writer_being_killed(sqlite_db_path: str) -> None:
    proc = await spawn(WRITER, sqlite_db_path, "0", "100000", "0", K)
    acks: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            while len(acks) < 200:
                line = await proc.stdout.readline()
                assert line, "writer exited early"
                acks.extend(acks_in(line.decode()))
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    async with SqliteBackend(sqlite_db_path) as backend:
        for ack in acks:
            kv = await backend.get(ack["key"])
            assert kv.revision == ack["revision"]
        assert await backend.current_revision() >= acks[-1]["revision"]
        await backend.create(K + "after-crash", {"n": -1})


async def test_a_watch_sees_another_process_writes_promptly(sqlite_db_path: str) -> None:
    count = 40
    async with SqliteBackend(sqlite_db_path) as backend:
        start = await backend.current_revision()
        received: list[tuple[WatchEvent, float]] = []

        async def watch() -> None:
            stream: AsyncIterator[WatchEvent] = backend.watch(K, start)
            async for event in stream:
                received.append((event, time.time()))
                if len(received) >= count:
                    return

        watcher = asyncio.create_task(watch())
        out = await finish([await spawn(WRITER, sqlite_db_path, "7", str(count), "0.02", K)])
        async with asyncio.timeout(10):
            await watcher
    acks = acks_in(out[0])
    assert [(e.key, e.revision) for e, _ in received] == [(a["key"], a["revision"]) for a in acks]
    assert all(e.type is EventType.PUT for e, _ in received)
    delays = sorted(at - ack["at"] for (_, at), ack in zip(received, acks, strict=True))
    print(f"cross-process watch delay: median {statistics.median(delays) * 1000:.1f} ms,"
          f" max {delays[-1] * 1000:.1f} ms")
    assert statistics.median(delays) < 0.1 and delays[-1] < 0.5


async def test_a_locked_database_stalls_neither_the_event_loop_nor_reads(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path, busy_timeout=0.5) as backend:
        await backend.create(K + "a", {"n": 1})
        locker = await spawn(LOCKER, sqlite_db_path, stdin=True)
        try:
            assert locker.stdout is not None and locker.stdin is not None
            async with asyncio.timeout(30):
                assert (await locker.stdout.readline()).strip() == b"locked"
            async with LoopLag() as lag:
                write = asyncio.create_task(backend.update(K + "a", {"n": 2}))
                began = time.monotonic()
                assert (await backend.get(K + "a")).value == {"n": 1}
                read_time = time.monotonic() - began
                with pytest.raises(Unavailable, match="busy"):
                    await write
                waited = time.monotonic() - began
            print(f"read during lock {read_time * 1000:.1f} ms; busy write gave up after {waited:.2f} s;"
                  f" worst loop lag {lag.worst * 1000:.1f} ms")
            # Were sqlite calls made on the loop, it would stall for the whole 0.5 s busy wait.
            assert read_time < 0.25 and waited >= 0.45 and lag.worst < 0.25
            locker.stdin.write(b"go\n")
            await locker.stdin.drain()
            async with asyncio.timeout(30):
                assert (await locker.stdout.readline()).strip() == b"released"
        finally:
            if locker.returncode is None:
                locker.kill()
            await locker.wait()
        assert (await backend.update(K + "a", {"n": 3})).value == {"n": 3}


async def test_a_write_waits_for_a_lock_held_briefly_and_then_succeeds(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path, busy_timeout=20) as backend:
        await backend.create(K + "a", {"n": 1})
        locker = await spawn(LOCKER, sqlite_db_path, stdin=True)
        try:
            assert locker.stdout is not None and locker.stdin is not None
            async with asyncio.timeout(30):
                assert (await locker.stdout.readline()).strip() == b"locked"
            write = asyncio.create_task(backend.update(K + "a", {"n": 2}))
            for _ in range(20):  # a round trip through the reader thread each time
                await backend.get(K + "a")
            assert not write.done(), "write finished while another process held the write lock"
            locker.stdin.write(b"go\n")
            await locker.stdin.drain()
            async with asyncio.timeout(30):
                kv = await write
            assert kv.value == {"n": 2} and kv.revision == 2
        finally:
            if locker.returncode is None:
                locker.kill()
            await locker.wait()
    raw = sqlite3.connect(sqlite_db_path)
    try:
        assert raw.execute("SELECT value FROM calico_kv").fetchone()[0] == '{"n":2}'
    finally:
        raw.close()
