"""Felix's start-up stays light: no heavy library is imported before the first dataplane apply unless used.

Each check runs in a fresh interpreter (imports are process-wide) and reports which
of the heavy modules got imported, and from where (the first importing line of this
project), so a failure names the import to make lazy.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from libcalico.datastore.client import Client
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.resources import parse_resource

# Heavy for start-up and not needed before the first apply when there is nothing to validate:
# HTTP framework, resource models, console rendering, netlink, Prometheus (made on the first scrape),
# the command-line parser (the usual command lines are read without it) and ctypes.util (its
# find_library runs ``ldconfig`` in a subprocess; libc is the process's own symbols).
HEAVY = ("aiohttp", "pydantic", "libcalico.resources", "rich", "pyroute2", "prometheus_client", "argparse",
         "ctypes.util")

# Records, for each heavy module, the first line of this project that imported it.
TRACER = """
import sys, traceback
HEAVY = HEAVY_NAMES
FIRST = {}
class Tracer:
    def find_spec(self, name, path=None, target=None):
        for heavy in HEAVY:
            if (name == heavy or name.startswith(heavy + ".")) and heavy not in FIRST:
                frames = [f for f in traceback.extract_stack()[:-1]
                          if "/libcalico/" in f.filename or "/services/" in f.filename]
                FIRST[heavy] = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
        return None
sys.meta_path.insert(0, Tracer())
def report(**extra):
    import json
    heavy = {h: FIRST.get(h, "?") for h in HEAVY if h in sys.modules}
    print(json.dumps({"heavy": heavy, **extra}))
""".replace("HEAVY_NAMES", repr(HEAVY))


def run_python(code: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``code`` after the tracer in a fresh interpreter; the last stdout line is its JSON report."""
    proc = subprocess.run([sys.executable, "-c", TRACER + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return report


def seed(db: str, docs: list[dict[str, Any]]) -> None:
    async def write() -> None:
        backend = SqliteBackend(db)
        try:
            client = Client(backend)
            for doc in docs:
                await client.apply(parse_resource(doc))
        finally:
            await backend.close()

    asyncio.run(write())


def felix_configuration(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "projectcalico.org/v3", "kind": "FelixConfiguration", "metadata": {"name": name},
            "spec": spec}


def test_cli_settings_preread_logging_and_probes_import_nothing_heavy(tmp_path: Path) -> None:
    """`import services.felix.cli`, settings, the FelixConfiguration pre-read (raw values), logging and the
    health server answering probes: none of the heavy modules."""
    db = str(tmp_path / "calico.db")
    seed(db, [felix_configuration("default", {"reportingInterval": "20s", "healthPort": 9100}),
              felix_configuration("node.node1", {"healthPort": 9200})])
    report = run_python(f"""
        import asyncio, http.client
        import services.felix.cli as cli
        from libcalico.runtime import configure_logging
        from libcalico.runtime.health import HealthAggregator, StatusServer
        from services.felix.config import SPEC

        env = {{"DATASTORE_TYPE": "sqlite", "CALICO_DB": {db!r}, "FELIX_FELIXHOSTNAME": "node1"}}
        local = SPEC.load(["-c", "/dev/null"], env)
        ctx = cli.start_context(local, ["-c", "/dev/null"], env)
        cli.check_local(local)
        layers = cli.preread(ctx)
        configure_logging("felix", "Info")
        settings = SPEC.load(["-c", "/dev/null"], env, layers).settings

        def made():
            raise AssertionError("the registry was made without a scrape")

        async def probe():
            agg = HealthAggregator()
            agg.register("first").report(ready=True)
            async with StatusServer("127.0.0.1", 0, health=agg, registry=made) as server:
                def get():
                    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
                    conn.request("GET", "/readiness")
                    return conn.getresponse().status
                return await asyncio.get_running_loop().run_in_executor(None, get)

        report(layers=layers, health_port=settings.health_port, status=asyncio.run(probe()))
    """)
    assert report["layers"] == [["FelixConfiguration default", {"healthPort": 9100, "reportingInterval": "20s"}],
                                ["FelixConfiguration node.node1", {"healthPort": 9200}]]
    assert (report["health_port"], report["status"]) == (9200, 200)
    assert report["heavy"] == {}, f"imported on Felix's start-up path (module: first importer): {report['heavy']}"


def test_wiring_up_to_the_first_apply_imports_nothing_heavy(tmp_path: Path) -> None:
    """The real wiring (`app.assemble`) on an empty datastore, streamed until the graph is in sync and the
    dataplane holds its first batch (not applied: no kernel here): none of the heavy modules."""
    db = str(tmp_path / "calico.db")
    seed(db, [])
    report = run_python(f"""
        import asyncio, time
        import services.felix.cli as cli
        from libcalico.datastore import backend_from_env
        from services.felix import app
        from services.felix.config import SPEC

        env = {{"DATASTORE_TYPE": "sqlite", "CALICO_DB": {db!r}, "FELIX_FELIXHOSTNAME": "node1",
                "FELIX_ENDPOINTSTATUSPATHPREFIX": ""}}
        local = SPEC.load([], env)
        ctx = cli.start_context(local, [], env)

        async def main():
            async with backend_from_env(ctx.datastore_env) as backend:
                parts = app.assemble(local.settings, ctx, backend, lambda reasons, config: None)
                sent = []
                send = parts.dataplane.send
                parts.dataplane.send = lambda msg: (sent.append(type(msg).__name__), send(msg))
                task = asyncio.create_task(parts.source.run())
                deadline = time.monotonic() + 30
                while "InSync" not in sent:
                    assert time.monotonic() < deadline, "the graph never reached in-sync"
                    await asyncio.sleep(0.01)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                return parts.pipeline.in_sync, sent

        in_sync, sent = asyncio.run(main())
        report(in_sync=in_sync, sent=sent)
    """)
    assert report["in_sync"] is True and "InSync" in report["sent"]
    assert report["heavy"] == {}, f"imported before the first apply (module: first importer): {report['heavy']}"


def test_package_inits_are_lazy_and_keep_their_public_names() -> None:
    """`libcalico.datastore` and `libcalico.syncer` import their heavy parts on first use of a name."""
    report = run_python("""
        import sys
        import libcalico.datastore, libcalico.syncer
        from libcalico.syncer import SyncStatus, Update
        light = [m for m in ("libcalico.datastore.client", "libcalico.syncer.syncer", *HEAVY) if m in sys.modules]
        from libcalico.datastore import Client
        from libcalico.syncer import ValidationFilter, new_syncer, FELIX
        import libcalico.syncer as syncer
        missing = [n for n in syncer.__all__ if not hasattr(syncer, n)]
        report(light=light, client=Client.__module__, felix=FELIX, missing=missing,
               listed="new_syncer" in dir(syncer))
    """)
    assert report["light"] == []
    assert (report["client"], report["felix"], report["missing"], report["listed"]) == (
        "libcalico.datastore.client", "felix", [], True)
