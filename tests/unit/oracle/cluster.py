"""Small builders of validated v3 resources for the oracle tests (every resource goes through parse_resource)."""

from __future__ import annotations

import zlib
from typing import Any

from libcalico.oracle import Flow, Oracle, Verdict
from libcalico.resources.base import Resource, parse_resource

API = "projectcalico.org/v3"


def res(kind: str, name: str, spec: dict[str, Any] | None = None, namespace: str | None = None,
        labels: dict[str, str] | None = None) -> Resource:
    """Any resource kind from its parts."""
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    doc: dict[str, Any] = {"apiVersion": API, "kind": kind, "metadata": meta}
    if spec is not None:
        doc["spec"] = spec
    return parse_resource(doc)


def pod(name: str, ip: str | list[str], namespace: str = "default", labels: dict[str, str] | None = None,
        profiles: list[str] | None = None, service_account: str | None = None,
        ports: list[dict[str, Any]] | None = None, node: str = "node1", wep_name: str | None = None,
        orchestrator: str = "k8s", endpoint: str = "eth0") -> Resource:
    """A pod's WorkloadEndpoint with Calico's usual profiles (``kns.<ns>``, ``ksa.<ns>.<sa>``)."""
    ips = [ip] if isinstance(ip, str) else ip
    if profiles is None:
        profiles = [f"kns.{namespace}"] + ([f"ksa.{namespace}.{service_account}"] if service_account else [])
    spec: dict[str, Any] = {
        "orchestrator": orchestrator, "node": node, "pod": name, "endpoint": endpoint,
        "ipNetworks": [i if "/" in i else (f"{i}/128" if ":" in i else f"{i}/32") for i in ips],
        "profiles": profiles, "interfaceName": f"cali{zlib.crc32(f'{namespace}/{name}/{endpoint}'.encode()):08x}",
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    if ports:
        spec["ports"] = ports
    name_part = name.replace("-", "--")
    return res("WorkloadEndpoint", wep_name or f"{node}-k8s-{name_part}-{endpoint}", spec, namespace,
               {"app": name} | (labels or {}))


def namespace_profile(namespace: str, labels: dict[str, str] | None = None, allow: bool = True) -> Resource:
    """The ``kns.<ns>`` profile Calico makes for a namespace: allow all, namespace labels as ``pcns.*``."""
    to_apply = {"pcns.projectcalico.org/name": namespace}
    to_apply.update({f"pcns.{k}": v for k, v in (labels or {}).items()})
    rules = [{"action": "Allow"}] if allow else []
    return res("Profile", f"kns.{namespace}", {"ingress": rules, "egress": rules, "labelsToApply": to_apply})


def sa_profile(namespace: str, account: str, labels: dict[str, str] | None = None) -> Resource:
    """The ``ksa.<ns>.<sa>`` profile: no rules, the service account's labels as ``pcsa.*``."""
    to_apply = {"pcsa.projectcalico.org/name": account}
    to_apply.update({f"pcsa.{k}": v for k, v in (labels or {}).items()})
    return res("Profile", f"ksa.{namespace}.{account}", {"labelsToApply": to_apply})


def np(name: str, spec: dict[str, Any], namespace: str = "default") -> Resource:
    """A NetworkPolicy."""
    return res("NetworkPolicy", name, spec, namespace)


def gnp(name: str, spec: dict[str, Any]) -> Resource:
    """A GlobalNetworkPolicy."""
    return res("GlobalNetworkPolicy", name, spec)


def tier(name: str, order: float | None = None, default_action: str | None = None) -> Resource:
    """A Tier."""
    spec: dict[str, Any] = {}
    if order is not None:
        spec["order"] = order
    if default_action is not None:
        spec["defaultAction"] = default_action
    return res("Tier", name, spec)


BASE = [namespace_profile("default")]


def verdict(resources: list[Resource], src: str, dst: str, protocol: str | int = "tcp", port: int | None = 80,
            **kw: Any) -> Verdict:
    """Evaluate one flow against the resources."""
    return Oracle.from_resources(resources).evaluate(Flow(src, dst, protocol, port=port, **kw))
