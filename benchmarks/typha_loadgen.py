"""Load generator for the Typha fan-out benchmark: many cheap protocol clients per process, and direct syncers.

How a client measures (see docs/typha.md, "Benchmark")::

    every client   reads every byte; walks the frame headers (counts frames, no body copy);
                   counts the write-time labels of the updates it receives (a byte search, exact
                   across read boundaries) → deliveries per client;
                   per read: the oldest update's write time (the first label in the read) counts
                   for every update of that read → an upper bound of each update's latency;
                   decodes only small frames (status, ping, bye), answers pings
    sampled client additionally msgpack-decodes every delta frame in full and takes every
                   update's own write time → exact per-update latency

Receive times are taken once per read (``data_received``), before any parsing, so
the client's own decode time is not counted; the write time is the writer's wall
clock in the update's ``bts`` label (µs since the epoch, 16 digits).
"""

from __future__ import annotations

import asyncio
import collections
import json
import struct
import sys
import time
from typing import Any

import msgpack

MARKER = b"\xa3bts\xb0"  # msgpack: the label key "bts", then a 16-character string (µs since the epoch)
_TS = len(MARKER) + 16  # marker plus its digits
_SMALL = 256  # frames below this are decoded by every client (status, ping, bye)


class WorkerStats:
    """What one worker process measures."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sync_times: list[float] = []
        self.snapshot_bytes: list[int] = []
        self.exact: collections.Counter[int] = collections.Counter()  # ms → updates (sampled clients)
        self.bound: collections.Counter[int] = collections.Counter()  # ms → updates (every client, per read)
        self.lost = 0
        self.byes = 0
        self.all_synced = asyncio.Event()

    def synced(self, client: BenchClient, seconds: float) -> None:
        self.sync_times.append(seconds)
        self.snapshot_bytes.append(client.snapshot_bytes)
        if len(self.sync_times) == self.expected:
            self.all_synced.set()


class BenchClient(asyncio.Protocol):
    """A Typha client that reads everything, counts frames and updates, and decodes as little as it can."""

    def __init__(self, node_name: str, stats: WorkerStats, *, sampled: bool) -> None:
        self.node = node_name
        self.stats = stats
        self.sampled = sampled
        self.transport: Any = None
        self.header = b""
        self.remaining = 0  # body bytes left of the current frame
        self.body: bytearray | None = None  # the current frame's body, when it is kept
        self.carry = b""  # the last bytes of the previous read (labels split between reads)
        self.in_sync = False
        self.received = 0
        self.frames = 0
        self.updates = 0  # labels counted after in-sync
        self.decoded = 0  # updates decoded in full (sampled clients)
        self.snapshot_bytes = 0
        self.started = time.monotonic()
        self._now = 0.0

    def connection_made(self, transport: Any) -> None:  # uvloop's transports are not asyncio.Transport
        self.transport = transport
        body = msgpack.packb({"type": "hello", "version": 1, "syncer": "felix", "node": self.node,
                              "client": "bench"})
        transport.write(struct.pack(">I", len(body)) + body)

    def data_received(self, data: bytes) -> None:
        now = self._now = time.time()
        self.received += len(data)
        if self.in_sync:
            self._count_labels(data, now)
        pos, n = 0, len(data)
        while pos < n:
            if self.remaining:
                take = min(self.remaining, n - pos)
                if self.body is not None:
                    self.body += data[pos : pos + take]
                pos += take
                self.remaining -= take
                if not self.remaining and self.body is not None:
                    body, self.body = bytes(self.body), None
                    self._frame(body)
                continue
            need = 4 - len(self.header)
            self.header += data[pos : pos + need]
            pos += need
            if len(self.header) < 4:
                break
            self.remaining = int.from_bytes(self.header, "big")
            self.header = b""
            self.frames += 1
            keep = self.remaining < _SMALL or (self.sampled and self.in_sync)
            self.body = bytearray() if keep else None

    def _count_labels(self, data: bytes, now: float) -> None:
        """Every client: count the labels in this read; the first one's age counts for all of them."""
        buf = self.carry + data
        count = buf.count(MARKER) - self.carry.count(MARKER)
        self.carry = buf[-(_TS - 1) :]
        if not count:
            return
        self.updates += count
        idx = buf.find(MARKER)
        while idx >= 0 and idx + _TS > len(buf):  # its digits are not all here yet: take the next one
            idx = buf.find(MARKER, idx + 1)
        if idx < 0:
            return
        written = int(buf[idx + len(MARKER) : idx + _TS]) / 1e6
        self.stats.bound[int((now - written) * 1000)] += count

    def _frame(self, body: bytes) -> None:
        if len(body) >= _SMALL:
            self._decode_updates(body)
            return
        msg = msgpack.unpackb(body, raw=False)
        kind = msg.get("type")
        if kind == "kvs":
            self._decode_updates(body, msg)
        elif kind == "ping" and self.transport is not None:
            pong = msgpack.packb({"type": "pong", "ts": msg["ts"]})
            self.transport.write(struct.pack(">I", len(pong)) + pong)
        elif kind == "status" and msg.get("status") == "in-sync" and not self.in_sync:
            self.in_sync = True
            self.snapshot_bytes = self.received
            self.stats.synced(self, time.monotonic() - self.started)
        elif kind == "bye":
            self.stats.byes += 1

    def _decode_updates(self, body: bytes, msg: dict[str, Any] | None = None) -> None:
        """Sampled clients: every update's own write time (exact latency)."""
        if not (self.sampled and self.in_sync):
            return
        msg = msg if msg is not None else msgpack.unpackb(body, raw=False)
        if msg.get("type") != "kvs":
            return
        now = self._now
        for _key, value, _rev in msg["kvs"]:
            bts = (((value or {}).get("metadata") or {}).get("labels") or {}).get("bts")
            if bts:
                self.decoded += 1
                self.stats.exact[int((now - int(bts) / 1e6) * 1000)] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.lost += 1


async def client_worker(port: int, first: int, count: int, sample_every: int) -> None:
    """Open ``count`` clients (nodes ``node-<first>`` …); report in-sync, then everything on 'stop'."""
    stats = WorkerStats(count)
    loop = asyncio.get_running_loop()
    clients: list[BenchClient] = []
    for i in range(first, first + count):
        sampled = sample_every > 0 and i % sample_every == 0
        _, proto = await loop.create_connection(
            lambda i=i, sampled=sampled: BenchClient(f"node-{i}", stats, sampled=sampled), "127.0.0.1", port)
        clients.append(proto)
    try:
        await asyncio.wait_for(stats.all_synced.wait(), 300)
    except TimeoutError:
        pass
    print(json.dumps({"phase": "synced", "synced": len(stats.sync_times),
                      "max_sync": max(stats.sync_times, default=0), "snapshot_bytes": stats.snapshot_bytes}),
          flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "stop":
        raise SystemExit(f"expected 'stop', got {line!r}")
    print(json.dumps({
        "phase": "done", "exact": dict(stats.exact), "bound": dict(stats.bound),
        "received": [c.received for c in clients], "updates": [c.updates for c in clients],
        "frames": [c.frames for c in clients], "sampled": sum(c.sampled for c in clients),
        "decoded": sum(c.decoded for c in clients), "sampled_counted": sum(c.updates for c in clients if c.sampled),
        "lost": stats.lost, "byes": stats.byes}), flush=True)


async def direct_worker(endpoints: str, count: int) -> None:
    """``count`` felix syncers straight on etcd, each with its own connection; report sync time and latency."""
    from libcalico.datastore.etcd import EtcdBackend
    from libcalico.syncer import SyncStatus, new_syncer

    latencies: list[float] = []
    synced: list[float] = []
    started = time.monotonic()
    done = asyncio.Event()

    class Counting:
        def __init__(self) -> None:
            self.in_sync = False

        def on_status(self, status: SyncStatus) -> None:
            if status is SyncStatus.IN_SYNC and not self.in_sync:
                self.in_sync = True
                synced.append(time.monotonic() - started)
                if len(synced) == count:
                    done.set()

        def on_updates(self, updates: list[Any]) -> None:
            if not self.in_sync:
                return
            now = time.time()
            for u in updates:
                bts = ((u.value or {}).get("metadata") or {}).get("labels", {}).get("bts")
                if bts:
                    latencies.append(now - int(bts) / 1e6)

    backends = [EtcdBackend.from_env({"ETCD_ENDPOINTS": endpoints}) for _ in range(count)]
    syncers = [new_syncer("felix", b, Counting()) for b in backends]
    for s in syncers:
        s.start()
    try:
        await asyncio.wait_for(done.wait(), 600)
    except TimeoutError:
        pass
    print(json.dumps({"phase": "synced", "synced": len(synced), "max_sync": max(synced, default=0)}), flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    if line.strip() != "stop":
        raise SystemExit(f"expected 'stop', got {line!r}")
    print(json.dumps({"phase": "done", "latencies": latencies}), flush=True)
    for s in syncers:
        await s.stop()
    for b in backends:
        await b.close()
