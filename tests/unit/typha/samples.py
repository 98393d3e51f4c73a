"""Valid Calico resources for Typha tests and the fan-out benchmark, as stored under their datastore keys."""

from __future__ import annotations

from typing import Any

from libcalico.datastore.keys import RESOURCE_ROOT

WEP_PREFIX = f"{RESOURCE_ROOT}workloadendpoints/"
GNP_PREFIX = f"{RESOURCE_ROOT}globalnetworkpolicies/"
NODE_PREFIX = f"{RESOURCE_ROOT}nodes/"
POOL_PREFIX = f"{RESOURCE_ROOT}ippools/"
AFFINITY_PREFIX = "/calico/ipam/v2/host/"


def wep_name(node: str, pod: str) -> str:
    """Calico's WorkloadEndpoint name for a Kubernetes pod's eth0."""
    return f"{node.replace('-', '--')}-k8s-{pod.replace('-', '--')}-eth0"


def workload_endpoint(i: int, node: str, *, namespace: str = "ns0", label: str = "web") -> tuple[str, dict[str, Any]]:
    """A ~1 KB WorkloadEndpoint of pod ``pod-<i>`` on ``node``: its key and value."""
    pod = f"pod-{i:06d}"
    name = wep_name(node, pod)
    value = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "WorkloadEndpoint",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"00000000-0000-4000-8000-{i:012d}",
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "generateName": "frontend-7d9c6b5f4-",
            "labels": {
                "app": label,
                "pod-template-hash": "7d9c6b5f4",
                "projectcalico.org/namespace": namespace,
                "projectcalico.org/orchestrator": "k8s",
                "projectcalico.org/serviceaccount": "default",
            },
        },
        "spec": {
            "orchestrator": "k8s",
            "node": node,
            "pod": pod,
            "endpoint": "eth0",
            "containerID": f"{i:064x}",
            "interfaceName": f"cali{i:011x}",
            "mac": "ee:ee:ee:ee:ee:ee",
            "ipNetworks": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}/32"],
            "profiles": [f"kns.{namespace}", "ksa.default.default"],
            "serviceAccountName": "default",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        },
    }
    return f"{WEP_PREFIX}{namespace}/{name}", value


def global_policy(i: int, selector_value: str = "web") -> tuple[str, dict[str, Any]]:
    """A GlobalNetworkPolicy with one ingress rule: its key and value."""
    name = f"policy-{i:05d}"
    value = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "GlobalNetworkPolicy",
        "metadata": {"name": name, "uid": f"00000000-0000-4000-9000-{i:012d}",
                     "creationTimestamp": "2024-05-01T12:00:00Z"},
        "spec": {
            "order": float(i),
            "selector": f"app == '{selector_value}'",
            "types": ["Ingress"],
            "ingress": [{"action": "Allow", "protocol": "TCP",
                         "source": {"selector": f"role == 'client-{i % 17}'"},
                         "destination": {"ports": [80, 443, 8000 + i % 1000]}}],
        },
    }
    return GNP_PREFIX + name, value


def node(name: str, index: int = 1) -> tuple[str, dict[str, Any]]:
    """A Node with a BGP address: its key and value."""
    value = {
        "apiVersion": "projectcalico.org/v3",
        "kind": "Node",
        "metadata": {"name": name},
        "spec": {"bgp": {"ipv4Address": f"192.168.{(index >> 8) & 255}.{index & 255}/16"}},
    }
    return NODE_PREFIX + name, value


def block_affinity(node_name: str, cidr: str) -> tuple[str, dict[str, Any]]:
    """A confirmed block affinity of ``node_name`` for ``cidr`` (``10.0.0.0/26``)."""
    key = f"{AFFINITY_PREFIX}{node_name}/ipv4/block/{cidr.replace('/', '-')}"
    return key, {"state": "confirmed", "deleted": False}
