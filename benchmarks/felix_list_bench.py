"""Felix's datastore listing and validation on cold start, beside a bare sqlite read in the same run.

Run from the repository root (no root needed, no kernel work)::

    .venv/bin/python benchmarks/felix_list_bench.py [--policies 1000] [--remote 10000] [--local 100]
                                                    [--seed 1] [--rounds 7]

The world is the one ``felix_e2e_bench.py`` builds (its ``World`` generator, imported): profiles
and tiers, ``--remote`` WorkloadEndpoints of 100 other nodes, ``--local`` of this node and
``--policies`` policies, written into a fresh sqlite datastore file. Then, in alternating rounds
(best of ``--rounds``; process CPU time, which counts the sqlite reader thread too, and wall time):

- ``bare``: the floor. A fresh ``sqlite3`` connection, ``SELECT key, value, revision`` of the
  same rows in key order, and ``orjson.loads`` of every value with the cyclic collector paused
  as the syncer pauses it (split: ``bare_fetch`` / ``bare_decode``);
- ``syncer``: Felix's own datastore syncer (``services.felix.input.datastore_syncer`` with the
  calculation graph's kinds, exactly as Felix opens it) on a fresh ``SqliteBackend``, from
  ``start()`` until ``in-sync`` has been handed to a no-op callback (the graph's own work excluded;
  so is the collector's pass over the snapshot when the syncer resumes it after the hand-over);
  ``syncer_listed``: the same run until ``resync-in-progress`` was handed over (the listing phase
  of Felix's log, ``felix_e2e_bench``'s ``datastore_list_s``; the syncer's checks of the entries
  and their hand-over come after it); ``churn_after``: once the syncer has resumed the collector,
  the CPU of 100,000 short-lived containers made over 100 loop turns (what the collector's passes
  over the syncer's cache of the snapshot add), beside ``churn_alone``, the same with no snapshot;
- ``syncer_full``: the same with the syncer validating every kind itself (``ValidationFilter``);
- the split of the syncer's work: ``list`` (``SqliteBackend.list_rows``, what the syncer reads, on
  a fresh backend: open, fetch, decode), ``core`` (``SyncerCore.listed`` of that listing without
  validation), ``validate`` (Felix's validation filter over the same entries) and
  ``validate_full`` (every kind); ``list_kv`` is the public ``SqliteBackend.list`` (KV objects).

``cold``: the first syncer run in a fresh process (what Felix pays once: lazy loading of the
validation rules and the first touch of fresh memory included; the process's imports are not),
beside ``cold_bare``, the bare read as the first thing in a fresh process; best of ``--rounds // 2``
child processes each.

Prints a table and one JSON line; ``ratio`` is each figure over ``bare`` of the same round kind.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson  # noqa: E402

from benchmarks.felix_e2e_bench import APPS, ENVS, HOST, HOT_POLICIES, NAMESPACES, ROLES, World  # noqa: E402
from libcalico.datastore.keys import RESOURCE_ROOT  # noqa: E402
from libcalico.datastore.sqlite import SqliteBackend  # noqa: E402
from libcalico.syncer import (  # noqa: E402
    Syncer,
    SyncerCore,
    SyncStatus,
    Update,
    ValidationFilter,
    syncer_spec,
)
from libcalico.syncer.plan import WatchMode, plan_watches  # noqa: E402
from services.felix.input import GraphValidatesFilter, datastore_syncer  # noqa: E402

PREFIX = "/calico/"


def build_world(policies: int, remote: int, local: int, seed: int) -> list[tuple[str, dict[str, Any]]]:
    """The e2e benchmark's datastore contents, made by its World generator in the same order."""
    world = World(seed)
    world.profiles()
    for i in range(remote):
        world.workload(f"r-{i}", f"node-{1 + i % 100}", f"calir{i}"[:15])
    for i in range(local):
        world.workload(f"l-{i}", HOST, f"cali{i:011d}", ns=NAMESPACES[i % len(NAMESPACES)],
                       labels={"app": APPS[i % len(APPS)], "role": ROLES[i % len(ROLES)],
                               "env": ENVS[i % len(ENVS)], "bench": "local"},
                       ip=f"10.200.{i >> 8}.{i & 255}")
    for i in range(policies - HOT_POLICIES):
        world.policy(i)
    for i in range(HOT_POLICIES):
        world.hot_policy(i, 7000 + i)
    return world.docs


async def fill(db: str, docs: list[tuple[str, dict[str, Any]]]) -> None:
    """Write every document through the backend (unsynchronised: a scratch file)."""
    backend = SqliteBackend(db, synchronous="OFF")
    try:
        for key, value in docs:
            await backend.create(key, value)
    finally:
        await backend.close()


def graph_kinds() -> frozenset[str]:
    """The kinds Felix's calculation graph validates itself (so its syncer skips them)."""
    from services.felix.calc import CalcGraph

    return CalcGraph(HOST).validated_kinds()


class InSync:
    """No-op syncer callbacks that note when (process CPU and wall clock) resync-in-progress and in-sync come."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.updates = 0
        self.cpu = self.wall = 0.0
        self.resync_cpu = self.resync_wall = 0.0

    def on_status(self, status: SyncStatus) -> None:
        if status is SyncStatus.RESYNC_IN_PROGRESS and not self.resync_wall:
            self.resync_cpu, self.resync_wall = time.process_time(), time.perf_counter()
        if status is SyncStatus.IN_SYNC:
            self.cpu, self.wall = time.process_time(), time.perf_counter()
            self.event.set()

    def on_updates(self, updates: list[Update]) -> None:
        self.updates += len(updates)


class Timer:
    """CPU (whole process) and wall time of one block."""

    def __enter__(self) -> Timer:
        gc.collect()
        self.cpu0, self.wall0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu = time.process_time() - self.cpu0
        self.wall = time.perf_counter() - self.wall0


# ------------------------------------------------------------------ the timed phases


def bare(db: str) -> tuple[float, float, int]:
    """The floor: fetch the rows with sqlite3 and decode each value with orjson; (fetch s, decode s, rows) CPU."""
    c0 = time.process_time()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        rows = conn.execute("SELECT key, value, revision FROM calico_kv WHERE key >= ? AND key < ? ORDER BY key",
                            (PREFIX, PREFIX[:-1] + "0")).fetchall()
    finally:
        conn.close()
    c1 = time.process_time()
    loads = orjson.loads
    gc.disable()  # as the syncer does while it lists: everything decoded survives
    try:
        values = [loads(v) for _, v, _ in rows]
    finally:
        gc.enable()
    c2 = time.process_time()
    assert len(values) == len(rows)
    return c1 - c0, c2 - c1, len(rows)


async def run_syncer(db: str, make: Callable[[SqliteBackend, InSync], Syncer],
                     resync: list[tuple[float, float]] | None = None,
                     after: list[float] | None = None) -> tuple[float, float, int]:
    """Start a syncer on a fresh backend; (CPU s, wall s, updates) from ``start()`` to in-sync handed over.

    ``resync`` gets (CPU s, wall s) from ``start()`` to resync-in-progress handed over (Felix's log
    events "syncer starting" to "syncer status resync-in-progress": felix_e2e_bench's datastore_list_s).
    ``after`` gets the CPU s of :func:`churn` once the syncer has resumed the collector: the collector's
    passes over what the listing left (the syncer's cache of the snapshot) included.
    """
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    backend = SqliteBackend(db)
    callbacks = InSync()
    syncer = make(backend, callbacks)
    try:
        syncer.start()
        async with asyncio.timeout(120):
            await callbacks.event.wait()
        if resync is not None:
            resync.append((callbacks.resync_cpu - cpu0, callbacks.resync_wall - wall0))
        if after is not None:
            while not gc.isenabled():  # bounded: the syncer resumes it right after delivering in-sync
                assert time.perf_counter() - wall0 < 120, "the collector was never resumed"
                await asyncio.sleep(0)
            after.append(await churn())
        return callbacks.cpu - cpu0, callbacks.wall - wall0, callbacks.updates
    finally:
        await syncer.stop()
        await backend.close()


async def churn() -> float:
    """CPU s of 100,000 short-lived containers made over 100 turns of the loop (a service going on with its
    work): the young collections they trigger, and whatever older ones follow."""
    cpu0 = time.process_time()
    for _ in range(100):
        scratch: list[list[int]] = [[] for _ in range(1000)]
        del scratch
        await asyncio.sleep(0)
    return time.process_time() - cpu0


def felix_syncer(kinds: frozenset[str]) -> Callable[[SqliteBackend, InSync], Syncer]:
    return lambda backend, cb: datastore_syncer(backend, cb, kinds)


def full_syncer(backend: SqliteBackend, cb: InSync) -> Syncer:
    return Syncer(backend, syncer_spec("felix"), cb)


async def listing(db: str, method: str, into: list[Any]) -> tuple[float, float]:
    """(CPU s, wall s) of one listing by ``method`` on a fresh backend (opening it included); result ``into``.

    Not returned: asyncio.run's SIGINT bookkeeping formats the main task's repr, result included
    (on 3.11), which for 11,000 entries costs more than the listing.
    """
    gc.collect()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    backend = SqliteBackend(db)
    try:
        into.append(await getattr(backend, method)(PREFIX))
        return time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        await backend.close()


def core_split(items: list[Any], revision: int, kinds: frozenset[str]) -> dict[str, float]:
    """CPU of the syncer core (no validation) and of the validation filters, over one listing."""
    spec = syncer_spec("felix")
    types = [p.types for p in plan_watches(spec, WatchMode.SHARED)]
    out: dict[str, float] = {}
    with Timer() as t:
        updates = SyncerCore(spec, types).listed(0, items, revision)
    out["core"] = t.cpu
    assert sum(isinstance(u, Update) for u in updates) == len(items)
    typed = [(spec.type_of(kv.key), kv.key, kv.value, kv.revision) for kv in items]
    for name, filt in (("validate", GraphValidatesFilter("felix", kinds)), ("validate_full", ValidationFilter("felix"))):
        with Timer() as t:
            ok = 0
            for rtype, key, value, revision in typed:
                ok += filt.accepts(rtype, key, value, revision)  # type: ignore[arg-type]
        out[name] = t.cpu
        assert ok == len(items), f"{name}: {len(items) - ok} entries rejected"
    return out


# ------------------------------------------------------------------ cold start, in a child process


def cold_child(db: str, what: str) -> None:
    """Child process: the first syncer run (or bare read) in this process; print its CPU and wall time."""
    if what == "bare":
        gc.collect()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        _, _, count = bare(db)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    else:
        kinds = graph_kinds()
        cpu, wall, count = asyncio.run(run_syncer(db, felix_syncer(kinds)))
    print(json.dumps({"cpu": cpu, "wall": wall, "updates": count}))


def cold(db: str, what: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--cold-child", db, "--cold-what", what],
                          capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode:
        raise RuntimeError(f"cold child failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


# ------------------------------------------------------------------ main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--remote", type=int, default=10000)
    parser.add_argument("--local", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--cold-child", metavar="DB", help=argparse.SUPPRESS)
    parser.add_argument("--cold-what", choices=("syncer", "bare"), default="syncer", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cold_child:
        cold_child(args.cold_child, args.cold_what)
        return 0
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))  # warnings and up

    docs = build_world(args.policies, args.remote, args.local, args.seed)
    kinds = graph_kinds()
    workdir = Path(tempfile.mkdtemp(prefix="felix-list-"))
    db = str(workdir / "calico.db")
    samples: dict[str, list[tuple[float, float]]] = {}

    def note(name: str, cpu: float, wall: float | None = None) -> None:
        samples.setdefault(name, []).append((cpu, cpu if wall is None else wall))

    try:
        t0 = time.perf_counter()
        asyncio.run(fill(db, docs))
        fill_s = time.perf_counter() - t0
        counts: dict[str, int] = {}
        for key, _ in docs:
            plural = key[len(RESOURCE_ROOT):].split("/", 1)[0]
            counts[plural] = counts.get(plural, 0) + 1
        total = len(docs)
        del docs  # Felix holds no second copy: the collector must not scan one here either
        for _ in range(args.rounds):
            with Timer() as t:
                fetch, decode, rows = bare(db)
            note("bare", t.cpu, t.wall)
            note("bare_fetch", fetch)
            note("bare_decode", decode)
            assert rows == total
            resync: list[tuple[float, float]] = []
            after: list[float] = []
            cpu, wall, updates = asyncio.run(run_syncer(db, felix_syncer(kinds), resync, after))
            assert updates == total, f"syncer delivered {updates} of {total}"
            note("syncer_listed", *resync[0])
            note("syncer", cpu, wall)
            note("churn_after", after[0])
            note("churn_alone", asyncio.run(churn()))
            cpu, wall, updates = asyncio.run(run_syncer(db, full_syncer))
            assert updates == total
            note("syncer_full", cpu, wall)
            into: list[Any] = []
            if hasattr(SqliteBackend, "list_rows"):
                note("list", *asyncio.run(listing(db, "list_rows", into)))
                into.clear()
            note("list_kv", *asyncio.run(listing(db, "list", into)))
            result = into.pop()
            for name, cpu in core_split(result.items, result.revision, kinds).items():
                note(name, cpu)
        for _ in range(max(1, args.rounds // 2)):
            for what, name in (("bare", "cold_bare"), ("syncer", "cold")):
                c = cold(db, what)
                note(name, c["cpu"], c["wall"])
    finally:
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()

    floor_cpu = min(c for c, _ in samples["bare"])
    floor_wall = min(w for _, w in samples["bare"])
    report: dict[str, Any] = {"entries": total, "kinds": counts, "fill_s": round(fill_s, 2),
                              "rounds": args.rounds, "load_average_1m": round(os.getloadavg()[0], 2)}
    print(f"{total} entries ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}); "
          f"best of {args.rounds} rounds")
    print(f"{'phase':<15}{'cpu ms':>9}{'wall ms':>9}{'median cpu':>12}{'cpu/bare':>10}")
    for name, pairs in samples.items():
        cpu = min(c for c, _ in pairs)
        wall = min(w for _, w in pairs)
        med = statistics.median(c for c, _ in pairs)
        ratio = cpu / floor_cpu
        report[name] = {"cpu_ms": round(cpu * 1000, 1), "wall_ms": round(wall * 1000, 1),
                        "median_cpu_ms": round(med * 1000, 1), "cpu_ratio": round(ratio, 2)}
        print(f"{name:<15}{cpu * 1000:>9.1f}{wall * 1000:>9.1f}{med * 1000:>12.1f}{ratio:>10.2f}")
    report["ratio_syncer_to_bare_cpu"] = round(min(c for c, _ in samples["syncer"]) / floor_cpu, 2)
    report["ratio_syncer_to_bare_wall"] = round(min(w for _, w in samples["syncer"]) / floor_wall, 2)
    report["ratio_listed_to_bare_wall"] = round(min(w for _, w in samples["syncer_listed"]) / floor_wall, 2)
    print(f"syncer / bare: {report['ratio_syncer_to_bare_cpu']}x CPU, {report['ratio_syncer_to_bare_wall']}x wall;"
          f" syncer_listed / bare: {report['ratio_listed_to_bare_wall']}x wall")
    cold_cpu = min(c for c, _ in samples["cold"])
    cold_floor = min(c for c, _ in samples["cold_bare"])
    report["ratio_cold_to_cold_bare_cpu"] = round(cold_cpu / cold_floor, 2)
    print(f"cold syncer / cold bare: {report['ratio_cold_to_cold_bare_cpu']}x CPU "
          f"({cold_cpu * 1000:.1f} ms; the budget is 100 ms)")
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
