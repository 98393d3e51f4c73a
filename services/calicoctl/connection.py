"""Where calicoctl's datastore is: a CalicoAPIConfig file, else Calico's environment variables.

The config file (``-c/--config``, default ``/etc/calico/calicoctl.cfg``) is Calico's::

    apiVersion: projectcalico.org/v3
    kind: CalicoAPIConfig
    metadata: {}
    spec:
      datastoreType: etcdv3
      etcdEndpoints: http://127.0.0.1:2379

Its ``spec`` fields map onto the environment variables that
:func:`libcalico.datastore.backend_from_env` reads (``calicoDB`` is this
project's name for the sqlite file, ``CALICO_DB``). As in Calico, a missing
default file means "use the environment"; a file named on the command line
must exist.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping

import yaml

from libcalico.datastore import Client, backend_from_env
from libcalico.errors import CalicoError
from services.calicoctl.errors import ClientConfigError

DEFAULT_CONFIG_PATH = "/etc/calico/calicoctl.cfg"

SPEC_TO_ENV = {
    "datastoreType": "DATASTORE_TYPE",
    "calicoDB": "CALICO_DB",
    "etcdEndpoints": "ETCD_ENDPOINTS",
    "etcdDiscoverySrv": "ETCD_DISCOVERY_SRV",
    "etcdUsername": "ETCD_USERNAME",
    "etcdPassword": "ETCD_PASSWORD",
    "etcdKeyFile": "ETCD_KEY_FILE",
    "etcdCertFile": "ETCD_CERT_FILE",
    "etcdCACertFile": "ETCD_CA_CERT_FILE",
    "kubeconfig": "KUBECONFIG",
    "k8sAPIEndpoint": "K8S_API_ENDPOINT",
    "k8sKeyFile": "K8S_KEY_FILE",
    "k8sCertFile": "K8S_CERT_FILE",
    "k8sCAFile": "K8S_CA_FILE",
    "k8sToken": "K8S_TOKEN",
    "k8sInsecureSkipTLSVerify": "K8S_INSECURE_SKIP_TLS_VERIFY",
}


def datastore_env(config_path: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The datastore environment: ``environ`` overlaid with the config file's spec, if there is one."""
    env = dict(environ)
    path = config_path or DEFAULT_CONFIG_PATH
    if not os.path.exists(path):
        if config_path is not None and config_path != DEFAULT_CONFIG_PATH:
            raise ClientConfigError(f"config file {path} does not exist")
        return env
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise ClientConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ClientConfigError(f"config file {path} is not valid YAML or JSON: {exc}") from None
    env.update(_spec_env(path, data))
    return env


def _spec_env(path: str, data: object) -> dict[str, str]:
    if not isinstance(data, dict):
        raise ClientConfigError(f"config file {path} must hold a CalicoAPIConfig map")
    kind = data.get("kind")
    if kind != "CalicoAPIConfig":
        raise ClientConfigError(f"config file {path}: kind must be 'CalicoAPIConfig', not {kind!r}")
    api = data.get("apiVersion")
    if api not in ("projectcalico.org/v3", None):
        raise ClientConfigError(f"config file {path}: apiVersion must be 'projectcalico.org/v3', not {api!r}")
    spec = data.get("spec") or {}
    if not isinstance(spec, dict):
        raise ClientConfigError(f"config file {path}: spec must be a map")
    out: dict[str, str] = {}
    for field, value in spec.items():
        env_name = SPEC_TO_ENV.get(field)
        if env_name is None:
            raise ClientConfigError(f"config file {path}: spec.{field}: unknown field")
        if value is None:
            continue
        out[env_name] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


@contextlib.asynccontextmanager
async def open_client(env: Mapping[str, str]) -> AsyncIterator[Client]:
    """Open the backend the environment selects and yield a Client on it; close it afterwards."""
    try:
        backend = backend_from_env(env)
    except (CalicoError, ImportError, OSError) as exc:
        raise ClientConfigError(str(exc)) from None
    async with backend:
        yield Client(backend)
