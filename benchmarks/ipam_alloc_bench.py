"""Benchmark: IPAM allocations per second on etcd, 1 and 8 concurrent allocators, beside bare etcd CAS txns.

Starts its own single-member etcd on loopback. In one run it measures, in this order:

1. the bare compare-and-swap transaction rate: ``EtcdBackend.update(key, value, revision=rev)`` on
   ``--txns`` keys (1 writer, then 8 concurrent writers, each on its own keys);
2. IPAM ``auto_assign(num4=1)`` with a fresh handle per call: 1 allocator, then 8 concurrent
   allocators, each its own host (the usual case: one CNI per node), then 8 on one host (every
   allocation contends for the same block).

An allocation is about ten datastore round trips (config, pools, reservations, node, affinities,
block read, handle read+write, block CAS), so the ratio to the bare txn rate is the figure of merit.

Run from the repository root::

    .venv/bin/python -m benchmarks.ipam_alloc_bench [--allocations 1000] [--txns 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable

import structlog

from libcalico.datastore.client import Client
from libcalico.datastore.etcd import EtcdBackend
from libcalico.ipam import IPAM, AssignRequest
from libcalico.resources import IPPool
from tests.fixtures.etcd import etcd_cluster


async def rate(total: int, workers: int, one: Callable[[int, int], Awaitable[None]]) -> float:
    """Operations per second for ``total`` calls of ``one(worker, i)`` split over ``workers`` tasks."""
    per = total // workers

    async def run(w: int) -> None:
        for i in range(per):
            await one(w, i)

    started = time.perf_counter()
    await asyncio.gather(*(run(w) for w in range(workers)))
    return per * workers / (time.perf_counter() - started)


async def bare_txns(backend: EtcdBackend, total: int, workers: int, tag: str) -> float:
    revisions: dict[str, int] = {}
    for w in range(workers):
        key = f"/calico/bench/{tag}/{w}"
        revisions[key] = (await backend.create(key, {"n": 0})).revision

    async def one(w: int, i: int) -> None:
        key = f"/calico/bench/{tag}/{w}"
        revisions[key] = (await backend.update(key, {"n": i}, revision=revisions[key])).revision

    return await rate(total, workers, one)


async def allocations(backend: EtcdBackend, total: int, workers: int, same_host: bool, tag: str) -> float:
    ipam = IPAM(backend)

    async def one(w: int, i: int) -> None:
        host = "bench-node" if same_host else f"bench-node-{tag}-{w}"
        got = await ipam.auto_assign(AssignRequest(host=host, num4=1, handle=f"bench-{tag}-{w}-{i}",
                                                   attrs={"node": host}))
        assert len(got.ipv4) == 1

    return await rate(total, workers, one)


async def main(args: argparse.Namespace) -> dict[str, float]:
    with etcd_cluster(1) as cluster:
        backend = EtcdBackend.from_env(cluster.env())
        try:
            await Client(backend).create(IPPool.model_validate(
                {"metadata": {"name": "bench"}, "spec": {"cidr": "10.128.0.0/12", "blockSize": 26}}))
            out = {
                "etcd_cas_txn_per_s_1": await bare_txns(backend, args.txns, 1, "a"),
                "etcd_cas_txn_per_s_8": await bare_txns(backend, args.txns, 8, "b"),
                "ipam_alloc_per_s_1": await allocations(backend, args.allocations, 1, False, "a"),
                "ipam_alloc_per_s_8_hosts": await allocations(backend, args.allocations, 8, False, "b"),
                "ipam_alloc_per_s_8_one_host": await allocations(backend, args.allocations, 8, True, "c"),
            }
        finally:
            await backend.close()
    out["ratio_1"] = out["ipam_alloc_per_s_1"] / out["etcd_cas_txn_per_s_1"]
    out["ratio_8_hosts"] = out["ipam_alloc_per_s_8_hosts"] / out["etcd_cas_txn_per_s_8"]
    out["ratio_8_one_host"] = out["ipam_alloc_per_s_8_one_host"] / out["etcd_cas_txn_per_s_8"]
    return out


if __name__ == "__main__":
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--allocations", type=int, default=1000)
    parser.add_argument("--txns", type=int, default=2000)
    result = asyncio.run(main(parser.parse_args()))
    print(json.dumps({k: round(v, 3) for k, v in result.items()}, indent=2))
