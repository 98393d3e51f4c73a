"""calico-felix: the command line, the only module that reads argv and the environment.

How it works::

    main(argv)
      ├─ settings from flags, FELIX_* environment and /etc/calico/felix.cfg (local sources)
      ├─ hostname: FelixHostname, else $NODENAME, else the host name
      ├─ FelixConfiguration default + node.<hostname> read once from the datastore (bounded wait),
      │  or the config handed over by the run that restarted us
      ├─ launch(...)      settings = defaults < datastore < file < environment < flags; wire()
      └─ a datastore config change that needs a restart ends the run cleanly; main then re-executes
         itself in place (same pid, same network namespace) with that config handed over

The datastore is chosen as everywhere else (``DATASTORE_TYPE``, ``CALICO_DB``,
``ETCD_*``, ``KUBECONFIG``), with Felix's ``FELIX_DATASTORETYPE`` /
``FELIX_ETCD*`` parameters taking precedence.

Start-up cost: this module imports what the settings and the pre-read need
(the runtime, the settings, the raw datastore backend); the wiring
(:mod:`services.felix.app`: graph, dataplane, input) is imported by ``wire``,
once the settings are loaded and the health server is listening.
``tests/unit/felix/test_startup_imports.py`` keeps heavy libraries off this path.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any, cast

from libcalico.datastore import backend_from_env
from libcalico.errors import DatastoreError, ValidationError
from libcalico.runtime import (
    Lifecycle,
    Loaded,
    SettingsError,
    configure_logging,
    get_logger,
    launch,
)
from libcalico.typha.tls import TLSConfigError
from services.felix.config import (
    SPEC,
    FelixSettings,
    StartContext,
    datastore_env,
    datastore_layers,
    known_fields,
    local_overlay,
    read_felix_configuration,
)
from services.felix.dataplane.errors import RenderError
from services.felix.dataplane.settings import settings_from_config
from services.felix.input import TLS_NAMES, typha_tls

log = get_logger("felix")

HANDOVER_ENV = "CALICO_FELIX_RESTART_CONFIG"  # the datastore config handed to the next run on a restart
PREREAD_TIMEOUT = 10.0
EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``calico-felix`` / ``python -m services.felix``; returns the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    environ = dict(os.environ)
    handover = environ.pop(HANDOVER_ENV, None)
    try:
        local = SPEC.load(args, environ)
        ctx = start_context(local, args, environ)
        check_local(local)
    except SettingsError as exc:
        configure_logging("felix", "Info")
        log.error("settings_invalid", error=str(exc), param=exc.param or None, source=exc.source or None)
        return EXIT_USAGE
    layers = handed_over(handover, ctx) if handover else preread(ctx)

    async def wire(lc: Lifecycle, settings: FelixSettings) -> None:
        # The graph, the dataplane and the input are imported here: see the module docstring.
        from services.felix import app

        await app.wire(lc, settings, ctx)

    os.register_at_fork(after_in_child=forget_signal_handlers)

    # launch hands ``datastore`` to SettingsSpec.load, which takes (label, fields) layers as well.
    code = launch(SPEC, wire, args, environ, service="felix", datastore=cast(Any, layers))
    if ctx.restart.requested and code == 0:
        log.warning("restarting", reasons=ctx.restart.reasons)
        env = dict(os.environ)
        env[HANDOVER_ENV] = json.dumps(ctx.restart.datastore)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", "services.felix", *args], env)
    return code


def forget_signal_handlers() -> None:
    """In a forked child (pyroute2's namespace helper): default SIGTERM/SIGINT and no asyncio wakeup fd.

    Otherwise a SIGTERM its parent library sends the child is written into the
    wakeup socket the child shares with Felix's event loop, and Felix stops.
    """
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_context(local: Loaded[FelixSettings], argv: list[str], environ: Mapping[str, str]) -> StartContext:
    """Hostname, datastore variables and the local dataplane overlay."""
    settings = local.settings
    hostname = settings.felix_hostname or environ.get("NODENAME", "") or socket.gethostname()
    return StartContext(argv=argv, environ=dict(environ), hostname=hostname,
                        datastore_env=datastore_env(settings, environ), overlay=local_overlay(local))


def check_local(local: Loaded[FelixSettings]) -> None:
    """Checks the runtime cannot make: dataplane values as the dataplane reads them, Typha TLS all-or-nothing."""
    names = {b.field: b.param.name for b in SPEC.bound}
    for field, value in local_overlay(local).items():
        try:
            settings_from_config({field: value})
        except RenderError as exc:
            name = names[field]
            raise SettingsError(exc.reason, param=name, source=str(local.sources[name])) from None
    try:
        typha_tls(local.settings).check(TLS_NAMES)
    except TLSConfigError as exc:
        raise SettingsError(str(exc), source="Typha TLS settings") from None


def preread(ctx: StartContext) -> list[tuple[str, dict[str, Any]]]:
    """FelixConfiguration layers read from the datastore before start-up (none when it cannot be read)."""
    async def read() -> dict[str, dict[str, Any]]:
        async with backend_from_env(ctx.datastore_env) as backend:
            async with asyncio.timeout(PREREAD_TIMEOUT):
                return await read_felix_configuration(backend, ctx.hostname)

    try:
        specs = asyncio.run(read())
    except (DatastoreError, ValidationError, TimeoutError, OSError) as exc:
        ctx.notes.append(f"FelixConfiguration not read at start-up ({exc}); datastore values apply once the "
                         "stream is in sync (with a restart if a daemon parameter differs)")
        return []
    return datastore_layers(specs.get("default"), specs.get(f"node.{ctx.hostname}"), ctx.hostname)


def handed_over(text: str, ctx: StartContext) -> list[tuple[str, dict[str, Any]]]:
    """The datastore config the previous run restarted for."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.notes.append(f"{HANDOVER_ENV} is not JSON ({exc}); ignored")
        return []
    if not isinstance(spec, dict):
        return []
    return [("FelixConfiguration (as of the restart)", known_fields(spec))]
