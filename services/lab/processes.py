"""Processes identified by pid *and* start time, so a recycled pid is never signalled by mistake."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from dataclasses import dataclass


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when it is gone (or a zombie)."""
    try:
        text = open(f"/proc/{pid}/stat", encoding="ascii", errors="replace").read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    if not fields or fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


@dataclass(frozen=True)
class ProcessRef:
    """A process as it was when recorded."""

    pid: int
    start: int

    @classmethod
    def of(cls, pid: int) -> ProcessRef | None:
        """The reference of a running process, or None."""
        st = start_time(pid)
        return None if st is None else cls(pid, st)

    def alive(self) -> bool:
        """True while this very process (not a later one with the same pid) runs."""
        return start_time(self.pid) == self.start

    def signal(self, sig: int) -> bool:
        """Send a signal if the process is still this one; True when sent."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True


async def wait_gone(refs: list[ProcessRef], timeout: float, interval: float = 0.05) -> list[ProcessRef]:
    """Poll until every process has exited or ``timeout`` passes; return the ones still alive."""
    deadline = time.monotonic() + timeout
    left = [r for r in refs if r.alive()]
    while left and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        left = [r for r in left if r.alive()]
    return left


async def terminate(refs: list[ProcessRef], timeout: float = 10.0) -> list[ProcessRef]:
    """SIGTERM, wait up to ``timeout``, then SIGKILL what is left; return what would not die."""
    for ref in refs:
        ref.signal(signal.SIGTERM)
    left = await wait_gone(refs, timeout)
    for ref in left:
        ref.signal(signal.SIGKILL)
    return await wait_gone(left, 5.0)
