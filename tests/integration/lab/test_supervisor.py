"""The lab supervisor with real processes in a real namespace: start, restart, reload, stop."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from services.lab.command import base_env
from services.lab.lab import reload_supervisor, service_problem, start_supervisor, supervisor_ref
from services.lab.processes import ProcessRef
from services.lab.roster import ServiceEntry, save_roster
from services.lab.state import LabDir
from tests.fixtures.netns import NetnsPool, netns_pool  # noqa: F401  (fixture)


async def until(cond: Callable[[], object], what: str, timeout: float = 15.0) -> object:
    """Poll ``cond`` until it returns something truthy; fail naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def entry(labdir: LabDir, netns: str, name: str, argv: list[str]) -> ServiceEntry:
    return ServiceEntry("h", name, netns, argv, base_env(), str(labdir.log_file("h", name)))


def running_ref(labdir: LabDir, key: str) -> ProcessRef | None:
    info = labdir.pids().get(key)
    if not info or info.get("state") != "running":
        return None
    ref = ProcessRef(info["pid"], info["start"])
    return ref if ref.alive() else None


async def test_supervisor_runs_restarts_reloads_and_stops(tmp_path: Path, netns_pool: NetnsPool) -> None:  # noqa: F811
    ns = netns_pool.netns("sup")
    labdir = LabDir(tmp_path / "lab")
    labdir.create()
    sleeper = entry(labdir, ns.name, "sleeper", ["sleep", "1000"])
    crasher = entry(labdir, ns.name, "crasher", [sys.executable, "-c", "print('boom', flush=True); raise SystemExit(3)"])
    save_roster(labdir, [sleeper, crasher])
    sup = await start_supervisor(labdir)
    try:
        assert supervisor_ref(labdir) == sup
        ref = await until(lambda: running_ref(labdir, "h/sleeper"), "sleeper running")
        assert isinstance(ref, ProcessRef)
        # It runs inside the namespace it was given.
        assert Path(f"/proc/{ref.pid}/ns/net").stat().st_ino == Path(f"/run/netns/{ns.name}").stat().st_ino
        # The crasher is started again and again, with its exit code recorded and its output logged.
        await until(lambda: (labdir.pids().get("h/crasher") or {}).get("restarts", 0) >= 2, "crasher restarted")
        info = labdir.pids()["h/crasher"]
        assert info["last_exit"] == 3
        assert "boom" in Path(crasher.log).read_text()
        problem = service_problem(labdir, crasher)
        assert "exited with code 3" in problem and "boom" in problem
        assert service_problem(labdir, sleeper) == ""
        # A killed service comes back with a new pid.
        ref.signal(signal.SIGKILL)
        new = await until(lambda: (r := running_ref(labdir, "h/sleeper")) and r.pid != ref.pid and r,
                          "sleeper restarted")
        assert isinstance(new, ProcessRef) and labdir.pids()["h/sleeper"]["restarts"] == 1
        # Reload: the crasher leaves the roster and is no longer started.
        save_roster(labdir, [sleeper])
        reload_supervisor(labdir)
        await until(lambda: "h/crasher" not in labdir.pids(), "crasher removed")
        assert new.alive()
    finally:
        sup.signal(signal.SIGTERM)
        await until(lambda: not sup.alive(), "supervisor exited")
    assert not new.alive()
    assert labdir.pids() == {}
