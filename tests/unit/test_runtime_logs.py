"""Logging: one JSON event per line, contextvars merged, stdlib routed, Calico level names."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from libcalico.runtime.errors import SettingsError
from libcalico.runtime.logs import configure_logging, get_logger, level_number, set_level


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A log stream; the global logging configuration is restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buf = io.StringIO()
    try:
        yield buf
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
        logging.captureWarnings(False)


def lines(buf: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_json_event_per_line_with_context(stream: io.StringIO) -> None:
    configure_logging("typha", "Info", stream=stream)
    log = get_logger("typha.server")
    structlog.contextvars.bind_contextvars(peer="10.0.0.1:4000")
    log.info("client_connected", syncer="felix")
    structlog.contextvars.clear_contextvars()
    log.info("client_gone")
    first, second = lines(stream)
    assert first["event"] == "client_connected"
    assert first["peer"] == "10.0.0.1:4000" and first["syncer"] == "felix"
    assert (first["level"], first["service"], first["logger"]) == ("info", "typha", "typha.server")
    assert first["timestamp"].endswith("Z")
    assert list(first)[:5] == ["timestamp", "level", "service", "logger", "event"]
    assert "peer" not in second


def test_stdlib_logging_is_routed_through_structlog(stream: io.StringIO) -> None:
    configure_logging("felix", "debug", stream=stream)
    structlog.contextvars.bind_contextvars(conn=7)
    logging.getLogger("aiohttp.server").warning("bad request from %s", "1.2.3.4")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("old api", DeprecationWarning, stacklevel=1)
    record, warned = lines(stream)
    assert record["event"] == "bad request from 1.2.3.4"
    assert (record["level"], record["logger"], record["service"], record["conn"]) == (
        "warning", "aiohttp.server", "felix", 7)
    assert warned["logger"] == "py.warnings" and "old api" in warned["event"]


@pytest.mark.parametrize(("level", "shown"), [("WARNING", ["warning", "error"]), ("error", ["error"]),
                                              ("Debug", ["debug", "info", "warning", "error"]),
                                              ("FATAL", [])])
def test_calico_level_names_filter(stream: io.StringIO, level: str, shown: list[str]) -> None:
    configure_logging("felix", level, stream=stream)
    log = get_logger("x")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [line["level"] for line in lines(stream)] == shown


def test_set_level_at_run_time(stream: io.StringIO) -> None:
    configure_logging("felix", "Info", stream=stream)
    get_logger("x").debug("hidden")
    set_level("Debug")
    get_logger("x").debug("shown")
    assert [line["event"] for line in lines(stream)] == ["shown"]


def test_unknown_level_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="LogSeverityScreen.*expected one of Debug, Info, Warning, Error, Fatal"):
        level_number("loud")
    assert level_number("fatal") == logging.CRITICAL
    assert level_number("Trace") == logging.DEBUG


def test_exception_stays_on_one_line(stream: io.StringIO) -> None:
    configure_logging("felix", "Info", stream=stream)
    secret = "hunter2"
    try:
        raise ValueError(f"bad {len(secret)}")
    except ValueError:
        get_logger("x").exception("task_failed", task="syncer")
    text = stream.getvalue()
    assert text.count("\n") == 1
    (line,) = lines(stream)
    assert line["exception"][0]["exc_type"] == "ValueError"
    assert "hunter2" not in text  # no local variables in tracebacks


def test_console_renderer_when_not_json(stream: io.StringIO) -> None:
    configure_logging("felix", "Info", json=False, stream=stream)
    get_logger("x").info("started", port=9099)
    text = stream.getvalue()
    assert "started" in text and "port=9099" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_auto_json_off_a_terminal_and_reconfigure_replaces_handler(stream: io.StringIO) -> None:
    configure_logging("felix", "Info", stream=stream)
    configure_logging("felix", "Info", stream=stream)
    get_logger("x").info("once")
    assert [line["event"] for line in lines(stream)] == ["once"]


def test_rich_is_loaded_only_for_a_console_renderer() -> None:
    """structlog would import rich at import time; the runtime hides it until a console asks for it."""
    code = textwrap.dedent("""
        import io, sys
        import libcalico.runtime
        from libcalico.runtime.logs import configure_logging, get_logger
        before = ("structlog" in sys.modules, "rich" in sys.modules)
        configure_logging("x", "Info", json=True, stream=io.StringIO())
        json_only = "rich" in sys.modules
        out = io.StringIO()
        configure_logging("x", "Info", json=False, stream=out)
        try:
            raise KeyError("boom")
        except KeyError:
            get_logger("x").exception("failed")
        print(before, json_only, "rich" in sys.modules, "KeyError" in out.getvalue())
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "(True, False) False True True"
