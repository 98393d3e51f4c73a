"""Property test on real etcd: several processes assign and release concurrently, crashing at random
between datastore steps; no address is ever held by two owners, and once every owner has released,
IPAM is empty and ``ipam check`` finds nothing.

Each worker process keeps a journal (one JSON line per event). A worker killed mid-operation is
started again by the test; it first releases, by handle, every handle its journal shows as not yet
released (what the runtime's DEL does after a failed ADD), then carries on. What is checked:

- every address an assignment returned is, when read back at once, recorded under that handle;
- every release by handle returns exactly the addresses the owner was given (a second holder of the
  same address would make one of the two come back short);
- the known hold intervals (assignment returned .. release called) of one address never overlap;
- at the end no allocation, handle or problem is left.

Run standalone as a worker: ``python tests/integration/test_ipam_property.py --worker ...``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CRASH_EXIT = 17
WORKERS = 4
OPS_PER_WORKER = 600
CRASH_RATE = 0.01
DEADLINE = 280.0
HOSTS = ["node-a", "node-b", "node-c"]
POOLS = {"pool-small": ("10.10.0.0/27", 30), "pool-big": ("10.20.0.0/26", 29)}


# ---------------------------------------------------------------- worker side


class Journal:
    """Append-only JSON lines, flushed after each event (the OS keeps them across a process crash)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    if line.endswith("\n"):
                        self.events.append(json.loads(line))
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the worker's life

    def write(self, **event: Any) -> None:
        event["t"] = time.monotonic()
        self.events.append(event)
        self.fh.write(json.dumps(event) + "\n")
        self.fh.flush()


async def worker(args: argparse.Namespace) -> None:
    from libcalico.datastore import backend_from_env
    from libcalico.ipam import IPAM, AssignRequest, NoFreeAddresses

    rng = random.Random(f"{args.seed}-{args.worker_id}-{os.getpid()}")
    journal = Journal(args.journal)

    def fault(point: str) -> None:
        if rng.random() < args.crash_rate:
            journal.fh.flush()
            os._exit(CRASH_EXIT)

    backend = backend_from_env()
    ipam = IPAM(backend, fault=fault)
    held: dict[str, list[str]] = {}
    open_handles: list[str] = []
    for e in journal.events:
        if e["ev"] == "intent":
            open_handles.append(e["handle"])
        elif e["ev"] == "alloc":
            held[e["handle"]] = e["ips"]
        elif e["ev"] == "release-start":
            held.pop(e["handle"], None)  # a release cut short may already have freed part of it
        elif e["ev"] in ("released", "failed"):
            open_handles.remove(e["handle"])
            held.pop(e["handle"], None)
    done = sum(1 for e in journal.events if e["ev"] in ("alloc", "failed", "released"))
    for handle in list(open_handles):  # the owner's DEL after a crash
        journal.write(ev="release-start", handle=handle, recovery=True)
        got = await ipam.release_by_handle(handle)
        journal.write(ev="released", handle=handle, ips=sorted(map(str, got)), recovery=True,
                      expected=held.pop(handle, None))
        open_handles.remove(handle)
    serial = len([e for e in journal.events if e["ev"] == "intent"])
    while done < args.ops:
        if open_handles and (len(open_handles) >= 6 or rng.random() < 0.45):
            handle = rng.choice(open_handles)
            journal.write(ev="release-start", handle=handle)
            got = await ipam.release_by_handle(handle)
            journal.write(ev="released", handle=handle, ips=sorted(map(str, got)), expected=held.pop(handle))
            open_handles.remove(handle)
        else:
            serial += 1
            handle = f"w{args.worker_id}-{serial}"
            host = rng.choice(HOSTS)
            pools = [rng.choice(list(POOLS))] if rng.random() < 0.5 else []
            journal.write(ev="intent", handle=handle)
            open_handles.append(handle)
            try:
                got = await ipam.auto_assign(AssignRequest(host=host, num4=rng.randint(1, 3), handle=handle,
                                                           attrs={"node": host}, ipv4_pools=pools))
            except NoFreeAddresses:
                journal.write(ev="failed", handle=handle)
                open_handles.remove(handle)
            else:
                ips = sorted(str(a) for a in got.addresses)
                fault("after-assign")
                journal.write(ev="alloc", handle=handle, ips=ips)
                held[handle] = ips
                for ip in ips:
                    info = await ipam.allocation(ip)
                    if info is None or info.handle != handle:
                        journal.write(ev="verify-fail", handle=handle, ip=ip,
                                      found=None if info is None else info.handle)
        done += 1
    for handle in list(open_handles):
        journal.write(ev="release-start", handle=handle)
        got = await ipam.release_by_handle(handle)
        journal.write(ev="released", handle=handle, ips=sorted(map(str, got)), expected=held.pop(handle, None))
    journal.write(ev="finished")
    await backend.close()


# ---------------------------------------------------------------- test side


def _spawn(idx: int, journal: Path, env: dict[str, str], seed: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--worker", "--worker-id", str(idx), "--journal", str(journal),
         "--ops", str(OPS_PER_WORKER), "--seed", str(seed), "--crash-rate", str(CRASH_RATE)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _intervals(events: list[dict[str, Any]]) -> dict[str, list[tuple[float, float, str]]]:
    start: dict[str, tuple[float, list[str]]] = {}
    out: dict[str, list[tuple[float, float, str]]] = {}
    for e in events:
        if e["ev"] == "alloc":
            start[e["handle"]] = (e["t"], e["ips"])
        elif e["ev"] == "release-start" and e["handle"] in start:
            t0, ips = start.pop(e["handle"])
            for ip in ips:
                out.setdefault(ip, []).append((t0, e["t"], e["handle"]))
    return out


def test_concurrent_crashing_allocators_never_share_an_address(etcd_env: dict[str, str], tmp_path: Path) -> None:
    from libcalico.datastore import backend_from_env
    from libcalico.datastore.client import Client
    from libcalico.ipam.report import check
    from libcalico.resources import IPPool

    seed = int(os.environ.get("IPAM_PROPERTY_SEED", str(random.SystemRandom().randrange(1 << 30))))

    async def setup() -> None:
        async with backend_from_env(etcd_env) as backend:
            for name, (cidr, size) in POOLS.items():
                await Client(backend).create(IPPool.model_validate(
                    {"metadata": {"name": name}, "spec": {"cidr": cidr, "blockSize": size}}))

    asyncio.run(setup())
    env = {**os.environ, **etcd_env, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    journals = [tmp_path / f"w{i}.jsonl" for i in range(WORKERS)]
    procs = {i: _spawn(i, journals[i], env, seed) for i in range(WORKERS)}
    crashes = 0
    deadline = time.monotonic() + DEADLINE
    while procs:
        assert time.monotonic() < deadline, f"workers still running after {DEADLINE}s (seed {seed})"
        for i, proc in list(procs.items()):
            try:
                code = proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if code == CRASH_EXIT:
                crashes += 1
                assert crashes < 2000, "too many crashes"
                procs[i] = _spawn(i, journals[i], env, seed)
            else:
                assert code == 0, f"worker {i} failed (seed {seed}): {stderr[-3000:]}"
                del procs[i]

    events = [json.loads(line) for j in journals for line in j.read_text().splitlines()]
    assert not [e for e in events if e["ev"] == "verify-fail"], f"seed {seed}"
    assigned = [e for e in events if e["ev"] == "alloc"]
    short = [e for e in events if e["ev"] == "released" and e.get("expected") is not None
             and e["ips"] != sorted(e["expected"])]
    assert not short, f"release returned other addresses than were handed out (seed {seed}): {short[:3]}"
    for ip, spans in _intervals(events).items():
        spans.sort()
        for (_a0, a1, ha), (b0, _, hb) in zip(spans, spans[1:], strict=False):
            assert b0 >= a1, f"{ip} held by {ha} and {hb} at once (seed {seed})"
    ops = sum(1 for e in events if e["ev"] in ("alloc", "failed", "released"))
    assert ops >= WORKERS * OPS_PER_WORKER >= 2000 and len(assigned) > 800
    assert crashes > 0, f"no crash was injected (seed {seed})"

    async def final() -> Any:
        async with backend_from_env(etcd_env) as backend:
            return await check(backend)

    report = asyncio.run(final())
    assert report.scan.allocations == [], f"seed {seed}"
    assert report.scan.handles == {}, f"seed {seed}"
    assert report.problems == 0, f"seed {seed}"
    all_ips = {ip for e in assigned for ip in e["ips"]}
    assert all(any(ipaddress.ip_address(ip) in ipaddress.ip_network(c) for c, _ in POOLS.values()) for ip in all_ips)
    print(f"seed={seed} crashes={crashes} operations={ops} assignments={len(assigned)} distinct={len(all_ips)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--worker-id", type=int, required=True)
    parser.add_argument("--journal", required=True)
    parser.add_argument("--ops", type=int, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--crash-rate", type=float, required=True)
    asyncio.run(worker(parser.parse_args()))
