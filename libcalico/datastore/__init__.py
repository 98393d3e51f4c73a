"""The datastore: one interface, several backends, chosen like Calico chooses them.

``DATASTORE_TYPE`` selects the backend: ``sqlite`` (the embedded default, file
``CALICO_DB``, default ``./calico.db``), ``etcdv3`` (``ETCD_ENDPOINTS``,
``ETCD_CA_CERT_FILE``, ``ETCD_CERT_FILE``, ``ETCD_KEY_FILE``) or
``kubernetes`` (``KUBECONFIG``).

``Client`` (the typed resource client) is imported on first use: it brings the
resource models (pydantic), which a daemon reading raw keys never needs
(Felix's start-up).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from libcalico.datastore.backend import KV, Backend, EventType, ListResult, WatchEvent
from libcalico.errors import ValidationError

if TYPE_CHECKING:
    from libcalico.datastore.client import Client

__all__ = ["KV", "Backend", "Client", "EventType", "ListResult", "WatchEvent", "backend_from_env"]

DATASTORE_TYPES = ("sqlite", "etcdv3", "kubernetes")


def __getattr__(name: str) -> Any:
    """``Client`` on first use (module-level lazy import)."""
    if name == "Client":
        from libcalico.datastore.client import Client

        globals()["Client"] = Client
        return Client
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def backend_from_env(env: Mapping[str, str] | None = None) -> Backend:
    """Open the backend that Calico's datastore environment variables select."""
    env = os.environ if env is None else env
    kind = env.get("DATASTORE_TYPE", "sqlite") or "sqlite"
    if kind == "sqlite":
        from libcalico.datastore.sqlite import SqliteBackend

        return SqliteBackend(env.get("CALICO_DB") or "./calico.db")
    if kind == "etcdv3":
        from libcalico.datastore.etcd import EtcdBackend

        return EtcdBackend.from_env(env)
    if kind == "kubernetes":
        from libcalico.datastore.kubernetes import KubernetesBackend

        return KubernetesBackend.from_env(env)
    raise ValidationError("DATASTORE_TYPE", f"unknown datastore type {kind!r}; expected one of {', '.join(DATASTORE_TYPES)}")
