"""The service runtime every Calico-py service starts from.

- :mod:`~libcalico.runtime.logs`: ``configure_logging`` (structlog, JSON lines off a terminal).
- :mod:`~libcalico.runtime.settings`: declared parameters, one precedence
  (defaults < datastore < config file < environment < flags), sources recorded.
- :mod:`~libcalico.runtime.lifecycle`: resource stack, named root tasks, stop event, drain.
- :mod:`~libcalico.runtime.health`: health aggregator, /liveness /readiness /metrics server.
- :mod:`~libcalico.runtime.entrypoint`: ``launch``, the one call a service's ``cli.main`` makes.

See ``docs/runtime.md``.
"""

# logs first: it is the module that imports structlog (without rich, see its docstring).
from libcalico.runtime.logs import configure_logging, get_logger

# isort: split
from libcalico.runtime.entrypoint import launch
from libcalico.runtime.errors import ServiceError, SettingsError
from libcalico.runtime.health import HealthAggregator, Reporter, StatusServer, new_registry
from libcalico.runtime.lifecycle import Lifecycle, run, serve
from libcalico.runtime.settings import (
    Loaded,
    ServiceSettings,
    SettingsSpec,
    Source,
    SourceKind,
    setting,
)

__all__ = [
    "HealthAggregator",
    "Lifecycle",
    "Loaded",
    "Reporter",
    "ServiceError",
    "ServiceSettings",
    "SettingsError",
    "SettingsSpec",
    "Source",
    "SourceKind",
    "StatusServer",
    "configure_logging",
    "get_logger",
    "launch",
    "new_registry",
    "run",
    "serve",
    "setting",
]
