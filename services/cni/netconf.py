"""Calico's CNI network configuration (the JSON on stdin), validated once, with Calico's field names.

Unknown top-level fields are kept and ignored, as Calico does; fields this
plugin reads must have the right type or the request fails with error code 7
naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from services.cni.errors import INVALID_NETWORK_CONFIG, CniError

DEFAULT_NETWORK = "k8s-pod-network"
DEFAULT_NODENAME_FILE = "/var/lib/calico/nodename"
DEFAULT_MTU_FILE = "/var/lib/calico/mtu"
DEFAULT_STATUS_DIR = "/var/run/calico/endpoint-status"
DEFAULT_LOCK_FILE = "/var/run/calico/ipam.lock"


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


def _flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(f"must be true or false, not {value!r}")


class IPAMConf(_Part):
    """The ``ipam`` section."""

    type: str
    assign_ipv4: Any = None
    assign_ipv6: Any = None
    ipv4_pools: list[str] = Field(default_factory=list)
    ipv6_pools: list[str] = Field(default_factory=list)

    @pydantic.field_validator("assign_ipv4", "assign_ipv6")
    @classmethod
    def _flags(cls, value: Any) -> bool | None:
        return _flag(value)

    @property
    def want_ipv4(self) -> bool:
        """IPv4 is assigned unless ``assign_ipv4`` is "false" (Calico's default)."""
        return self.assign_ipv4 is not False

    @property
    def want_ipv6(self) -> bool:
        """IPv6 is assigned only when ``assign_ipv6`` is "true"."""
        return self.assign_ipv6 is True


class PolicyConf(_Part):
    type: str = ""


class KubernetesConf(_Part):
    kubeconfig: str = ""
    k8s_api_root: str = ""
    node_name: str = ""


class ContainerSettings(_Part):
    allow_ip_forwarding: bool = False


class NetConf(_Part):
    """One network configuration, as Calico's ``types.NetConf`` reads it."""

    cniVersion: str = "0.1.0"
    name: str
    type: str
    ipam: IPAMConf | None = None
    nodename: str = ""
    nodename_file: str = DEFAULT_NODENAME_FILE
    nodename_file_optional: bool = False
    mtu: int = 0
    datastore_type: str = ""
    etcd_endpoints: str = ""
    etcd_discovery_srv: str = ""
    etcd_key_file: str = ""
    etcd_cert_file: str = ""
    etcd_ca_cert_file: str = ""
    calico_db: str = ""
    policy: PolicyConf | None = None
    kubernetes: KubernetesConf | None = None
    container_settings: ContainerSettings | None = None
    policy_setup_timeout_seconds: int = 0
    endpoint_status_dir: str = DEFAULT_STATUS_DIR
    ipam_lock_file: str = DEFAULT_LOCK_FILE
    log_level: str = "info"
    dns: dict[str, Any] | None = None
    args: dict[str, Any] | None = None
    prevResult: dict[str, Any] | None = None
    runtimeConfig: dict[str, Any] | None = None

    @pydantic.field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        return value

    @pydantic.field_validator("mtu", "policy_setup_timeout_seconds")
    @classmethod
    def _not_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("must not be negative")
        return value

    def arg_labels(self) -> dict[str, str]:
        """Labels passed the CNI way: ``args.cni.labels`` = [{"key": ..., "value": ...}]."""
        out: dict[str, str] = {}
        cni = (self.args or {}).get("cni")
        if not isinstance(cni, Mapping):
            return out
        labels = cni.get("labels") or []
        if not isinstance(labels, list):
            raise CniError(INVALID_NETWORK_CONFIG, "invalid network config",
                           "args.cni.labels: must be a list of {\"key\": ..., \"value\": ...}")
        for i, item in enumerate(labels):
            if not isinstance(item, Mapping) or not isinstance(item.get("key"), str) \
                    or not isinstance(item.get("value", ""), str):
                raise CniError(INVALID_NETWORK_CONFIG, "invalid network config",
                               f"args.cni.labels[{i}]: must be {{\"key\": <string>, \"value\": <string>}}")
            out[item["key"]] = item.get("value", "")
        return out


def parse_netconf(doc: Any) -> NetConf:
    """Validate a decoded configuration; raise CniError code 7 naming the bad field."""
    if not isinstance(doc, dict):
        raise CniError(INVALID_NETWORK_CONFIG, "invalid network config",
                       f"the configuration must be a JSON object, not {type(doc).__name__}")
    try:
        return NetConf.model_validate(doc)
    except pydantic.ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(configuration)"
            reason = "field is required" if err["type"] == "missing" else err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {reason}")
        raise CniError(INVALID_NETWORK_CONFIG, "invalid network config", "; ".join(problems)) from None


ENV_FIELDS = {
    "datastore_type": "DATASTORE_TYPE",
    "etcd_endpoints": "ETCD_ENDPOINTS",
    "etcd_discovery_srv": "ETCD_DISCOVERY_SRV",
    "etcd_key_file": "ETCD_KEY_FILE",
    "etcd_cert_file": "ETCD_CERT_FILE",
    "etcd_ca_cert_file": "ETCD_CA_CERT_FILE",
    "calico_db": "CALICO_DB",
}


def datastore_env(conf: NetConf, environ: Mapping[str, str]) -> dict[str, str]:
    """The datastore environment: the process's, overridden by the netconf's datastore fields (as Calico)."""
    env = dict(environ)
    for field, name in ENV_FIELDS.items():
        value = getattr(conf, field)
        if value:
            env[name] = value
    if conf.kubernetes is not None and conf.kubernetes.kubeconfig:
        env["KUBECONFIG"] = conf.kubernetes.kubeconfig
    return env
