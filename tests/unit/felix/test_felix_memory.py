"""Start-up memory policy: the collector is off until the first apply, then start-up objects are frozen.

Each check runs in a fresh interpreter: freezing is process-wide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run_python(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]  # after any log lines


def test_main_module_starts_with_the_collector_off() -> None:
    out = run_python("""
        import gc, sys
        sys.argv = ["calico-felix", "--help"]
        import services.felix.__main__  # the console script's entry module
        print(gc.isenabled())
    """)
    assert out == "False"


def test_settle_freezes_once_and_turns_the_collector_on() -> None:
    out = run_python("""
        import gc
        gc.disable()
        from services.felix.memory import settle
        keep = [[i] for i in range(1000)]
        settle()
        first = gc.get_freeze_count()
        later = [[i] for i in range(1000)]
        settle()  # a second call changes nothing
        print(gc.isenabled(), first >= 1000, gc.get_freeze_count() == first)
    """)
    assert out == "True True True"


def test_settle_happens_after_the_limit_when_the_dataplane_never_programs() -> None:
    out = run_python("""
        import asyncio, gc
        gc.disable()
        from services.felix.memory import settle_after_startup
        asyncio.run(settle_after_startup(asyncio.Event(), limit=0.05))
        print(gc.isenabled())
    """)
    assert out == "True"
