"""Felix's memory around start-up: the cyclic collector off while the first snapshot is built, then
frozen; freed memory handed back to the system after big jobs.

How it works: ``__main__`` turns the collector off before anything is imported.
While the first table batch is in nft's hands (``Dataplane``'s
``while_programming``: nft works in another thread or process), or after
``STARTUP_GC_LIMIT`` seconds if that never happens (a Felix that cannot start
never runs without it), ``gc.freeze()`` moves every object made so far
(modules, the snapshot, the graph, the ruleset) to the permanent generation
and the collector is turned back on: later collections only walk what
changed since, so a single change never waits behind a pass over the
start-up objects. There is no full collection first (Python's recommended
disable-early-then-freeze pattern): measured on the 1,000-policy benchmark it
would free 3,000-30,000 objects, no RSS difference, for 0.3-0.7 s of CPU.

After the first apply the class code cache that
``__main__`` installed (:mod:`libcalico.runtime.codecache`) is written back if
this start needed anything it did not hold, and uninstalled.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from typing import Any

import structlog

from libcalico.runtime import codecache

log = structlog.get_logger("felix.memory")

STARTUP_GC_LIMIT = 120.0

# glibc's malloc_trim, looked up on first use (ctypes and the lookup cost start-up time); None if absent.
_malloc_trim: Callable[[int], Any] | None = None
_looked_up = False


_settled = False


async def settle_after_startup(programmed: asyncio.Event, limit: float = STARTUP_GC_LIMIT) -> None:
    """Make sure :func:`settle` runs: when the first apply is done (if it has not run during it), or
    after ``limit`` seconds."""
    try:
        async with asyncio.timeout(limit):
            await programmed.wait()
    except TimeoutError:
        pass
    if not _settled:  # (the first apply never came: nothing hands the memory back later)
        settle()
        release()
    cache = codecache.active()
    written = codecache.save_and_uninstall()
    if cache is not None and written is not None:
        log.info("class code cache saved" if written else "class code cache not saved",
                 path=cache.path, compiled=cache.compiled)


def settle() -> None:
    """Freeze the start-up objects and turn the collector on (once; later calls do nothing). The freed
    memory goes back to the system later (:func:`release`, after the first apply: it walks the whole heap,
    CPU that nft's processes need while they load the first batches)."""
    global _settled
    if _settled:
        return
    _settled = True
    started = time.perf_counter()
    gc.freeze()
    gc.enable()
    # No gc.get_freeze_count() here: it walks every frozen object (all of start-up's), in the middle of
    # the first apply.
    log.info("startup objects frozen", seconds=round(time.perf_counter() - started, 3))


def release() -> None:
    """Give memory that was freed after a big job (start-up, a table listing) back to the system.

    glibc keeps freed small blocks in its heap; without this the process's
    RSS stays at its start-up peak.
    """
    trim = _trim_function()
    if trim is not None:
        trim(0)


def _trim_function() -> Callable[[int], Any] | None:
    global _malloc_trim, _looked_up
    if not _looked_up:
        _looked_up = True
        import ctypes

        _malloc_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # the process's own libc; glibc only
    return _malloc_trim
