"""The lab's supervisor: keeps every service of a lab running, like a kubelet's restart policy.

How it works::

    calico-lab up ──spawns──► supervisor (own session, in the infra namespace)
                                 │ reads services.json; SIGHUP re-reads it
                                 ├─► ip netns exec <host> calico-felix   ─► logs/<host>/felix.log
                                 ├─► ip netns exec <host> calico-typha   ─► logs/<host>/typha-0.log
                                 └─► ip netns exec <lab>-net etcd        ─► logs/net/etcd.log
                                 writes pids.json (pid, start time, restarts, last exit)

A service that exits is started again after a backoff (0.2 s doubling to 5 s, reset once it
has run 10 s). SIGTERM stops every service, clients before servers (node agents, then
Typha, then etcd; each SIGTERM, then SIGKILL after a grace period), and exits 0. Run as ``python -m services.lab.supervisor <lab dir>``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libcalico.runtime import configure_logging, get_logger
from services.lab.errors import LabError
from services.lab.processes import ProcessRef, start_time
from services.lab.roster import ServiceEntry, load_roster
from services.lab.state import LabDir, write_json

log = get_logger("calico-lab.supervisor")
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
STABLE_AFTER = 10.0
STOP_GRACE = 10.0
LOG_MARK = "--- calico-lab:"  # starts the line the supervisor writes before each start


@dataclass
class Running:
    """What the supervisor knows about one service."""

    entry: ServiceEntry
    task: asyncio.Task[None] | None = None
    proc: asyncio.subprocess.Process | None = None
    pid: int = 0
    start: int = 0
    started_at: float = 0.0
    starts: int = 0
    last_exit: int | None = None
    state: str = "starting"
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "start": self.start, "started_at": self.started_at,
                "restarts": max(self.starts - 1, 0), "last_exit": self.last_exit, "state": self.state,
                "host": self.entry.host, "name": self.entry.name, "netns": self.entry.netns}


def stop_rank(entry: ServiceEntry) -> int:
    """Stop order: node agents (0) before Typha (1) before the datastore (2)."""
    if entry.name == "etcd":
        return 2
    return 1 if entry.name.startswith("typha") else 0


class Supervisor:
    """Runs the roster of one lab directory until told to stop."""

    def __init__(self, labdir: LabDir) -> None:
        self.labdir = labdir
        self.running: dict[str, Running] = {}
        self.stopping = asyncio.Event()
        self.reload_requested = asyncio.Event()

    def publish(self) -> None:
        """Write pids.json with every service's current state."""
        write_json(self.labdir.pids_file, {key: r.to_dict() for key, r in sorted(self.running.items())})

    async def run(self) -> int:
        """Supervise until SIGTERM; return the exit code."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        me = ProcessRef.of(os.getpid())
        write_json(self.labdir.supervisor_pid_file, {"pid": os.getpid(), "start": me.start if me else 0})
        log.info("supervisor_started", dir=str(self.labdir.root))
        self.reload()
        while not self.stopping.is_set():
            waiters = [asyncio.ensure_future(self.stopping.wait()), asyncio.ensure_future(self.reload_requested.wait())]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if self.reload_requested.is_set() and not self.stopping.is_set():
                self.reload_requested.clear()
                self.reload()
        # Clients before servers: node agents, then Typha, then the datastore.
        for rank in (0, 1, 2):
            await self.stop_runs([r for r in list(self.running.values()) if stop_rank(r.entry) == rank])
        self.publish()
        log.info("supervisor_stopped")
        return 0

    def reload(self) -> None:
        """Bring the running set in line with services.json."""
        try:
            wanted = {e.key: e for e in load_roster(self.labdir)}
        except LabError as exc:  # a bad roster must not kill what is running
            log.error("roster_unreadable", error=str(exc))
            return
        gone = [k for k, r in self.running.items() if k not in wanted or wanted[k] != r.entry]
        if gone:
            asyncio.ensure_future(self.stop_runs([self.running[k] for k in gone]))
        for key, entry in wanted.items():
            if key not in self.running or key in gone:
                r = Running(entry)
                self.running[key] = r
                r.task = asyncio.ensure_future(self.keep_running(r))
        log.info("roster_loaded", services=len(wanted), stopped=len(gone))
        self.publish()

    async def keep_running(self, r: Running) -> None:
        """Start the service, wait for it, start it again after a backoff, until told to stop."""
        backoff = BACKOFF_FIRST
        while not (r.stop.is_set() or self.stopping.is_set()):
            code = await self.run_once(r)
            if r.stop.is_set() or self.stopping.is_set():
                break
            ran = time.time() - r.started_at
            if ran >= STABLE_AFTER:
                backoff = BACKOFF_FIRST
            log.warning("service_exited", service=r.entry.key, code=code, ran_seconds=round(ran, 2),
                        restart_in=backoff)
            r.state = "backoff"
            self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(r.stop.wait(), backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def run_once(self, r: Running) -> int | None:
        """One run of a service, from spawn to exit; its output goes to its log file."""
        entry = r.entry
        Path(entry.log).parent.mkdir(parents=True, exist_ok=True)
        with open(entry.log, "ab") as out:
            out.write(f"{LOG_MARK} starting {entry.key} at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
            out.flush()
            try:
                proc = await asyncio.create_subprocess_exec(
                    "ip", "netns", "exec", entry.netns, *entry.argv, env=entry.env, cwd=entry.cwd,
                    stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out)
            except OSError as exc:
                log.error("service_spawn_failed", service=entry.key, error=str(exc))
                r.last_exit = None
                return None
        r.proc, r.pid, r.starts = proc, proc.pid, r.starts + 1
        r.start = start_time(proc.pid) or 0
        r.started_at = time.time()
        r.state = "running"
        if r.stop.is_set():  # stopped while it was being spawned
            proc.send_signal(signal.SIGTERM)
        log.info("service_started", service=entry.key, pid=proc.pid, starts=r.starts)
        self.publish()
        code = await proc.wait()
        r.last_exit, r.proc, r.state = code, None, "exited"
        self.publish()
        return code

    async def stop_runs(self, runs: list[Running]) -> None:
        """Stop some services: SIGTERM, then SIGKILL after the grace period."""
        for r in runs:
            r.stop.set()
            if r.proc is not None and r.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    r.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        for r in runs:
            if r.task is None:
                continue
            try:
                await asyncio.wait_for(asyncio.shield(r.task), max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                log.warning("service_killed", service=r.entry.key, pid=r.pid)
                if r.proc is not None:
                    with contextlib.suppress(ProcessLookupError):
                        r.proc.kill()
                await r.task
            r.state = "stopped"
            if self.running.get(r.entry.key) is r:
                del self.running[r.entry.key]
        self.publish()


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m services.lab.supervisor <lab dir>``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m services.lab.supervisor LAB_DIR", file=sys.stderr)
        return 2
    configure_logging("calico-lab-supervisor", "info", json=True)
    labdir = LabDir(Path(args[0]))
    return asyncio.run(Supervisor(labdir).run())


if __name__ == "__main__":
    sys.exit(main())
