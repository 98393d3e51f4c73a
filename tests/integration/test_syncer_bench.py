"""Benchmark: one shared watch versus one watch per resource type, on each backend.

    SYNCER_BENCH_N=1000 .venv/bin/pytest -q -s -m benchmark tests/integration/test_syncer_bench.py

Per case: N GlobalNetworkSet creates, each followed by a felix-status write the
felix stream does not carry, timed until the last one reaches the consumer;
then a snapshot of N NetworkPolicies, timed from start to in-sync.
"""

from __future__ import annotations

import os
import time

import pytest

from libcalico.datastore.backend import Backend
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.syncer import RetryPolicy, Syncer, SyncStatus, ViewCallbacks, WatchMode, syncer_spec

SYNCER_BACKENDS = ["sqlite", "etcd"]
N = int(os.environ.get("SYNCER_BENCH_N", "100"))
R = RESOURCE_ROOT


@pytest.fixture(params=SYNCER_BACKENDS)
def store(request: pytest.FixtureRequest) -> Backend:
    return request.getfixturevalue(f"{request.param}_backend")


def netset(name: str, i: int) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet", "metadata": {"name": name},
            "spec": {"nets": [f"10.{i // 250}.{i % 250}.0/24"]}}


def policy(name: str) -> dict:
    return {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": "ns1"},
            "spec": {"selector": "app == 'a'", "ingress": [{"action": "Allow", "source": {"selector": "r == 'x'"}}]}}


@pytest.mark.benchmark
@pytest.mark.parametrize("mode", [WatchMode.SHARED, WatchMode.PER_TYPE], ids=lambda m: m.value)
async def test_watch_mode_cost(store: Backend, mode: WatchMode) -> None:
    view = ViewCallbacks()
    retry = RetryPolicy(initial=0.05, maximum=1.0)
    async with Syncer(store, syncer_spec("felix"), view, mode=mode, retry=retry):
        await view.wait_for_status(SyncStatus.IN_SYNC)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(N):
            await store.create(f"{R}globalnetworksets/s{i}", netset(f"s{i}", i))
            await store.create(f"/calico/felix/v2/no-region/host/h{i}/status", {"time": i})
        await view.wait_for(lambda: len(view.view) == N, timeout=300, what=f"{N} network sets")
        delta_wall, delta_cpu = time.perf_counter() - wall, time.process_time() - cpu
        for i in range(N):
            await store.create(f"{R}networkpolicies/ns1/p{i}", policy(f"p{i}"))
    snap = ViewCallbacks()
    wall = time.perf_counter()
    async with Syncer(store, syncer_spec("felix"), snap, mode=mode, retry=retry):
        await snap.wait_for_status(SyncStatus.IN_SYNC, timeout=300)
        snap_wall = time.perf_counter() - wall
    assert len(snap.view) == 2 * N and snap.anomalies == [] and view.anomalies == []
    print(f"\n{store.name} {mode.value}: {N} deltas {delta_wall:.2f}s wall {delta_cpu:.2f}s cpu"
          f" ({1e6 * delta_wall / N:.0f} us each, writes included); snapshot of {2 * N} {snap_wall:.2f}s")
