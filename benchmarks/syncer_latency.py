"""Benchmark: write → syncer callback latency, on etcd and on sqlite.

For each backend a felix syncer (the backend's default watch mode) runs with a
consumer that notes when each key arrives; a writer with its own connection
(its own backend object, as calicoctl or another service would be) then makes
``--count`` writes one at a time: create, update or delete of ~1 KB
WorkloadEndpoints, each waited for at the consumer before the next. Reported
per backend: the latency from the start of the write call to the callback
(p50, p90, p99, max), and, for comparison, how long the write call itself took.
The syncer validates every value on the way (the WorkloadEndpoint fast path).
sqlite sees another connection's writes by polling (``poll_interval``, 15 ms), so
it is measured twice: writer on its own connection (``sqlite``), and writing
through the syncer's own backend object, which wakes its watches at once
(``sqlite*``).

Run from the repository root (it starts its own etcd on loopback and uses a
temporary sqlite file)::

    .venv/bin/python -m benchmarks.syncer_latency [--count 2000] [--backends etcd,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libcalico.datastore.backend import Backend
from libcalico.datastore.etcd import EtcdBackend
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import SyncStatus, Update, new_syncer
from tests.fixtures.etcd import etcd_cluster

PREFIX = "/calico/resources/v3/projectcalico.org/workloadendpoints/"
WAIT = 10.0


def workload_endpoint(i: int, version: int = 0, ns: str = "bench") -> tuple[str, dict[str, Any]]:
    """A WorkloadEndpoint as the CNI plugin writes one (~1 KB of JSON), in namespace ``ns``."""
    name = f"node--{i % 50}-k8s-web--{i:06d}-eth0"
    return f"{PREFIX}{ns}/{name}", {
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": ns, "uid": f"00000000-0000-0000-0000-{i:012d}",
                     "creationTimestamp": "2024-05-01T12:00:00Z",
                     "labels": {"app": "web", "version": f"v{version}", "projectcalico.org/namespace": ns,
                                "projectcalico.org/orchestrator": "k8s",
                                "projectcalico.org/serviceaccount": "default"}},
        "spec": {"orchestrator": "k8s", "node": f"node-{i % 50}", "pod": f"web-{i:06d}", "endpoint": "eth0",
                 "containerID": f"{i:08x}" * 8, "serviceAccountName": "default",
                 "ipNetworks": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32"],
                 "profiles": [f"kns.{ns}", f"ksa.{ns}.default"], "interfaceName": f"cali{i:011x}",
                 "mac": "ee:ee:ee:ee:ee:ee", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}]},
    }


class Arrivals:
    """Syncer callbacks that note when each key's update arrives and wake whoever waits for it."""

    def __init__(self) -> None:
        self.in_sync = asyncio.Event()
        self._waiting: dict[str, tuple[Callable[[Update], bool], asyncio.Future[float]]] = {}

    def on_status(self, status: SyncStatus) -> None:
        """Note in-sync."""
        if status is SyncStatus.IN_SYNC:
            self.in_sync.set()

    def on_updates(self, updates: list[Update]) -> None:
        """Resolve the wait for any key that arrived."""
        now = time.perf_counter()
        for u in updates:
            waiter = self._waiting.get(u.key)
            if waiter is not None and waiter[0](u) and not waiter[1].done():
                waiter[1].set_result(now)

    def expect(self, key: str, match: Callable[[Update], bool]) -> asyncio.Future[float]:
        """A future that gets the arrival time of the next update of ``key`` that ``match`` accepts."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[key] = (match, future)
        return future


def same_value(value: dict[str, Any]) -> Callable[[Update], bool]:
    """A match for the update that carries ``value``."""
    return lambda u: u.value == value


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def measure(name: str, reader: Backend, writer: Backend, count: int, ns: str = "bench"
                  ) -> dict[str, list[float]]:
    """Run the syncer on ``reader`` and time ``count`` writes through ``writer``; return latencies in ms."""
    arrivals = Arrivals()
    latency: list[float] = []
    call: list[float] = []
    live: set[int] = set()
    pool = max(1, count // 4)  # each endpoint is created, then updated, now and then deleted
    async with new_syncer("felix", reader, arrivals):
        await asyncio.wait_for(arrivals.in_sync.wait(), WAIT)
        for n in range(count):
            i = n % pool
            key, value = workload_endpoint(i, n, ns)
            if i in live and n % 7 == 6:
                done = arrivals.expect(key, lambda u: u.value is None)
                start = time.perf_counter()
                await writer.delete(key)
                live.discard(i)
            else:
                done = arrivals.expect(key, same_value(value))
                start = time.perf_counter()
                if i in live:
                    await writer.update(key, value)
                else:
                    await writer.create(key, value)
                    live.add(i)
            written = time.perf_counter()
            arrived = await asyncio.wait_for(done, WAIT)
            call.append(1000 * (written - start))
            latency.append(1000 * (arrived - start))
    print(f"{name:7s} write→callback p50 {percentile(latency, 50):6.2f} ms  p90 {percentile(latency, 90):6.2f}"
          f"  p99 {percentile(latency, 99):6.2f}  max {max(latency):6.2f}  mean {statistics.mean(latency):6.2f}"
          f"   (write call alone: p50 {percentile(call, 50):5.2f} ms, p99 {percentile(call, 99):5.2f})")
    return {"latency": latency, "call": call}


async def run(args: argparse.Namespace) -> None:
    """Measure each backend asked for."""
    backends = args.backends.split(",")
    if "etcd" in backends:
        with etcd_cluster(1) as cluster:
            env = cluster.env()
            reader: Backend = EtcdBackend.from_env(env)
            writer: Backend = EtcdBackend.from_env(env)
            try:
                await measure("etcd", reader, writer, args.count)
            finally:
                await reader.close()
                await writer.close()
    if "sqlite" in backends:
        with tempfile.TemporaryDirectory(prefix="calico-bench-") as tmp:
            path = str(Path(tmp) / "calico.db")
            reader, writer = SqliteBackend(path), SqliteBackend(path)
            try:
                await measure("sqlite", reader, writer, args.count)
                # Writes through the watching backend object wake its watches at once (no poll).
                await measure("sqlite*", reader, reader, args.count, ns="bench-same")
            finally:
                await reader.close()
                await writer.close()


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=2000, help="writes per backend")
    parser.add_argument("--backends", default="etcd,sqlite", help="comma-separated: etcd, sqlite")
    args = parser.parse_args()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
