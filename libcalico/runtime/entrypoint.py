"""The one call a service's ``cli.main`` makes: settings, logging, status servers, lifecycle.

How it works::

    launch(spec, wire, argv, environ)
      ├─ configure_logging(service, "Info")        so that a bad setting is a JSON log line
      ├─ spec.load(argv, environ)                  bad value: "settings_invalid", exit code 2
      ├─ configure_logging(service, LogSeverityScreen); one "settings_loaded" line with sources
      └─ run(service, ...)                         health/metrics servers first, then wire(lc, settings)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeGuard, TypeVar

import structlog

from libcalico.runtime.errors import SettingsError
from libcalico.runtime.health import StatusConfig, open_status_from_settings
from libcalico.runtime.lifecycle import Lifecycle, run
from libcalico.runtime.logs import configure_logging
from libcalico.runtime.settings import SettingsSpec

S = TypeVar("S")

log = structlog.get_logger(__name__)

EXIT_USAGE = 2


def launch(
    spec: SettingsSpec[S],
    wire: Callable[[Lifecycle, S], Awaitable[None]],
    argv: Sequence[str],
    environ: Mapping[str, str],
    *,
    service: str,
    drain_timeout: float | Callable[[S], float] = 10.0,
    datastore: Mapping[str, Any] | None = None,
) -> int:
    """Load settings, configure logging, open health/metrics and run the service; return the exit code."""
    configure_logging(service, "Info")
    try:
        loaded = spec.load(argv, environ, datastore)
    except SettingsError as exc:
        log.error("settings_invalid", error=str(exc), param=exc.param or None, source=exc.source or None)
        return EXIT_USAGE
    settings = loaded.settings
    configure_logging(service, getattr(settings, "log_severity_screen", "Info"))
    log.info("settings_loaded", **loaded.log_fields())
    for warning in loaded.warnings:
        log.warning("settings_warning", detail=warning)
    timeout = drain_timeout(settings) if callable(drain_timeout) else drain_timeout

    async def wiring(lc: Lifecycle) -> None:
        if _has_status(settings):
            # The registry (and prometheus-client) is made when metrics are first asked for.
            await open_status_from_settings(lc.stack, settings, lc.health, lambda: lc.registry)
        await wire(lc, settings)

    return run(service, wiring, drain_timeout=timeout)


def _has_status(settings: Any) -> TypeGuard[StatusConfig]:
    return all(hasattr(settings, name) for name in StatusConfig.__annotations__)
