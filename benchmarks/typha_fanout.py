"""Benchmark: one calico-typha fanning the felix stream out to 1,000 clients, versus direct etcd syncers.

Phases (loopback only; every wait bounded in time)::

    load      etcd on loopback ← 20,000 WorkloadEndpoints (20 per node), 2,000 policies, 1,000 Nodes
    typha     calico-typha on etcd; --clients protocol clients in --client-procs processes connect
              at once → time until every client is in sync, snapshot bytes per client (trimmed;
              plus a few clients of a second Typha with PerNodeFiltering=false)
    updates   --rate WorkloadEndpoint updates/s for --duration s, each carrying its write time in a
              label, then a 2 s drain window → deliveries (every client counts every update),
              latency write → client (exact per update on --sample-every'th client; an upper bound
              per read on every client), the stages (etcd → watcher, Typha's batching wait and
              fan-out), CPU of every process group and of the machine, Typha's peak RSS;
              --profile DIR samples Typha and one client process with py-spy meanwhile
    direct    --direct real felix syncers, each with its own etcd connection, in one process:
              time to sync, then the same update load; etcd's own metrics per phase give the
              datastore load per syncer, extrapolated to --clients and compared with Typha's

How the clients measure is in benchmarks/typha_loadgen.py and docs/typha.md. Run from the
repository root::

    .venv/bin/python -m benchmarks.typha_fanout [--clients 1000] [--weps 20000] [--policies 2000]
        [--rate 200] [--duration 20] [--direct 10] [--client-procs 4] [--sample-every 20]
        [--batch-interval S] [--profile DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.typha_loadgen import client_worker, direct_worker
from benchmarks.typha_measure import (
    CpuMeter,
    bucket_percentile,
    delta,
    etcd_metrics,
    hist_percentile,
    percentile,
    proc_cpu,
    proc_peak_rss_mib,
    prometheus_histogram,
    start_profile,
    summarise_profile,
)
from tests.unit.typha.harness import TyphaProcess, wait_until
from tests.unit.typha.samples import WEP_PREFIX, global_policy, node, workload_endpoint

REPO = Path(__file__).resolve().parents[1]
DRAIN_WINDOW = 2.0  # seconds after the last write in which deliveries still count


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
                        duration: float, *, probe: bool = False) -> tuple[int, list[float]]:
    """``rate`` updates/s for ``duration`` s, each WorkloadEndpoint label ``bts`` = the write time in µs.

    With ``probe``, one raw watch on the WorkloadEndpoints measures write → etcd → watcher for every
    update (the datastore's share of the latency). Returns the count written and the probe latencies.
    """
    from libcalico.datastore.etcd import EtcdBackend

    backend = EtcdBackend.from_env({"ETCD_ENDPOINTS": endpoints})
    watcher = EtcdBackend.from_env({"ETCD_ENDPOINTS": endpoints})
    seen: list[float] = []
    rng = random.Random(7)
    count = int(rate * duration)

    async def watch(revision: int) -> None:
        async for event in watcher.watch(WEP_PREFIX, revision):
            bts = (((event.value or {}).get("metadata") or {}).get("labels") or {}).get("bts")
            if bts:
                seen.append(time.time() - int(bts) / 1e6)
                if len(seen) >= count:
                    return

    probe_task = None
    if probe:
        revision = (await backend.list(f"{WEP_PREFIX}ns0/nothing-here")).revision
        probe_task = asyncio.create_task(watch(revision))
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
    if probe_task is not None:
        done, _ = await asyncio.wait({probe_task}, timeout=DRAIN_WINDOW)
        if not done:
            probe_task.cancel()
    await backend.close()
    await watcher.close()
    return count, seen


def spawn(args: list[str]) -> subprocess.Popen[str]:
    """A worker process of this benchmark (clients or direct syncers) talking JSON lines on stdout."""
    return subprocess.Popen([sys.executable, "-m", "benchmarks.typha_fanout", *args], cwd=REPO,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def read_json(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """The next JSON line of a worker."""
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
        worker = spawn(["--client-worker", "--port", str(full.port), "--first", "0", "--count", str(sample),
                        "--sample-every", "0"])
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
    """Every phase; the report as a dict."""
    from tests.fixtures.etcd import etcd_cluster

    report: dict[str, Any] = {"clients": args.clients, "weps": args.weps, "policies": args.policies,
                              "rate": args.rate, "duration": args.duration, "batch_interval": args.batch_interval}
    with etcd_cluster(1) as cluster:
        member = cluster.members[0]
        endpoints = cluster.endpoints
        weps = asyncio.run(load(endpoints, args))
        env = {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": endpoints, "TYPHA_SHUTDOWNTIMEOUTSECS": "5",
               "TYPHA_SERVERPINGINTERVALSECS": "10"}
        if args.batch_interval is not None:
            env["TYPHA_SERVERBATCHINTERVALSECS"] = str(args.batch_interval)
        # --- Typha
        typha = TyphaProcess(env)
        try:
            run_typha(args, report, typha, endpoints, weps, member)
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
            writes, _ = asyncio.run(write_updates(endpoints, weps, args.rate, direct_duration))
            time.sleep(DRAIN_WINDOW)
            d2 = etcd_metrics(member.metrics_url)
            assert worker.stdin is not None
            worker.stdin.write("stop\n")
            worker.stdin.flush()
            done = read_json(worker, 120)
            worker.wait(60)
            lat = done["latencies"]
            report["direct_latency_p50_s"] = round(percentile(lat, 0.5) or 0, 3)
            report["direct_latency_p99_s"] = round(percentile(lat, 0.99) or 0, 3)
            report["direct_deliveries"] = len(lat)
            report["direct_deliveries_expected"] = writes * args.direct
            report["etcd_direct_sync"] = delta(d1, d0)
            report["etcd_direct_updates"] = delta(d2, d1)
            report["direct_update_writes"] = writes
            summarise_load(report, args)
    return report


def run_typha(args: argparse.Namespace, report: dict[str, Any], typha: TyphaProcess, endpoints: str,
              weps: list[tuple[str, dict[str, Any]]], member: Any) -> None:
    """The Typha phases: clients in sync, then the update load with every measurement."""
    m0 = etcd_metrics(member.metrics_url)
    started = time.monotonic()
    wait_until(lambda: typha.http("/readiness")[0] == 200, 300, "typha in sync with etcd")
    report["typha_cache_sync_s"] = round(time.monotonic() - started, 2)
    pid = typha.proc.pid
    cpu0 = proc_cpu(pid)
    m1 = etcd_metrics(member.metrics_url)
    per = -(-args.clients // args.client_procs)
    started = time.monotonic()
    workers = [spawn(["--client-worker", "--port", str(typha.port), "--first", str(i * per),
                      "--count", str(min(per, args.clients - i * per)), "--sample-every", str(args.sample_every)])
               for i in range(args.client_procs) if i * per < args.clients]
    synced = [read_json(w, 400) for w in workers]
    report["all_in_sync_s"] = round(time.monotonic() - started, 2)
    report["clients_in_sync"] = sum(s["synced"] for s in synced)
    snap = [b for s in synced for b in s["snapshot_bytes"]]
    report["snapshot_bytes_per_client_trimmed"] = int(statistics.mean(snap)) if snap else 0
    report["typha_cpu_s_initial_fanout"] = round(proc_cpu(pid) - cpu0, 2)
    report["typha_peak_rss_mib_after_fanout"] = round(proc_peak_rss_mib(pid), 1)
    m2 = etcd_metrics(member.metrics_url)
    groups = {"typha": [pid], "clients": [w.pid for w in workers], "etcd": [member.proc.pid],
              "writer_and_probe": [os.getpid()]}
    meter = CpuMeter(groups)
    profiles = []
    if args.profile:
        out = Path(args.profile)
        out.mkdir(parents=True, exist_ok=True)
        profiles = [(out / "typha.txt", start_profile(pid, out / "typha.txt", args.duration)),
                    (out / "client-worker.txt", start_profile(workers[0].pid, out / "client-worker.txt",
                                                              args.duration))]
    t0 = time.monotonic()
    writes, probe = asyncio.run(write_updates(endpoints, weps, args.rate, args.duration, probe=True))
    time.sleep(max(0.0, t0 + args.duration + DRAIN_WINDOW - time.monotonic()))
    report["cpu_percent_of_a_core_during_updates"] = meter.stop(time.monotonic() - t0)
    m3 = etcd_metrics(member.metrics_url)
    report["updates_written"] = writes
    report["typha_peak_rss_mib"] = round(proc_peak_rss_mib(pid), 1)
    results = []
    for w in workers:
        assert w.stdin is not None
        w.stdin.write("stop\n")
        w.stdin.flush()
        results.append(read_json(w, 120))
        w.wait(60)
    for path, prof in profiles:
        prof.wait(60)
        report.setdefault("profiles", {})[path.name] = str(path)
        (path.with_suffix(".summary")).write_text("\n".join(summarise_profile(path)) + "\n")
    exact: collections.Counter[int] = collections.Counter()
    bound: collections.Counter[int] = collections.Counter()
    counts: list[int] = []
    frames: list[int] = []
    received: list[int] = []
    for r in results:
        exact.update({int(k): v for k, v in r["exact"].items()})
        bound.update({int(k): v for k, v in r["bound"].items()})
        counts.extend(r["updates"])
        frames.extend(r["frames"])
        received.extend(r["received"])
    report["deliveries"] = {
        "expected": writes * args.clients, "counted": sum(counts),
        "clients_with_every_update": sum(1 for c in counts if c == writes),
        "min_per_client": min(counts, default=0), "max_per_client": max(counts, default=0),
        "frames_per_client_mean": round(statistics.mean(frames), 1) if frames else 0,
    }
    sampled = sum(r["sampled"] for r in results)
    report["latency_exact_sampled"] = {
        "clients": sampled, "updates": sum(exact.values()),
        "p50_s": hist_percentile(exact, 0.50), "p99_s": hist_percentile(exact, 0.99),
        "max_s": hist_percentile(exact, 1.0)}
    report["latency_bound_all_clients"] = {
        "clients": args.clients, "updates": sum(bound.values()),
        "p50_s": hist_percentile(bound, 0.50), "p99_s": hist_percentile(bound, 0.99),
        "max_s": hist_percentile(bound, 1.0)}
    page = typha.http("/metrics")[1]
    wait_b = prometheus_histogram(page, "typha_breadcrumb_wait_secs", syncer="felix")
    fan_b = prometheus_histogram(page, "typha_fanout_secs", syncer="felix")
    count = typha.metric("typha_client_latency_secs_count", syncer="felix")
    report["stages"] = {
        "etcd_write_to_watcher_p50_s": round(percentile(probe, 0.5) or 0, 4),
        "etcd_write_to_watcher_p99_s": round(percentile(probe, 0.99) or 0, 4),
        "typha_batch_wait_p50_s_le": bucket_percentile(wait_b, 0.5),
        "typha_batch_wait_p99_s_le": bucket_percentile(wait_b, 0.99),
        "typha_fanout_p50_s_le": bucket_percentile(fan_b, 0.5),
        "typha_fanout_p99_s_le": bucket_percentile(fan_b, 0.99),
        "breadcrumbs": fan_b[-1][1] if fan_b else 0,
        "clients_fell_off_fast_path": typha.metric("typha_fanout_fallbehind_total", syncer="felix"),
        "typha_client_latency_mean_s": round(
            typha.metric("typha_client_latency_secs_sum", syncer="felix") / max(1.0, count), 4),
    }
    report["bytes_per_client_total"] = int(statistics.mean(received)) if received else 0
    report["clients_lost"] = sum(r["lost"] for r in results)
    report["etcd_typha_sync"] = delta(m1, m0)
    report["etcd_typha_fanout"] = delta(m2, m1)
    report["etcd_typha_updates"] = delta(m3, m2)


def summarise_load(report: dict[str, Any], args: argparse.Namespace) -> None:
    """Datastore load per direct syncer, extrapolated to every client, against Typha's."""
    n = args.direct
    sync = report["etcd_direct_sync"]
    upd = report["etcd_direct_updates"]
    per_write = upd["sent_bytes"] / max(1, report["direct_update_writes"])
    # The latency probe is one more WorkloadEndpoint watcher on etcd during Typha's update phase: it
    # receives what one direct syncer receives per write, which is taken off Typha's share.
    typha_per_write = max(0.0, report["etcd_typha_updates"]["sent_bytes"] / max(1, report["updates_written"])
                          - per_write / n)
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
    parser.add_argument("--client-procs", type=int, default=4, help="processes the clients are spread over")
    parser.add_argument("--sample-every", type=int, default=20,
                        help="every Nth client decodes every update in full (exact latency); 0: none")
    parser.add_argument("--batch-interval", type=float, default=None,
                        help="TYPHA_SERVERBATCHINTERVALSECS (default: Typha's own default)")
    parser.add_argument("--profile", default="", help="directory for py-spy profiles of Typha and a client process")
    parser.add_argument("--client-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--direct-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--endpoints", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.client_worker:
        uvloop.run(client_worker(args.port, args.first, args.count, args.sample_every))
        return
    if args.direct_worker:
        uvloop.run(direct_worker(args.endpoints, args.count))
        return
    report = run(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
