"""Start-up memory policy: the collector is off until the first apply, then start-up objects are frozen.

Each check runs in a fresh interpreter: freezing is process-wide.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


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


def test_main_module_serves_class_code_from_felixs_cache() -> None:
    out = run_python("""
        import sys
        sys.argv = ["calico-felix", "--help"]
        import services.felix.__main__  # the console script's entry module
        from libcalico.runtime import codecache
        cache = codecache.active()
        print(cache is not None and cache.path.endswith("classcode-felix.%s.marshal" % sys.implementation.cache_tag))
    """)
    assert out == "True"


def test_the_class_code_cache_is_written_after_the_first_apply_and_then_uninstalled(tmp_path: Path) -> None:
    path = tmp_path / "classcode-felix.marshal"
    out = run_python(f"""
        import asyncio, collections, dataclasses, marshal, sys
        sys.dont_write_bytecode = False  # as in production (the test environment may turn it off)
        from libcalico.runtime import codecache
        codecache.install("felix", {str(path)!r})
        import services.felix.messages  # 26 dataclasses: compiled now, so the file is stale
        from services.felix.memory import settle_after_startup
        programmed = asyncio.Event()
        programmed.set()
        asyncio.run(settle_after_startup(programmed))
        header, tables = marshal.loads(open({str(path)!r}, "rb").read())
        print(codecache.active() is None, "exec" in vars(dataclasses), len(tables["exec"]) >= 26 * 4)
    """)
    assert out == "True False True"
