"""Benchmark: one calico-typha fanning the felix stream out to 1,000 clients, versus direct etcd syncers.

Phases (loopback only; every wait bounded in time)::

    load      etcd on loopback ← 20,000 WorkloadEndpoints (20 per node), 2,000 policies, 1,000 Nodes
    typha     calico-typha on etcd; --clients lightweight protocol clients in --client-procs processes
              connect at once → time until every client is in sync, snapshot bytes per client
              (trimmed; plus a few clients of a second Typha with PerNodeFiltering=false)
    updates   --rate WorkloadEndpoint updates/s for --duration s, each carrying its write time in a
              label → delivery latency datastore write → every client (p50/p99), Typha CPU, peak RSS
    direct    --direct real felix syncers, each with its own etcd connection, in one process:
              time to sync, then the same update load; etcd's own metrics per phase give the
              datastore load per syncer, extrapolated to --clients and compared with Typha's

The clients parse frames by length only; they decode small frames (status, ping), count the
write-time labels in delta frames with a byte search and take the latency of the oldest update of
each frame for all of its updates (an upper bound), so that 1,000 of them fit beside Typha, etcd
and the writer on two cores. Run from the repository root::

    .venv/bin/python -m benchmarks.typha_fanout [--clients 1000] [--weps 20000] [--policies 2000]
        [--rate 200] [--duration 20] [--direct 10] [--client-procs 2]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import statistics
import struct
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgpack

from tests.unit.typha.harness import TyphaProcess, wait_until
from tests.unit.typha.samples import global_policy, node, workload_endpoint

REPO = Path(__file__).resolve().parents[1]
MARKER = b"\xa3bts\xb0"  # msgpack: the label key "bts", then a 16-character string (µs since the epoch)
_TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- client worker (a subprocess)


class BenchClient(asyncio.Protocol):
    """A Typha client that splits frames by length and only decodes the small ones."""

    def __init__(self, node_name: str, stats: WorkerStats) -> None:
        self.node = node_name
        self.stats = stats
        self.transport: Any = None
        self.header = bytearray()
        self.body = bytearray()
        self.remaining = -1  # -1: reading a header
        self.keep = False
        self.in_sync = False
        self.received = 0
        self.snapshot_bytes = 0
        self.started = time.monotonic()

    def connection_made(self, transport: Any) -> None:  # uvloop's transports are not asyncio.Transport
        self.transport = transport
        body = msgpack.packb({"type": "hello", "version": 1, "syncer": "felix", "node": self.node,
                              "client": "bench"})
        transport.write(struct.pack(">I", len(body)) + body)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        pos, n = 0, len(data)
        while pos < n:
            if self.remaining < 0:
                take = min(4 - len(self.header), n - pos)
                self.header += data[pos : pos + take]
                pos += take
                if len(self.header) == 4:
                    self.remaining = int.from_bytes(self.header, "big")
                    self.header.clear()
                    self.keep = self.in_sync or self.remaining < 256
                    self.body.clear()
                    if self.remaining == 0:
                        self.remaining = -1
                continue
            take = min(self.remaining, n - pos)
            if self.keep:
                self.body += data[pos : pos + take]
            pos += take
            self.remaining -= take
            if self.remaining == 0:
                self.remaining = -1
                if self.keep:
                    self.frame(bytes(self.body))

    def frame(self, body: bytes) -> None:
        count = body.count(MARKER)
        if count:
            # Every update of a batch arrives together; the oldest (the first, revision order) has the
            # longest latency, which is counted for all of them: an upper bound, at 1/batch the cost.
            idx = body.find(MARKER)
            written = int(body[idx + 5 : idx + 21]) / 1e6
            self.stats.latency(time.time() - written, count)
        if len(body) >= 256:
            return
        msg = msgpack.unpackb(body, raw=False)
        kind = msg.get("type")
        if kind == "ping" and self.transport is not None:
            pong = msgpack.packb({"type": "pong", "ts": msg["ts"]})
            self.transport.write(struct.pack(">I", len(pong)) + pong)
        elif kind == "status" and msg.get("status") == "in-sync" and not self.in_sync:
            self.in_sync = True
            self.snapshot_bytes = self.received
            self.stats.synced(self, time.monotonic() - self.started)
        elif kind == "bye":
            self.stats.byes += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.stats.lost += 1


class WorkerStats:
    """What one worker process measures."""

    def __init__(self) -> None:
        self.sync_times: list[float] = []
        self.snapshot_bytes: list[int] = []
        self.histogram: collections.Counter[int] = collections.Counter()
        self.lost = 0
        self.byes = 0
        self.all_synced = asyncio.Event()
        self.expected = 0

    def synced(self, client: BenchClient, seconds: float) -> None:
        self.sync_times.append(seconds)
        self.snapshot_bytes.append(client.snapshot_bytes)
        if len(self.sync_times) == self.expected:
            self.all_synced.set()

    def latency(self, seconds: float, count: int) -> None:
        self.histogram[int(seconds * 1000)] += count


async def client_worker(port: int, first: int, count: int) -> None:
    """Open ``count`` clients (nodes ``node-<first>`` …), report in-sync, then latency on 'stop'."""
    stats = WorkerStats()
    stats.expected = count
    loop = asyncio.get_running_loop()
    clients = []
    for i in range(first, first + count):
        _, proto = await loop.create_connection(lambda i=i: BenchClient(f"node-{i}", stats), "127.0.0.1", port)
        clients.append(proto)
    try:
        await asyncio.wait_for(stats.all_synced.wait(), 300)
    except TimeoutError:
        pass
    print(json.dumps({"phase": "synced", "synced": len(stats.sync_times), "max_sync": max(stats.sync_times, default=0),
                      "snapshot_bytes": stats.snapshot_bytes}), flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    assert line.strip() == "stop", line
    total = [c.received for c in clients]
    print(json.dumps({"phase": "done", "histogram": dict(stats.histogram), "received": total, "lost": stats.lost,
                      "byes": stats.byes}), flush=True)


# ---------------------------------------------------------------- direct syncers (a subprocess)


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
    assert line.strip() == "stop", line
    print(json.dumps({"phase": "done", "latencies": latencies}), flush=True)
    for s in syncers:
        await s.stop()
    for b in backends:
        await b.close()


# ---------------------------------------------------------------- the driver


def etcd_metrics(url: str) -> dict[str, float]:
    """The etcd counters that show datastore load."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as rsp:
        text = rsp.read().decode()
    wanted = {"etcd_network_client_grpc_sent_bytes_total": "sent_bytes",
              "etcd_network_client_grpc_received_bytes_total": "received_bytes",
              "etcd_debugging_mvcc_watcher_total": "watchers"}
    out: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        if name in wanted:
            out[wanted[name]] += float(value)
        elif name == "grpc_server_handled_total" and 'grpc_method="Range"' in head:
            out["range_requests"] += float(value)
    return dict(out)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def proc_peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def hist_percentile(hist: collections.Counter[int], q: float) -> float:
    total = sum(hist.values())
    seen = 0
    for ms in sorted(hist):
        seen += hist[ms]
        if seen >= q * total:
            return ms / 1000
    return float("nan")


async def load(endpoints: str, args: argparse.Namespace) -> list[tuple[str, dict[str, Any]]]:
    """Write the data set into etcd; return the endpoints (key, value) for the update phase."""
    from libcalico.datastore.etcd import EtcdBackend

    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": endpoints})
    nodes = args.clients
    weps = [workload_endpoint(i, f"node-{i % nodes}", namespace=f"ns{i % 50}") for i in range(args.weps)]
    items = weps + [global_policy(i) for i in range(args.policies)] + [node(f"node-{i}", i) for i in range(nodes)]
    sem = asyncio.Semaphore(64)

    async def put(key: str, value: dict[str, Any]) -> None:
        async with sem:
            await backend.apply(key, value)

    started = time.monotonic()
    for i in range(0, len(items), 2000):
        await asyncio.gather(*(put(k, v) for k, v in items[i : i + 2000]))
    print(f"loaded {len(items)} entries in {time.monotonic() - started:.1f}s", flush=True)
    await backend.close()
    return weps


async def write_updates(endpoints: str, weps: list[tuple[str, dict[str, Any]]], rate: float,
                        duration: float) -> int:
    """``rate`` updates/s for ``duration`` s, each WorkloadEndpoint label ``bts`` = the write time in µs."""
    from libcalico.datastore.etcd import EtcdBackend

    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": endpoints})
    rng = random.Random(7)
    count = int(rate * duration)
    started = time.monotonic()
    pending: set[asyncio.Task[Any]] = set()
    for n in range(count):
        due = started + n / rate
        pause = due - time.monotonic()
        if pause > 0:
            await asyncio.sleep(pause)
        key, value = weps[rng.randrange(len(weps))]
        value = json.loads(json.dumps(value))
        value["metadata"]["labels"]["bts"] = f"{int(time.time() * 1e6):016d}"
        task = asyncio.create_task(backend.apply(key, value))
        pending.add(task)
        task.add_done_callback(pending.discard)
    await asyncio.gather(*pending)
    await backend.close()
    return count


def spawn(args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "benchmarks.typha_fanout", *args], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def read_json(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    for _ in range(10_000):
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker exited {proc.wait()} without a result")
        if line.startswith("{"):
            return dict(json.loads(line))
        if time.monotonic() > deadline:
            break
    raise RuntimeError("worker gave no result in time")


def snapshot_bytes_untrimmed(env: dict[str, str], sample: int) -> list[int]:
    """Snapshot bytes for a few clients of a Typha with per-node filtering off."""
    full = TyphaProcess({**env, "TYPHA_PERNODEFILTERING": "false"})
    try:
        wait_until(lambda: full.http("/readiness")[0] == 200, 300, "untrimmed typha ready")
        worker = spawn(["--client-worker", "--port", str(full.port), "--first", "0", "--count", str(sample)])
        result = read_json(worker, 300)
        assert worker.stdin is not None
        worker.stdin.write("stop\n")
        worker.stdin.flush()
        read_json(worker, 60)
        worker.wait(30)
        return list(result["snapshot_bytes"])
    finally:
        full.terminate(60)


def run(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fixtures.etcd import etcd_cluster

    report: dict[str, Any] = {"clients": args.clients, "weps": args.weps, "policies": args.policies,
                              "rate": args.rate, "duration": args.duration, "batch_interval": args.batch_interval}
    with etcd_cluster(1) as cluster:
        member = cluster.members[0]
        endpoints = cluster.endpoints
        weps = asyncio.run(load(endpoints, args))
        env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": endpoints, "TYPHA_SHUTDOWNTIMEOUTSECS": "5",
               "TYPHA_SERVERPINGINTERVALSECS": "10", "TYPHA_SERVERBATCHINTERVALSECS": str(args.batch_interval)}
        # --- Typha
        m0 = etcd_metrics(member.metrics_url)
        typha = TyphaProcess(env)
        try:
            started = time.monotonic()
            wait_until(lambda: typha.http("/readiness")[0] == 200, 300, "typha in sync with etcd")
            report["typha_cache_sync_s"] = round(time.monotonic() - started, 2)
            pid = typha.proc.pid
            cpu0 = proc_cpu(pid)
            m1 = etcd_metrics(member.metrics_url)
            per = -(-args.clients // args.client_procs)
            started = time.monotonic()
            workers = [spawn(["--client-worker", "--port", str(typha.port), "--first", str(i * per),
                              "--count", str(min(per, args.clients - i * per))])
                       for i in range(args.client_procs) if i * per < args.clients]
            synced = [read_json(w, 400) for w in workers]
            report["all_in_sync_s"] = round(time.monotonic() - started, 2)
            report["clients_in_sync"] = sum(s["synced"] for s in synced)
            snap = [b for s in synced for b in s["snapshot_bytes"]]
            report["snapshot_bytes_per_client_trimmed"] = int(statistics.mean(snap)) if snap else 0
            cpu1 = proc_cpu(pid)
            report["typha_cpu_s_initial_fanout"] = round(cpu1 - cpu0, 2)
            report["typha_peak_rss_mib_after_fanout"] = round(proc_peak_rss_mib(pid), 1)
            m2 = etcd_metrics(member.metrics_url)
            t0 = time.monotonic()
            writes = asyncio.run(write_updates(endpoints, weps, args.rate, args.duration))
            elapsed = time.monotonic() - t0
            time.sleep(2.0)  # let the last updates arrive
            cpu2 = proc_cpu(pid)
            m3 = etcd_metrics(member.metrics_url)
            report["updates_written"] = writes
            report["typha_cpu_percent_during_updates"] = round(100 * (cpu2 - cpu1) / (elapsed + 2.0), 1)
            report["typha_peak_rss_mib"] = round(proc_peak_rss_mib(pid), 1)
            results = []
            for w in workers:
                assert w.stdin is not None
                w.stdin.write("stop\n")
                w.stdin.flush()
                results.append(read_json(w, 120))
                w.wait(60)
            hist: collections.Counter[int] = collections.Counter()
            total_bytes: list[int] = []
            for r in results:
                hist.update({int(k): v for k, v in r["histogram"].items()})
                total_bytes.extend(r["received"])
            report["deliveries"] = sum(hist.values())
            report["deliveries_expected"] = writes * args.clients
            report["latency_p50_s"] = hist_percentile(hist, 0.50)
            report["latency_p99_s"] = hist_percentile(hist, 0.99)
            report["latency_max_s"] = hist_percentile(hist, 1.0)
            report["bytes_per_client_total"] = int(statistics.mean(total_bytes)) if total_bytes else 0
            report["clients_lost"] = sum(r["lost"] for r in results)
            count = typha.metric("typha_client_latency_secs_count", syncer="felix")
            report["typha_side_mean_write_latency_s"] = round(
                typha.metric("typha_client_latency_secs_sum", syncer="felix") / max(1.0, count), 4)
            report["etcd_typha_sync"] = delta(m1, m0)
            report["etcd_typha_fanout"] = delta(m2, m1)
            report["etcd_typha_updates"] = delta(m3, m2)
        finally:
            typha.terminate(60)
        report["snapshot_bytes_per_client_untrimmed"] = int(statistics.mean(
            snapshot_bytes_untrimmed(env, 5)))
        # --- direct syncers
        if args.direct:
            d0 = etcd_metrics(member.metrics_url)
            started = time.monotonic()
            worker = spawn(["--direct-worker", "--endpoints", endpoints, "--count", str(args.direct)])
            res = read_json(worker, 700)
            report["direct_syncers"] = args.direct
            report["direct_in_sync"] = res["synced"]
            report["direct_all_in_sync_s"] = round(time.monotonic() - started, 2)
            d1 = etcd_metrics(member.metrics_url)
            direct_duration = min(args.duration, 10.0)
            writes = asyncio.run(write_updates(endpoints, weps, args.rate, direct_duration))
            time.sleep(2.0)
            d2 = etcd_metrics(member.metrics_url)
            assert worker.stdin is not None
            worker.stdin.write("stop\n")
            worker.stdin.flush()
            done = read_json(worker, 120)
            worker.wait(60)
            lat = done["latencies"]
            report["direct_latency_p50_s"] = round(percentile(lat, 0.5), 3)
            report["direct_latency_p99_s"] = round(percentile(lat, 0.99), 3)
            report["direct_deliveries"] = len(lat)
            report["direct_deliveries_expected"] = writes * args.direct
            report["etcd_direct_sync"] = delta(d1, d0)
            report["etcd_direct_updates"] = delta(d2, d1)
            report["direct_update_writes"] = writes
            summarise_load(report, args)
    return report


def summarise_load(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Datastore load per direct syncer, extrapolated to every client, against Typha's."""
    n = args.direct
    sync = report["etcd_direct_sync"]
    upd = report["etcd_direct_updates"]
    per_write = upd["sent_bytes"] / max(1, report["direct_update_writes"])
    typha_per_write = report["etcd_typha_updates"]["sent_bytes"] / max(1, report["updates_written"])
    report["load"] = {
        "direct_sync_bytes_per_syncer": int(sync["sent_bytes"] / n),
        "direct_range_requests_per_syncer": round(sync.get("range_requests", 0) / n, 1),
        "direct_update_bytes_per_write_per_syncer": int(per_write / n),
        "direct_watches_per_syncer": round((sync.get("watchers", 0) + upd.get("watchers", 0)) / n, 1),
        "typha_watches": report["etcd_typha_sync"].get("watchers", 0),
        "typha_sync_bytes": int(report["etcd_typha_sync"]["sent_bytes"]),
        "typha_range_requests": report["etcd_typha_sync"].get("range_requests", 0),
        "typha_update_bytes_per_write": int(typha_per_write),
        f"direct_sync_bytes_for_{args.clients}_clients": int(sync["sent_bytes"] / n * args.clients),
        f"direct_update_bytes_per_s_for_{args.clients}_clients": int(per_write / n * args.clients * args.rate),
        "typha_update_bytes_per_s": int(typha_per_write * args.rate),
    }
    report["load"]["sync_load_avoided_factor"] = round(
        report["load"][f"direct_sync_bytes_for_{args.clients}_clients"] / max(1, report["load"]["typha_sync_bytes"]), 1)
    report["load"]["update_load_avoided_factor"] = round(
        report["load"][f"direct_update_bytes_per_s_for_{args.clients}_clients"]
        / max(1, report["load"]["typha_update_bytes_per_s"]), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--weps", type=int, default=20000)
    parser.add_argument("--policies", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--direct", type=int, default=10)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--batch-interval", type=float, default=0.05, help="TYPHA_SERVERBATCHINTERVALSECS")
    parser.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--direct-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.client_worker:
        uvloop.run(client_worker(args.port, args.first, args.count))
        return
    if args.direct_worker:
        uvloop.run(direct_worker(args.endpoints, args.count))
        return
    report = run(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
