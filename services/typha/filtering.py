"""Per-node shaping of Typha streams (an extension of Calico's Typha, which sends everyone everything).

- felix: a WorkloadEndpoint is sent in full to the client of its own node; the
  clients of other nodes get only what policy needs from it (name, namespace,
  labels, node, addresses, profiles, service account, named ports).
- bgp: a block affinity (``/calico/ipam/v2/host/<node>/...``) is sent only to the
  client of that node.

Everything else is the same for every client.
"""

from __future__ import annotations

from typing import Any

from libcalico.datastore.keys import IPAM_ROOT, RESOURCE_ROOT
from services.typha.snapcache import Shaper, no_shaping

_WEP_PREFIX = f"{RESOURCE_ROOT}workloadendpoints/"
_AFFINITY_PREFIX = f"{IPAM_ROOT}host/"
_WEP_SPEC_KEPT = ("node", "ipNetworks", "profiles", "serviceAccountName", "ports", "orchestrator")
_META_KEPT = ("name", "namespace", "labels")


def trim_workload_endpoint(value: dict[str, Any]) -> dict[str, Any]:
    """The parts of a WorkloadEndpoint that another node's policy calculation needs."""
    meta = value.get("metadata") or {}
    spec = value.get("spec") or {}
    return {
        "apiVersion": value.get("apiVersion"),
        "kind": value.get("kind"),
        "metadata": {k: meta[k] for k in _META_KEPT if k in meta},
        "spec": {k: spec[k] for k in _WEP_SPEC_KEPT if k in spec},
    }


def felix_shaper(key: str, value: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """Full WorkloadEndpoints for their own node, trimmed ones for the rest."""
    if value is not None and key.startswith(_WEP_PREFIX):
        node = (value.get("spec") or {}).get("node")
        if isinstance(node, str) and node:
            return node, trim_workload_endpoint(value)
    return None, None


def bgp_shaper(key: str, value: dict[str, Any] | None) -> tuple[str | None, dict[str, Any] | None]:
    """Block affinities only for the node they belong to."""
    if key.startswith(_AFFINITY_PREFIX):
        node = key[len(_AFFINITY_PREFIX) :].split("/", 1)[0]
        if node:
            return node, None
    return None, None


SHAPERS: dict[str, Shaper] = {
    "felix": felix_shaper,
    "bgp": bgp_shaper,
    "tunnel-ip-allocation": no_shaping,
}
