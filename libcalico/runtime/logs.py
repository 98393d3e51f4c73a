"""Logging for every service: structlog, one event per line, configured in one place.

How it works::

    structlog.get_logger(...).info("event", k=v) ─┐
                                                  ├─► stdlib root handler ─► ProcessorFormatter ─► stderr
    logging.getLogger("aiohttp").warning(...)   ──┘        (JSON, or console on a terminal)

Both paths gather the same fields: the event, ``level``, ``timestamp`` (UTC ISO),
``logger``, ``service`` and anything bound with
``structlog.contextvars.bind_contextvars`` (per-connection context). Level
names are Calico's (``logSeverityScreen``: Debug, Info, Warning, Error, Fatal),
case-insensitive.

JSON lines keep the standard library's spacing (``"event": "x"``): log
consumers match on it (the Felix daemon test fixture does), and the
serializer is not where a log line's time goes (orjson would save ~3 us of
a ~40 us line, measured).

Start-up cost: ``structlog`` imports its console module at import time, and
that module imports rich (~20 ms) when it can, only to pick a default
traceback formatter. This module is the first to import structlog in a
service process (``libcalico.runtime`` imports it first), with rich hidden for
that one import; rich is loaded only when a console renderer is really asked
for (a terminal), to format its tracebacks.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO


def _import_structlog_without_rich() -> None:
    """Import structlog with ``rich`` unimportable for the duration (see the module docstring)."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes ``import rich`` raise ImportError
    try:
        import structlog  # noqa: F401
    finally:
        if sys.modules.get("rich", 0) is None:
            del sys.modules["rich"]


_import_structlog_without_rich()

import structlog  # noqa: E402
from structlog.typing import EventDict, ExcInfo, Processor, WrappedLogger  # noqa: E402

from libcalico.runtime.errors import SettingsError  # noqa: E402

#: Calico severity name (lower case) -> stdlib level.
LEVELS: dict[str, int] = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "critical": logging.CRITICAL,
    "panic": logging.CRITICAL,
}

_HANDLER_MARK = "_calico_runtime_handler"


def level_number(level: str | int) -> int:
    """The stdlib level for a Calico severity name (any case) or a number; raise SettingsError."""
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise SettingsError(
            "unknown log severity; expected one of Debug, Info, Warning, Error, Fatal", param="LogSeverityScreen",
            raw=level,
        ) from None


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


class _AddService:
    def __init__(self, service: str) -> None:
        self.service = service

    def __call__(self, logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
        event_dict.setdefault("service", self.service)
        return event_dict


_LEAD = ("timestamp", "level", "service", "logger", "event")


def _lead_fields(logger: WrappedLogger, name: str, event_dict: EventDict) -> EventDict:
    """Put the fixed fields first so that JSON lines read left to right."""
    out = {key: event_dict.pop(key) for key in _LEAD if key in event_dict}
    out.update(event_dict)
    return out


def console_traceback(sio: TextIO, exc_info: ExcInfo) -> None:
    """Tracebacks of the console renderer: rich's when it is installed, else the plain ones."""
    try:
        from rich.console import Console
        from rich.traceback import Traceback
    except ImportError:
        structlog.dev.plain_traceback(sio, exc_info)
        return
    sio.write("\n")
    Console(file=sio, color_system="truecolor" if _isatty(sio) else None).print(
        Traceback.from_exception(*exc_info, show_locals=False))


def configure_logging(
    service: str,
    level: str | int = "Info",
    json: bool | None = None,
    *,
    stream: TextIO | None = None,
) -> None:
    """Send structlog and stdlib logging to ``stream`` (stderr): JSON unless it is a terminal.

    Calling it again replaces the previous configuration (tests, a level change).
    """
    out = sys.stderr if stream is None else stream
    if json is None:
        json = not _isatty(out)
    final: list[Processor] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, _AddService(service)]
    if json:
        tracebacks = structlog.processors.ExceptionRenderer(
            structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        )
        final += [tracebacks, _lead_fields, structlog.processors.JSONRenderer(sort_keys=False)]
    else:
        final.append(structlog.dev.ConsoleRenderer(colors=_isatty(out), exception_formatter=console_traceback))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=final,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _HANDLER_MARK, False):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level_number(level))
    logging.captureWarnings(True)
    # aiohttp logs every request at INFO on its access logger; health probes would flood the log.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: a logger used before this call must still follow the configuration made here.
        cache_logger_on_first_use=False,
    )


def set_level(level: str | int) -> None:
    """Change the level of every logger at run time (Calico name or number)."""
    logging.getLogger().setLevel(level_number(level))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def get_logger(name: str | None = None, **initial: Any) -> structlog.stdlib.BoundLogger:
    """A structlog logger (named after the module by convention) with optional bound values."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name, **initial)
    return logger
