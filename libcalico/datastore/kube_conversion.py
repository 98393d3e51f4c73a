"""Calico resources derived from core Kubernetes objects, as Calico's KDD derives them.

- Namespace ``ns``             -> Profile ``kns.<ns>`` (allow-all rules, ``pcns.*`` labels to apply)
- ServiceAccount ``ns/sa``     -> Profile ``ksa.<ns>.<sa>`` (``pcsa.*`` labels to apply)
- (always)                     -> Profile ``projectcalico-default-allow``
- NetworkPolicy ``ns/np``      -> NetworkPolicy ``ns/knp.default.<np>`` (Calico's k8s/conversion)
- Pod ``ns/pod`` on ``node``   -> WorkloadEndpoint ``ns/<node>-k8s-<pod>-eth0``

Each function takes the Kubernetes object as a JSON map (camelCase, as the API
serves it) and returns ``(key, value)`` with the value in projectcalico.org/v3
wire form, or None when the object yields no Calico resource.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import uuid
from typing import Any

import structlog

from libcalico.datastore.backend import JSONMap
from libcalico.datastore.keys import ResourceKey

log = structlog.get_logger(__name__)

V3 = "projectcalico.org/v3"
NAMESPACE_PROFILE_PREFIX = "kns."
SERVICE_ACCOUNT_PROFILE_PREFIX = "ksa."
NAMESPACE_LABEL_PREFIX = "pcns."
SERVICE_ACCOUNT_LABEL_PREFIX = "pcsa."
NAME_LABEL = "projectcalico.org/name"
K8S_POLICY_PREFIX = "knp.default."
DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow"
LABEL_NAMESPACE = "projectcalico.org/namespace"
LABEL_ORCHESTRATOR = "projectcalico.org/orchestrator"
LABEL_SERVICE_ACCOUNT = "projectcalico.org/serviceaccount"
ORCHESTRATOR_K8S = "k8s"
ANNOTATION_POD_IP = "cni.projectcalico.org/podIP"
ANNOTATION_POD_IPS = "cni.projectcalico.org/podIPs"
ANNOTATION_AWS_POD_IPS = "vpc.amazonaws.com/pod-ips"
ANNOTATION_CONTAINER_ID = "cni.projectcalico.org/containerID"
ANNOTATION_FLOATING_IPS = "cni.projectcalico.org/floatingIPs"
ANNOTATION_SPOOF_PREFIXES = "cni.projectcalico.org/allowedSourcePrefixes"
POLICY_ORDER = 1000
_FINISHED_PHASES = ("Failed", "Succeeded", "Completed")
_PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")


def convert_uid(uid: str) -> str:
    """Calico's ConvertUID: reverse the bits of each byte except the UUID version and variant bytes."""
    try:
        raw = bytearray(uuid.UUID(uid).bytes)
    except ValueError:
        return uid
    for i in [*range(6), 7, *range(9, 16)]:
        raw[i] = int(f"{raw[i]:08b}"[::-1], 2)
    return str(uuid.UUID(bytes=bytes(raw)))


def _meta(obj: JSONMap) -> JSONMap:
    meta = obj.get("metadata")
    return meta if isinstance(meta, dict) else {}


def _derived_meta(obj: JSONMap, name: str, namespace: str | None = None) -> JSONMap:
    src = _meta(obj)
    meta: JSONMap = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if src.get("uid"):
        meta["uid"] = convert_uid(src["uid"])
    if src.get("creationTimestamp"):
        meta["creationTimestamp"] = src["creationTimestamp"]
    return meta


# ---------------------------------------------------------------- profiles


def default_allow_profile() -> tuple[str, JSONMap]:
    """The always-present allow-all profile (revision 0)."""
    value = {"apiVersion": V3, "kind": "Profile", "metadata": {"name": DEFAULT_ALLOW_PROFILE},
             "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}}
    return ResourceKey("profiles", DEFAULT_ALLOW_PROFILE).path, value


def namespace_profile(ns: JSONMap) -> tuple[str, JSONMap] | None:
    """Profile ``kns.<namespace>``: allow-all rules and the namespace's labels as ``pcns.*``."""
    name = _meta(ns).get("name")
    if not name:
        return None
    labels = {f"{NAMESPACE_LABEL_PREFIX}{k}": v for k, v in (_meta(ns).get("labels") or {}).items()}
    labels[f"{NAMESPACE_LABEL_PREFIX}{NAME_LABEL}"] = name
    profile = f"{NAMESPACE_PROFILE_PREFIX}{name}"
    value = {"apiVersion": V3, "kind": "Profile", "metadata": _derived_meta(ns, profile),
             "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                      "labelsToApply": labels}}
    return ResourceKey("profiles", profile).path, value


def service_account_profile_name(namespace: str, sa: str) -> str:
    """``ksa.<namespace>.<serviceaccount>``."""
    return f"{SERVICE_ACCOUNT_PROFILE_PREFIX}{namespace or 'default'}.{sa}"


def service_account_profile(sa: JSONMap) -> tuple[str, JSONMap] | None:
    """Profile ``ksa.<namespace>.<sa>``: the service account's labels as ``pcsa.*``, no rules."""
    meta = _meta(sa)
    if not meta.get("name"):
        return None
    labels = {f"{SERVICE_ACCOUNT_LABEL_PREFIX}{k}": v for k, v in (meta.get("labels") or {}).items()}
    labels[f"{SERVICE_ACCOUNT_LABEL_PREFIX}{NAME_LABEL}"] = meta["name"]
    profile = service_account_profile_name(meta.get("namespace") or "default", meta["name"])
    value = {"apiVersion": V3, "kind": "Profile", "metadata": _derived_meta(sa, profile),
             "spec": {"labelsToApply": labels}}
    return ResourceKey("profiles", profile).path, value


# ---------------------------------------------------------------- network policies


def selector_from_k8s(sel: JSONMap | None, pod: bool) -> str:
    """Calico's k8sSelectorToCalico: a label selector as a Calico selector expression."""
    terms: list[str] = [f"{LABEL_ORCHESTRATOR} == '{ORCHESTRATOR_K8S}'"] if pod else []
    if sel is None:
        return " && ".join(terms)
    match_labels = sel.get("matchLabels") or {}
    expressions = sel.get("matchExpressions") or []
    if not pod and not match_labels and not expressions:
        return "all()"
    for k in sorted(match_labels):
        terms.append(f"{k} == '{match_labels[k]}'")
    for expr in expressions:
        key, op = expr.get("key"), expr.get("operator")
        values = "', '".join(expr.get("values") or [])
        if op == "In":
            terms.append(f"{key} in {{ '{values}' }}")
        elif op == "NotIn":
            terms.append(f"{key} not in {{ '{values}' }}")
        elif op == "Exists":
            terms.append(f"has({key})")
        elif op == "DoesNotExist":
            terms.append(f"! has({key})")
    return " && ".join(terms)


def _port_value(port: Any, end_port: Any) -> int | str:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        number = int(port)
        if not 0 <= number <= 65535 or (end_port is not None and not number <= int(end_port) <= 65535):
            raise ValueError(f"invalid port range {port}:{end_port}" if end_port is not None else f"invalid port {port}")
        return f"{number}:{int(end_port)}" if end_port is not None else number
    if isinstance(port, str) and end_port is None and _PORT_NAME.match(port) and re.search("[a-z]", port):
        return port
    raise ValueError(f"invalid port {port!r}")


def simplify_ports(ports: list[int | str]) -> list[int | str]:
    """Calico's SimplifyPorts: merge numeric ports and ranges into the fewest ranges; names pass through."""
    if len(ports) <= 1:
        return ports
    named = [p for p in ports if isinstance(p, str) and not p.replace(":", "").isdigit()]
    numbers: set[int] = set()
    for p in ports:
        if isinstance(p, int):
            numbers.add(p)
        elif p not in named:
            lo, _, hi = p.partition(":")
            numbers.update(range(int(lo), int(hi or lo) + 1))
    if len(numbers) <= 1:
        return ports
    out: list[int | str] = list(named)
    ordered = sorted(numbers)
    start = prev = ordered[0]
    for n in [*ordered[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        out.append(start if start == prev else f"{start}:{prev}")
        if n is not None:
            start = prev = n
    return out


def _peer_fields(peer: JSONMap | None) -> JSONMap:
    if peer is None:
        return {}
    block = peer.get("ipBlock")
    if block is not None:
        fields: JSONMap = {"nets": [str(ipaddress.ip_network(block["cidr"], strict=False))]}
        excepts = [str(ipaddress.ip_network(e, strict=False)) for e in block.get("except") or []]
        if excepts:
            fields["notNets"] = excepts
        return fields
    fields = {}
    selector = selector_from_k8s(peer.get("podSelector"), pod=True)
    ns_selector = selector_from_k8s(peer.get("namespaceSelector"), pod=False)
    if selector:
        fields["selector"] = selector
    if ns_selector:
        fields["namespaceSelector"] = ns_selector
    return fields


def _rules(peers: list[JSONMap] | None, ports: list[JSONMap] | None, ingress: bool) -> list[JSONMap]:
    by_protocol: dict[str, list[int | str] | None] = {}
    for port in ports or [None]:  # type: ignore[list-item]
        if port is None:
            by_protocol = {"": None}
            break
        protocol = port.get("protocol") or "TCP"
        if port.get("port") is None:
            by_protocol[protocol] = None
        elif protocol not in by_protocol or by_protocol[protocol]:
            by_protocol.setdefault(protocol, [])
            by_protocol[protocol].append(_port_value(port["port"], port.get("endPort")))  # type: ignore[union-attr]
    rules: list[JSONMap] = []
    for protocol in sorted(by_protocol):
        numbers = by_protocol[protocol]
        dst_ports = simplify_ports(numbers) if numbers else None
        for peer in peers or [None]:  # type: ignore[list-item]
            peer_fields = _peer_fields(peer)
            rule: JSONMap = {"action": "Allow"}
            if protocol:
                rule["protocol"] = protocol
            destination: JSONMap = {"ports": dst_ports} if dst_ports else {}
            if ingress:
                if peer_fields:
                    rule["source"] = peer_fields
            else:
                destination.update(peer_fields)
            if destination:
                rule["destination"] = destination
            rules.append(rule)
    return rules


def k8s_network_policy(np: JSONMap) -> tuple[str, JSONMap] | None:
    """NetworkPolicy ``knp.default.<name>`` converted from a networking.k8s.io NetworkPolicy."""
    meta = _meta(np)
    if not meta.get("name") or not meta.get("namespace"):
        return None
    spec = np.get("spec") or {}
    ingress: list[JSONMap] = []
    egress: list[JSONMap] = []
    for direction, out, peer_field in (("ingress", ingress, "from"), ("egress", egress, "to")):
        for index, rule in enumerate(spec.get(direction) or []):
            try:
                out.extend(_rules(rule.get(peer_field), rule.get("ports"), direction == "ingress"))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("k8s_rule_dropped", policy=meta["name"], namespace=meta["namespace"],
                            direction=direction, index=index, error=str(exc))
    types_given = spec.get("policyTypes") or []
    types = [t for t in ("Ingress", "Egress") if t in types_given] or ["Ingress"]
    name = f"{K8S_POLICY_PREFIX}{meta['name']}"
    policy_spec: JSONMap = {"order": POLICY_ORDER,
                            "selector": selector_from_k8s(spec.get("podSelector") or {}, pod=True),
                            "types": types}
    if ingress:
        policy_spec["ingress"] = ingress
    if egress:
        policy_spec["egress"] = egress
    value = {"apiVersion": V3, "kind": "NetworkPolicy",
             "metadata": _derived_meta(np, name, meta["namespace"]), "spec": policy_spec}
    return ResourceKey("networkpolicies", name, meta["namespace"]).path, value


# ---------------------------------------------------------------- workload endpoints


def _escape(segment: str, field: str) -> str:
    if not segment or segment.startswith("-") or segment.endswith("-"):
        raise ValueError(f"workload endpoint {field} {segment!r} must be non-empty and not begin or end with '-'")
    return segment.replace("-", "--")


def workload_endpoint_name(node: str, pod: str, endpoint: str = "eth0") -> str:
    """``<node>-k8s-<pod>-<endpoint>`` with dashes inside each part doubled, as Calico names them."""
    return "-".join([_escape(node, "node"), ORCHESTRATOR_K8S, _escape(pod, "pod"), _escape(endpoint, "endpoint")])


def parse_workload_endpoint_name(name: str) -> tuple[str, str, str, str] | None:
    """Split a WorkloadEndpoint name into (node, orchestrator, pod, endpoint), or None."""
    parts: list[str] = []
    current = ""
    i = 0
    while i < len(name):
        if name[i] == "-" and i + 1 < len(name) and name[i + 1] == "-":
            current += "-"
            i += 2
            continue
        if name[i] == "-" and current:
            parts.append(current)
            current = ""
        else:
            current += name[i]
        i += 1
    parts.append(current)
    if len(parts) != 4 or not all(parts):
        return None
    return parts[0], parts[1], parts[2], parts[3]


def veth_name(namespace: str, pod: str) -> str:
    """The host-side interface name Calico's CNI plugin gives a pod: prefix + 11 hex of SHA-1."""
    prefix = (os.environ.get("FELIX_INTERFACEPREFIX") or "cali").split(",")[0]
    return prefix + hashlib.sha1(f"{namespace}.{pod}".encode()).hexdigest()[:11]


def pod_is_endpoint(pod: JSONMap) -> bool:
    """Calico's IsValidCalicoWorkloadEndpoint: scheduled to a node and not host-networked."""
    spec = pod.get("spec") or {}
    return bool(spec.get("nodeName")) and not spec.get("hostNetwork")


def _pod_finished(pod: JSONMap) -> bool:
    annotations = _meta(pod).get("annotations") or {}
    if _meta(pod).get("deletionTimestamp") and (
        annotations.get(ANNOTATION_POD_IP) == "" or annotations.get(ANNOTATION_AWS_POD_IPS) == ""
    ):
        return True
    return (pod.get("status") or {}).get("phase") in _FINISHED_PHASES


def pod_ip_networks(pod: JSONMap) -> list[str]:
    """The pod's addresses as /32 or /128 networks: status.podIPs, podIP, then Calico's annotations."""
    status = pod.get("status") or {}
    annotations = _meta(pod).get("annotations") or {}
    if status.get("podIPs"):
        ips = [entry.get("ip", "") for entry in status["podIPs"]]
    elif status.get("podIP"):
        ips = [status["podIP"]]
    elif annotations.get(ANNOTATION_POD_IPS):
        ips = annotations[ANNOTATION_POD_IPS].split(",")
    elif annotations.get(ANNOTATION_POD_IP):
        ips = [annotations[ANNOTATION_POD_IP]]
    elif annotations.get(ANNOTATION_AWS_POD_IPS):
        ips = annotations[ANNOTATION_AWS_POD_IPS].split(",")
    else:
        return []
    return [str(ipaddress.ip_network(ip.strip(), strict=False)) for ip in ips if ip.strip()]


def _endpoint_ports(pod: JSONMap) -> list[JSONMap]:
    spec = pod.get("spec") or {}
    ports: list[JSONMap] = []
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for cport in container.get("ports") or []:
            number = cport.get("containerPort") or 0
            if not number or not (cport.get("hostPort") or cport.get("name")):
                continue
            protocol = (cport.get("protocol") or "TCP").upper()
            if protocol not in ("TCP", "UDP", "SCTP"):
                continue
            port: JSONMap = {"name": cport.get("name") or "", "protocol": protocol, "port": number}
            if cport.get("hostPort"):
                port["hostPort"] = cport["hostPort"]
            if cport.get("hostIP"):
                port["hostIP"] = cport["hostIP"]
            ports.append(port)
    return ports


def _floating_ips(pod: JSONMap, nets: list[str]) -> list[JSONMap]:
    annotation = (_meta(pod).get("annotations") or {}).get(ANNOTATION_FLOATING_IPS)
    if not annotation or not nets:
        return []
    inner = {ipaddress.ip_network(n).version: str(ipaddress.ip_network(n).network_address) for n in nets}
    out = []
    for external in json.loads(annotation):
        version = 6 if ":" in external else 4
        if version in inner:
            out.append({"internalIP": inner[version], "externalIP": external})
    return out


def pod_workload_endpoint(pod: JSONMap) -> tuple[str, JSONMap] | None:
    """WorkloadEndpoint ``<node>-k8s-<pod>-eth0`` for a scheduled, not host-networked pod, else None."""
    meta = _meta(pod)
    if not pod_is_endpoint(pod) or not meta.get("name") or not meta.get("namespace"):
        return None
    spec = pod.get("spec") or {}
    namespace, pod_name, node = meta["namespace"], meta["name"], spec["nodeName"]
    try:
        name = workload_endpoint_name(node, pod_name)
        nets = [] if _pod_finished(pod) else pod_ip_networks(pod)
        nats = _floating_ips(pod, nets)
        spoof = [str(ipaddress.ip_network(p, strict=False))
                 for p in json.loads((meta.get("annotations") or {}).get(ANNOTATION_SPOOF_PREFIXES) or "[]")]
    except (ValueError, TypeError) as exc:
        log.warning("pod_conversion_failed", pod=pod_name, namespace=namespace, error=str(exc))
        return None
    sa = spec.get("serviceAccountName") or ""
    labels = dict(meta.get("labels") or {})
    labels[LABEL_NAMESPACE] = namespace
    labels[LABEL_ORCHESTRATOR] = ORCHESTRATOR_K8S
    if sa and len(sa) < 63:
        labels[LABEL_SERVICE_ACCOUNT] = sa
    profiles = [f"{NAMESPACE_PROFILE_PREFIX}{namespace}"]
    if sa:
        profiles.append(service_account_profile_name(namespace, sa))
    wep_meta: JSONMap = {"name": name, "namespace": namespace, "labels": labels}
    if meta.get("uid"):
        wep_meta["uid"] = meta["uid"]
    if meta.get("creationTimestamp"):
        wep_meta["creationTimestamp"] = meta["creationTimestamp"]
    if meta.get("generateName"):
        wep_meta["generateName"] = meta["generateName"]
    wep_spec: JSONMap = {"orchestrator": ORCHESTRATOR_K8S, "node": node, "pod": pod_name, "endpoint": "eth0",
                         "interfaceName": veth_name(namespace, pod_name), "profiles": profiles}
    container_id = (meta.get("annotations") or {}).get(ANNOTATION_CONTAINER_ID)
    optional = {"containerID": container_id, "ipNetworks": nets, "ports": _endpoint_ports(pod), "ipNATs": nats,
                "serviceAccountName": sa, "allowSpoofedSourcePrefixes": spoof}
    wep_spec.update({k: v for k, v in optional.items() if v})
    value = {"apiVersion": V3, "kind": "WorkloadEndpoint", "metadata": wep_meta, "spec": wep_spec}
    return ResourceKey("workloadendpoints", name, namespace).path, value
