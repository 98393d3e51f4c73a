"""Who a CNI request is for, and every name Calico derives from that (pure).

- Kubernetes (``K8S_POD_NAMESPACE`` and ``K8S_POD_NAME`` in ``CNI_ARGS``):
  WorkloadEndpoint ``<node>-k8s-<pod>-<iface>``, host veth ``cali`` + the first
  11 hex digits of sha1("<namespace>.<pod>"), profile ``kns.<namespace>``.
- Anything else (orchestrator ``cni``): ``<node>-cni-<containerID>-<iface>`` in
  namespace ``default``, host veth ``cali`` + the first 11 characters of the
  container ID, profile ``<network name>``.

In both, a ``-`` inside a name part is doubled, the IPAM handle is
``<network name>.<containerID>`` and Felix's status file for the endpoint is
``<endpoint_status_dir>/<orchestrator> <namespace>%2F<workload> <iface>``
(each part URL-path-escaped, joined by spaces, as Calico names it).

Labels: ``args.cni.labels`` in the network configuration (the CNI
convention) and ``CALICO_LABELS=key:value,key2:value2`` in ``CNI_ARGS``; the
latter wins. Calico's own ``projectcalico.org/namespace`` and
``projectcalico.org/orchestrator`` are always set.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.cni.errors import INVALID_ENVIRONMENT, INVALID_NETWORK_CONFIG, CniError
from services.cni.request import CniRequest

HOST_MAC = "ee:ee:ee:ee:ee:ee"
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::ecee:eeff:feee:eeee"
LABEL_ARG = "CALICO_LABELS"
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                        r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def veth_name_for_workload(namespace: str, pod: str, prefix: str = "cali") -> str:
    """Calico's host-side veth name for a Kubernetes pod."""
    return prefix + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def escape_dashes(part: str, what: str) -> str:
    """One name segment with ``-`` doubled; raise CniError when it starts or ends with ``-``."""
    if not part:
        raise CniError(INVALID_NETWORK_CONFIG, "cannot name the workload endpoint", f"{what} is empty")
    if part.startswith("-") or part.endswith("-"):
        raise CniError(INVALID_NETWORK_CONFIG, "cannot name the workload endpoint",
                       f"{what} {part!r} must not begin or end with '-'")
    return part.replace("-", "--")


def parse_label_arg(text: str) -> dict[str, str]:
    """``key:value,key2:value2`` as a dict; raise CniError code 4 for a malformed entry."""
    out: dict[str, str] = {}
    for item in text.split(","):
        if not item:
            continue
        key, sep, value = item.partition(":")
        if not sep:
            raise CniError(INVALID_ENVIRONMENT, f"invalid {LABEL_ARG} in CNI_ARGS", f"{item!r} is not key:value")
        out[key] = value
    return out


def check_labels(labels: Mapping[str, str]) -> None:
    """Raise CniError code 7 for a label Kubernetes would refuse."""
    for key, value in labels.items():
        if len(key) > 316 or not _LABEL_KEY.match(key):
            raise CniError(INVALID_NETWORK_CONFIG, "invalid label", f"label key {key!r} is not a valid label name")
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise CniError(INVALID_NETWORK_CONFIG, "invalid label", f"label {key}: value {value!r} is not valid")


@dataclass(frozen=True)
class Workload:
    """The endpoint a request creates or removes."""

    orchestrator: str
    node: str
    namespace: str
    workload: str  # pod name (k8s) or container ID (cni)
    container_id: str
    endpoint: str
    network: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def is_k8s(self) -> bool:
        return self.orchestrator == "k8s"

    @property
    def wep_name(self) -> str:
        """Calico's WorkloadEndpoint name."""
        middle = "pod" if self.is_k8s else "containerID"
        return "-".join([escape_dashes(self.node, "node name"), self.orchestrator,
                         escape_dashes(self.workload, middle), escape_dashes(self.endpoint, "interface name")])

    @property
    def host_veth(self) -> str:
        """The host side of the veth pair."""
        if self.is_k8s:
            return veth_name_for_workload(self.namespace, self.workload)
        return "cali" + self.container_id[:11]

    @property
    def handle(self) -> str:
        """The IPAM handle: ``<network>.<containerID>``."""
        return f"{self.network}.{self.container_id}"

    @property
    def status_filename(self) -> str:
        """The file Felix writes under ``endpoint_status_dir`` once the endpoint's policy is in place."""
        parts = [self.orchestrator, f"{self.namespace}/{self.workload}", self.endpoint]
        return " ".join(urllib.parse.quote(p, safe="") for p in parts)

    def ipam_attrs(self, now: datetime.datetime) -> dict[str, str]:
        """The secondary attributes stored with each allocation (Calico's keys)."""
        attrs = {"node": self.node, "timestamp": now.strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")}
        if self.is_k8s:
            attrs["namespace"] = self.namespace
            attrs["pod"] = self.workload
        return attrs

    def endpoint_doc(self, addresses: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface],
                     mac: str) -> dict[str, Any]:
        """The WorkloadEndpoint resource for this workload with these addresses."""
        labels = dict(self.labels)
        labels["projectcalico.org/namespace"] = self.namespace
        labels["projectcalico.org/orchestrator"] = self.orchestrator
        spec: dict[str, Any] = {
            "orchestrator": self.orchestrator,
            "node": self.node,
            "containerID": self.container_id,
            "endpoint": self.endpoint,
            "interfaceName": self.host_veth,
            "ipNetworks": [f"{a.ip}/{a.max_prefixlen}" for a in addresses],
            "profiles": [f"kns.{self.namespace}"] if self.is_k8s else [self.network],
        }
        if self.is_k8s:
            spec["pod"] = self.workload
        else:
            spec["workload"] = self.workload
        if mac:
            spec["mac"] = mac
        return {"apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
                "metadata": {"name": self.wep_name, "namespace": self.namespace, "labels": labels},
                "spec": spec}


def resolve_workload(req: CniRequest, node: str) -> Workload:
    """The workload a request names, from CNI_ARGS and the configuration."""
    conf = req.netconf
    labels = conf.arg_labels()
    if LABEL_ARG in req.args:
        labels.update(parse_label_arg(req.args[LABEL_ARG]))
    check_labels(labels)
    namespace = req.args.get("K8S_POD_NAMESPACE", "")
    pod = req.args.get("K8S_POD_NAME", "")
    if namespace and pod:
        return Workload("k8s", node, namespace, pod, req.container_id, req.ifname, conf.name, labels)
    return Workload("cni", node, "default", req.container_id, req.container_id, req.ifname, conf.name, labels)


def choose_nodename(conf_nodename: str, k8s_node_name: str, file_contents: str | None, hostname: str) -> str:
    """The node name, as Calico picks it: netconf ``nodename``, ``kubernetes.node_name``, the file, the hostname."""
    for candidate in (conf_nodename, k8s_node_name, (file_contents or "").strip(), hostname):
        if candidate:
            return candidate.lower() if candidate == hostname else candidate
    raise CniError(INVALID_NETWORK_CONFIG, "cannot determine the node name")
