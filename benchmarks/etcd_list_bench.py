"""Benchmark: 100,000 WorkloadEndpoints from etcd: bare aetcd read, EtcdBackend.list, felix syncer.

Starts its own etcd on loopback, writes ``--count`` valid WorkloadEndpoints
(~1 KB of JSON each), then times, in alternating rounds:

- ``bare``: a bare paginated Range read through aetcd's KV stub at one revision
  (values left undecoded), the floor;
- ``list``: ``EtcdBackend.list`` of the same prefix (pages decoded as they come);
- ``sync``: a felix syncer (its default watch mode for etcd: one list+watch per
  resource type) from start to in-sync, every endpoint validated and handed to a
  consumer that keeps a key → value view.

Each timed phase runs in a fresh child process so that its peak RSS is its own;
what every process does once at start-up (connecting, importing the resource
models) happens before the clock starts.
Reports the best and median wall time and the process CPU time of each, their
ratios to the bare read, and peak RSS. Run from the repository root::

    .venv/bin/python -m benchmarks.etcd_list_bench [--count 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aetcd import rpc

from libcalico.datastore.etcd import EtcdBackend
from libcalico.datastore.etcd_codec import range_end
from libcalico.datastore.etcd_connection import EtcdClient
from libcalico.resources.base import _ensure_loaded
from libcalico.syncer import SyncStatus, Update, fastpath, new_syncer
from tests.fixtures.etcd import ETCD_BINARY, etcd_cluster

PREFIX = "/calico/resources/v3/projectcalico.org/workloadendpoints/"
TXN_PUTS = 100  # etcd allows 128 operations per transaction by default
WRITERS = 8


def workload_endpoint(i: int) -> tuple[str, bytes]:
    """One WorkloadEndpoint as Calico stores it: its key and ~1 KB of JSON."""
    ns = f"ns{i % 50}"
    pod = f"frontend-{i:06d}-7d9c6b5f4-x{i % 997:03d}"
    node = f"node-{i % 500:03d}.cluster.example.com"
    name = f"{node.replace('-', '--')}-k8s-{pod.replace('-', '--')}-eth0"
    value: dict[str, Any] = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "generateName": "frontend-7d9c6b5f4-",
            "namespace": ns,
            "uid": str(uuid.UUID(int=i)),
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "labels": {
                "app": "frontend",
                "tier": "web",
                "version": f"v1.{i % 40}.0",
                "pod-template-hash": "7d9c6b5f4",
                "projectcalico.org/namespace": ns,
                "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": "default",
            },
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node,
            "containerID": hashlib.sha256(i.to_bytes(8, "big")).hexdigest(),
            "pod": pod,
            "endpoint": "eth0",
            "serviceAccountName": "default",
            "ipNetworks": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32"],
            "profiles": [f"kns.{ns}", f"ksa.{ns}.default"],
            "interfaceName": f"cali{i:011x}",
            "mac": f"ee:ee:ee:{(i >> 16) & 255:02x}:{(i >> 8) & 255:02x}:{i & 255:02x}",
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
        },
    }
    return f"{PREFIX}{ns}/{name}", json.dumps(value, separators=(",", ":")).encode()


def peak_rss_reset() -> None:
    """Reset the kernel's peak-RSS mark for this process (Linux ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def rss_mib(field: str) -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


async def write_all(client: EtcdClient, count: int) -> int:
    """Write ``count`` endpoints in transactions of TXN_PUTS puts, WRITERS at a time; return bytes."""
    written = 0
    queue: asyncio.Queue[int] = asyncio.Queue()
    for start in range(0, count, TXN_PUTS):
        queue.put_nowait(start)

    async def writer() -> None:
        nonlocal written
        while not queue.empty():
            start = queue.get_nowait()
            ops = []
            for i in range(start, min(count, start + TXN_PUTS)):
                key, data = workload_endpoint(i)
                written += len(data)
                ops.append(client.transactions.put(key.encode(), data))
            await client.transaction(compare=[], success=ops, failure=[])

    await asyncio.gather(*(writer() for _ in range(WRITERS)))
    return written


async def bare_read(client: EtcdClient, page_size: int) -> list[Any]:
    """Every key-value under PREFIX by raw Range pages at one revision, undecoded."""
    start, end = PREFIX.encode(), range_end(PREFIX.encode())
    revision = 0
    kvs: list[Any] = []
    while True:
        resp = await client.range(
            rpc.RangeRequest(key=start, range_end=end, limit=page_size, revision=revision)
        )
        revision = revision or resp.header.revision
        kvs.extend(resp.kvs)
        if not resp.more or not resp.kvs:
            return kvs
        start = resp.kvs[-1].key + b"\x00"


PHASES = ("bare", "list", "sync")


class ViewConsumer:
    """Syncer callbacks that keep the view (key → value) and note when the stream is in sync."""

    def __init__(self) -> None:
        self.view: dict[str, Any] = {}
        self.in_sync = asyncio.Event()

    def on_status(self, status: SyncStatus) -> None:
        """Note in-sync."""
        if status is SyncStatus.IN_SYNC:
            self.in_sync.set()

    def on_updates(self, updates: list[Update]) -> None:
        """Apply a batch to the view."""
        view = self.view
        for u in updates:
            if u.value is None:
                view.pop(u.key, None)
            else:
                view[u.key] = u.value


async def sync_all(backend: EtcdBackend, timeout: float) -> list[Any]:
    """Run a felix syncer until in-sync; return the values it delivered."""
    consumer = ViewConsumer()
    syncer = new_syncer("felix", backend, consumer)
    async with syncer:
        await asyncio.wait_for(consumer.in_sync.wait(), timeout)
    return list(consumer.view.values())


async def child_phase(
    phase: str, endpoints: str, page_size: int, expected: int
) -> dict[str, float]:
    """One timed read in this (fresh) process: seconds, peak RSS and RSS before, in MiB."""
    backend = EtcdBackend.from_env(
        {"ETCD_ENDPOINTS": endpoints}, request_timeout=60.0, page_size=page_size
    )
    client = EtcdClient(backend.config.endpoints[0], None, timeout=60)
    await client.connect()
    try:
        await backend.current_revision()  # connect before timing
        await client.range(rpc.RangeRequest(key=b"\x00", count_only=True))
        if phase == "sync":  # load the resource models now, as a service does at start-up
            _ensure_loaded()
            fastpath.enabled()
        gc.collect()
        before = rss_mib("VmRSS")
        peak_rss_reset()
        started, cpu = time.perf_counter(), time.process_time()
        if phase == "bare":
            result: list[Any] = await bare_read(client, page_size)
        elif phase == "list":
            result = (await backend.list(PREFIX)).items
        else:
            result = await sync_all(backend, 600.0)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = rss_mib("VmHWM")
        if len(result) != expected:
            raise SystemExit(f"{phase}: read {len(result)} of {expected} values")
        return {"seconds": elapsed, "cpu": cpu, "peak": peak, "before": before}
    finally:
        await client.close()
        await backend.close()


def run_child(
    args: argparse.Namespace, phase: str, endpoints: str, timeout: float
) -> dict[str, float]:
    """Run one phase in a child process and return what it measured."""
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.etcd_list_bench",
        "--child",
        phase,
        "--endpoints",
        endpoints,
        "--count",
        str(args.count),
        "--page-size",
        str(args.page_size),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{phase} child failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


async def write_phase(args: argparse.Namespace, endpoints: str) -> None:
    """Fill etcd with the endpoints and say how long it took."""
    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": endpoints})
    client = EtcdClient(backend.config.endpoints[0], None, timeout=60)
    await client.connect()
    try:
        t0 = time.perf_counter()
        size = await write_all(client, args.count)
        print(
            f"wrote {args.count} values, {size / args.count:.0f} B each on average,"
            f" in {time.perf_counter() - t0:.1f}s"
        )
    finally:
        await client.close()
        await backend.close()


def report(label: str, runs: list[dict[str, float]]) -> None:
    """One line per phase: best and median wall time, median CPU, worst peak RSS and its growth."""
    times = [r["seconds"] for r in runs]
    worst = max(runs, key=lambda r: r["peak"])
    print(
        f"{label:30s} best {min(times):6.2f}s  median {statistics.median(times):6.2f}s"
        f"  cpu {statistics.median(r['cpu'] for r in runs):5.2f}s"
        f"  peak RSS {worst['peak']:7.1f} MiB (+{worst['peak'] - worst['before']:.1f} MiB"
        f" over {worst['before']:.1f} MiB before)"
    )


def main() -> None:
    """Parse arguments, start etcd, run the benchmark within the time bound."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset of bare,list,sync")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="give up after this many seconds"
    )
    parser.add_argument("--child", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = asyncio.run(child_phase(args.child, args.endpoints, args.page_size, args.count))
        print(json.dumps(result))
        return
    deadline = time.monotonic() + args.timeout
    with etcd_cluster(1) as cluster:
        print(f"etcd {ETCD_BINARY} at {cluster.endpoints}")
        asyncio.run(asyncio.wait_for(write_phase(args, cluster.endpoints), args.timeout))
        phases = [p for p in PHASES if p in args.phases.split(",")]
        runs: dict[str, list[dict[str, float]]] = {phase: [] for phase in phases}
        for _ in range(args.rounds):
            for phase in phases:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"benchmark exceeded --timeout {args.timeout}s")
                runs[phase].append(run_child(args, phase, cluster.endpoints, left))
    labels = {"bare": "bare aetcd paginated Range", "list": "EtcdBackend.list",
              "sync": "felix syncer to in-sync"}
    for phase in phases:
        report(labels[phase], runs[phase])
    if "bare" not in runs:
        return
    bare = [r["seconds"] for r in runs["bare"]]
    for phase in [p for p in phases if p != "bare"]:
        mine = [r["seconds"] for r in runs[phase]]
        paired = [m / b for m, b in zip(mine, bare, strict=True)]  # the same round: the same load
        print(
            f"ratio {phase}/bare: best {min(mine) / min(bare):.2f}x,"
            f" median {statistics.median(mine) / statistics.median(bare):.2f}x,"
            f" per round {' '.join(f'{r:.2f}' for r in paired)} (median {statistics.median(paired):.2f}x)"
        )


if __name__ == "__main__":
    main()
