"""Benchmark: one shared watch versus one watch per resource type, for the felix syncer on each backend.

Per backend and watch mode: ``--count`` GlobalNetworkSet creates, each followed by
a felix-status write the felix stream does not carry, timed until the last one
reaches the consumer (wall and process CPU: on 2 shared cores CPU is the figure
to compare); then a snapshot of ``--count`` NetworkPolicies plus the network
sets, timed from a fresh syncer's start to in-sync. The measurements behind the
default mode of each backend (libcalico/syncer/plan.py). Run from the
repository root (it starts its own etcd and uses temporary sqlite files)::

    .venv/bin/python -m benchmarks.syncer_watch_modes [--count 1000] [--backends etcd,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from libcalico.datastore.backend import Backend
from libcalico.datastore.etcd import EtcdBackend
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import RetryPolicy, Syncer, SyncStatus, ViewCallbacks, WatchMode, syncer_spec
from tests.fixtures.etcd import etcd_cluster

R = RESOURCE_ROOT
TIMEOUT = 600.0


def netset(name: str, i: int) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": name},
            "spec": {"nets": [f"10.{i // 250}.{i % 250}.0/24"]}}


def policy(name: str) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "ns1"},
            "spec": {"selector": "app == 'a'", "ingress": [{"action": "Allow", "source": {"selector": "r == 'x'"}}]}}


async def one_case(name: str, store: Backend, mode: WatchMode, count: int) -> None:
    """Deltas then a snapshot through one watch mode on one (empty) store; print one line."""
    view = ViewCallbacks()
    retry = RetryPolicy(initial=0.05, maximum=1.0)
    async with Syncer(store, syncer_spec("felix"), view, mode=mode, retry=retry):
        await view.wait_for_status(SyncStatus.IN_SYNC)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(count):
            await store.create(f"{R}globalnetworksets/s{i}", netset(f"s{i}", i))
            await store.create(f"/calico/felix/v2/no-region/host/h{i}/status", {"time": i})
        await view.wait_for(lambda: len(view.view) == count, timeout=TIMEOUT, what=f"{count} network sets")
        delta_wall, delta_cpu = time.perf_counter() - wall, time.process_time() - cpu
        for i in range(count):
            await store.create(f"{R}networkpolicies/ns1/p{i}", policy(f"p{i}"))
    snap = ViewCallbacks()
    wall = time.perf_counter()
    async with Syncer(store, syncer_spec("felix"), snap, mode=mode, retry=retry):
        await snap.wait_for_status(SyncStatus.IN_SYNC, timeout=TIMEOUT)
        snap_wall = time.perf_counter() - wall
    if len(snap.view) != 2 * count or snap.anomalies or view.anomalies:
        raise SystemExit(f"{name} {mode.value}: wrong stream: {len(snap.view)} keys, "
                         f"anomalies {snap.anomalies + view.anomalies}")
    print(f"{name:6s} {mode.value:8s}: {count} deltas {delta_wall:6.2f}s wall {delta_cpu:6.2f}s cpu"
          f" ({1e6 * delta_wall / count:5.0f} us each, writes included); snapshot of {2 * count} {snap_wall:5.2f}s")


@asynccontextmanager
async def fresh_store(kind: str, endpoints: str, tmp: Path, case: int) -> AsyncIterator[Backend]:
    """An empty store of ``kind``: a new sqlite file, or etcd with ``/calico/`` deleted."""
    store: Backend
    if kind == "sqlite":
        store = SqliteBackend(str(tmp / f"calico-{case}.db"))
    else:
        store = EtcdBackend.from_env({"ETCD_ENDPOINTS": endpoints})
        for kv in (await store.list("/calico/")).items:
            await store.delete(kv.key)
    try:
        yield store
    finally:
        await store.close()


async def run(args: argparse.Namespace, endpoints: str, tmp: Path) -> None:
    """Every backend asked for, in both modes."""
    case = 0
    for kind in args.backends.split(","):
        for mode in (WatchMode.SHARED, WatchMode.PER_TYPE):
            case += 1
            async with fresh_store(kind, endpoints, tmp, case) as store:
                await one_case(kind, store, mode, args.count)


def main() -> None:
    """Parse arguments, start etcd when asked for, run."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--backends", default="etcd,sqlite", help="comma-separated: etcd, sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="calico-bench-") as tmp:
        if "etcd" in args.backends.split(","):
            with etcd_cluster(1) as cluster:
                asyncio.run(run(args, cluster.endpoints, Path(tmp)))
        else:
            asyncio.run(run(args, "", Path(tmp)))


if __name__ == "__main__":
    main()
