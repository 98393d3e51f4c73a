"""Running one CNI invocation: read stdin and the environment, dispatch, print JSON, exit.

Everything the two plugins share at their edge lives here: logging to stderr
(stdout carries only the result or error document), opening the datastore the
configuration names, the node name, the host-wide IPAM lock, and the mapping
of library errors to CNI error codes.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import Any, NoReturn

import structlog

from libcalico.datastore import backend_from_env
from libcalico.datastore.backend import Backend
from libcalico.errors import CalicoError, DatastoreError, Unavailable, ValidationError
from libcalico.ipam import NoFreeAddresses, NoQualifiedPool
from services.cni.errors import (
    ADDRESSES_EXHAUSTED,
    DATASTORE_FAILURE,
    INTERNAL,
    INVALID_NETWORK_CONFIG,
    TRY_AGAIN_LATER,
    CniError,
)
from services.cni.netconf import NetConf, datastore_env
from services.cni.request import LATEST_VERSION, CniRequest, parse_request
from services.cni.result import error_json, version_json
from services.cni.workload import choose_nodename

log = structlog.get_logger("cni")

Handler = Callable[[CniRequest, Mapping[str, str]], Coroutine[Any, Any, dict[str, Any] | None]]
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "warn": logging.WARNING,
          "error": logging.ERROR, "fatal": logging.CRITICAL, "panic": logging.CRITICAL}


def configure_logging(level: str = "info") -> None:
    """Log JSON lines to stderr (never stdout: that is the runtime's)."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer()],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level.lower(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def _guess_version(stdin: bytes) -> str:
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        doc = json.loads(stdin.decode("utf-8"))
        if isinstance(doc, dict) and isinstance(doc.get("cniVersion"), str) and doc["cniVersion"]:
            return str(doc["cniVersion"])
    return LATEST_VERSION


def run(handler: Handler, env: Mapping[str, str], stdin: bytes) -> tuple[int, str]:
    """Handle one invocation; return the exit status and what to print on stdout."""
    version = _guess_version(stdin)
    try:
        req = parse_request(env, stdin)
        if req.conf is not None:
            configure_logging(req.conf.log_level)
        if req.command == "VERSION":
            return 0, json.dumps(version_json(req.version))
        out: dict[str, Any] | None = asyncio.run(handler(req, env))
    except CniError as err:
        log.warning("cni_failed", code=err.code, msg=err.msg, details=err.details)
        return 1, json.dumps(error_json(err, version))
    except Exception as exc:  # the invocation's root: report, never a traceback on stdout
        log.exception("cni_internal_error")
        return 1, json.dumps(error_json(CniError(INTERNAL, "internal error", f"{type(exc).__name__}: {exc}"),
                                        version))
    return 0, json.dumps(out) if out is not None else ""


def main(handler: Handler) -> NoReturn:
    """The console-script entry: read stdin, run, print, exit."""
    configure_logging(os.environ.get("CALICO_CNI_LOG_LEVEL", "info"))
    stdin = b"" if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer.read()
    status, text = run(handler, os.environ, stdin)
    if text:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    sys.exit(status)


def to_cni_error(exc: BaseException) -> CniError:
    """The CNI error a library failure becomes."""
    if isinstance(exc, CniError):
        return exc
    if isinstance(exc, NoFreeAddresses):
        return CniError(ADDRESSES_EXHAUSTED, "no free addresses", str(exc))
    if isinstance(exc, NoQualifiedPool):
        return CniError(INVALID_NETWORK_CONFIG, "no usable IP pool", str(exc))
    if isinstance(exc, ValidationError):
        return CniError(INVALID_NETWORK_CONFIG, "invalid configuration", str(exc))
    if isinstance(exc, Unavailable | TimeoutError):
        return CniError(TRY_AGAIN_LATER, "datastore unavailable", str(exc))
    if isinstance(exc, DatastoreError | CalicoError):
        return CniError(DATASTORE_FAILURE, "datastore error", str(exc))
    return CniError(INTERNAL, "internal error", f"{type(exc).__name__}: {exc}")


@contextlib.asynccontextmanager
async def open_backend(conf: NetConf, environ: Mapping[str, str]) -> AsyncIterator[Backend]:
    """The datastore the configuration (over the environment) names."""
    try:
        backend = backend_from_env(datastore_env(conf, environ))
    except (CalicoError, ImportError, OSError) as exc:
        raise CniError(INVALID_NETWORK_CONFIG, "cannot open the datastore", str(exc)) from None
    async with backend:
        yield backend


def nodename(conf: NetConf) -> str:
    """This node's name (netconf ``nodename``, ``kubernetes.node_name``, the nodename file, the hostname)."""
    contents = None
    with contextlib.suppress(OSError):
        with open(conf.nodename_file, encoding="utf-8") as fh:
            contents = fh.read()
    k8s_node = conf.kubernetes.node_name if conf.kubernetes else ""
    if not conf.nodename and not k8s_node and contents is None and not conf.nodename_file_optional:
        raise CniError(INVALID_NETWORK_CONFIG, "cannot determine the node name",
                       f"{conf.nodename_file} does not exist: check that calico/node has written it, or set "
                       "\"nodename\" or \"nodename_file_optional\": true in the network configuration")
    return choose_nodename(conf.nodename, k8s_node, contents, socket.gethostname())


@contextlib.contextmanager
def ipam_lock(path: str) -> Iterator[None]:
    """Hold the host-wide IPAM lock (best effort: without a usable lock file, proceed unlocked)."""
    fd = None
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError as exc:
        log.warning("ipam_lock_unavailable", path=path, error=str(exc))
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
