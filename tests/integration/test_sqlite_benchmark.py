"""How fast the sqlite datastore is here, with floors far below what it does, so a regression fails.

Prints its numbers; run alone with
``.venv/bin/pytest tests/integration/test_sqlite_benchmark.py -q -s``.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from libcalico.datastore.backend import WatchEvent
from libcalico.datastore.sqlite import SqliteBackend

K = "/calico/resources/v3/projectcalico.org/globalnetworksets/"


def val(n: int) -> dict[str, object]:
    return {"kind": "GlobalNetworkSet", "metadata": {"name": f"s{n}", "labels": {"n": str(n)}},
            "spec": {"nets": [f"10.{n // 256 % 256}.{n % 256}.0/24"]}}


async def test_write_read_and_list_rates(sqlite_backend: SqliteBackend) -> None:
    count = 1000
    began = time.perf_counter()
    for n in range(count):
        await sqlite_backend.create(f"{K}s{n:05d}", val(n))
    writes = count / (time.perf_counter() - began)

    began = time.perf_counter()
    latencies = []
    for n in range(0, count, 2):
        t0 = time.perf_counter()
        await sqlite_backend.get(f"{K}s{n:05d}")
        latencies.append(time.perf_counter() - t0)
    reads = (count // 2) / (time.perf_counter() - began)

    began = time.perf_counter()
    listing = await sqlite_backend.list(K)
    list_time = time.perf_counter() - began
    assert len(listing.items) == count

    print(f"sequential creates {writes:.0f}/s (synchronous=FULL); gets {reads:.0f}/s, p50"
          f" {statistics.median(latencies) * 1e3:.2f} ms; list of {count} in {list_time * 1e3:.1f} ms")
    assert writes > 100 and reads > 500 and list_time < 1.0


async def test_concurrent_writers_keep_the_event_loop_responsive(sqlite_backend: SqliteBackend) -> None:
    tasks, each = 8, 100
    lags: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        for _ in range(100_000):
            if done.is_set():
                return
            t0 = time.monotonic()
            await asyncio.sleep(0.002)
            lags.append(time.monotonic() - t0 - 0.002)

    async def writer(w: int) -> None:
        for n in range(each):
            await sqlite_backend.apply(f"{K}w{w}-{n % 10}", val(n))

    tick = asyncio.create_task(ticker())
    began = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(tasks)))
    rate = tasks * each / (time.perf_counter() - began)
    done.set()
    await tick
    lags.sort()
    p95 = lags[int(len(lags) * 0.95)]
    print(f"{tasks} concurrent writers: {rate:.0f} writes/s; event-loop lag p95 {p95 * 1e3:.1f} ms,"
          f" worst {lags[-1] * 1e3:.1f} ms (the machine's other load shows here too)")
    assert rate > 100 and p95 < 0.05


async def test_local_watch_latency_and_idle_cost(sqlite_backend: SqliteBackend) -> None:
    start = await sqlite_backend.current_revision()
    got: list[tuple[WatchEvent, float]] = []
    arrived = asyncio.Event()

    async def watch() -> None:
        async for event in sqlite_backend.watch(K, start):
            got.append((event, time.perf_counter()))
            arrived.set()

    watcher = asyncio.create_task(watch())
    delays = []
    try:
        for n in range(100):
            arrived.clear()
            t0 = time.perf_counter()
            kv = await sqlite_backend.apply(K + "hot", val(n))
            async with asyncio.timeout(5):
                await arrived.wait()
            assert got[-1][0].revision == kv.revision
            delays.append(got[-1][1] - t0)
        # The cost of one idle watch: the poller looks for other processes' writes every 15 ms.
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(1.0)  # measuring a time window, not waiting for a condition
        idle = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    delays.sort()
    print(f"local write-to-event: median {statistics.median(delays) * 1e3:.2f} ms, p99 {delays[98] * 1e3:.2f} ms;"
          f" idle watcher CPU {idle * 100:.1f}% of a core")
    assert statistics.median(delays) < 0.02 and idle < 0.15
