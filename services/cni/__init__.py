"""Calico's CNI plugins: ``calico`` (the network plugin) and ``calico-ipam`` (its IPAM plugin).

Request handling is pure (:mod:`.request`, :mod:`.netconf`, :mod:`.workload`,
:mod:`.result`): environment and stdin in, a validated request out, result and
error JSON back. The drivers (:mod:`.calico`, :mod:`.ipam`) do the I/O: the
datastore, the network namespaces and the Felix status files.

The plugins run once per pod, and the runtime waits for each run, so start-up
time is part of every pod's start (docs/cni.md, "Latency"). When this package
is imported by the ``calico`` or ``calico-ipam`` executable itself, structlog
is loaded without ``rich``: structlog imports it only for pretty console
tracebacks, which the plugins (JSON logs on stderr) never print, and it costs
about a tenth of a run. Every other process imports both as usual.
"""

import os as _os
import sys as _sys

PLUGIN_EXECUTABLES = ("calico", "calico-ipam")


def _load_structlog_without_rich() -> None:
    """Import structlog with ``rich`` hidden, then make ``rich`` importable again."""
    _sys.modules["rich"] = None  # type: ignore[assignment]  # a None entry makes the import fail
    try:
        import structlog  # noqa: F401
    finally:
        del _sys.modules["rich"]


if (_os.path.basename(getattr(_sys, "argv", [""])[0] or "") in PLUGIN_EXECUTABLES
        and "structlog" not in _sys.modules and "rich" not in _sys.modules):
    _load_structlog_without_rich()
