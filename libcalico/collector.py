"""Python's cyclic garbage collector, paused while bulk state that makes no cycles is built.

Standard library only: the calculation graph uses it and imports no logging.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_pauses = 0
_paused_here = False
_pause_lock = threading.Lock()  # (a sqlite listing pauses from its reader thread)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (process-wide, nestable) while a listing is read or bulk state built.

    A listing builds up hundreds of thousands of containers that all survive;
    with the collector on, each generation-2 collection scans all of them again
    (0.8 s of CPU for 100,000 WorkloadEndpoints, doubling the listing's own).
    Nothing a listing makes is cyclic garbage; reference counting frees it.
    The collector resumes when the last pause in progress ends; before it does,
    everything it would find young is filed as old at once (``gc.freeze()`` then
    ``gc.unfreeze()``: two list splices) rather than scanned in each younger
    generation on its way up (felix_list_bench: "list" of 11,300 entries 50-56 ->
    34-37 ms CPU, ``churn_after`` 22-26 -> 5-6 ms). That is left alone when the
    process keeps frozen objects of its own. A pause taken while the collector is
    off (Felix's start-up) changes nothing.
    """
    global _pauses, _paused_here
    with _pause_lock:
        if _pauses == 0:
            _paused_here = gc.isenabled()
            if _paused_here:
                gc.disable()
        _pauses += 1
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0 and _paused_here:
                _paused_here = False
                if gc.get_freeze_count() == 0:
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()
