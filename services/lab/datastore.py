"""The lab's datastore: open it, and seed what calico-node and kube-controllers would create.

Seeded at ``up``: ClusterInformation (datastore ready), the namespace profile ``kns.default``
(allow-all, as kube-controllers makes one per Kubernetes namespace), the IP pool (from
docs/examples/01-ippool.yaml unless ``--pool``), one Node per host with its underlay address,
and, with VXLAN, each node's tunnel address from IPAM and its VTEP MAC (calico-node's
tunnel-ip-allocation).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from libcalico.datastore import Client, backend_from_env
from libcalico.errors import CalicoError, NotFound
from libcalico.ipam.allocator import IPAM, AssignRequest
from libcalico.resources.base import Resource, load_documents
from libcalico.resources.cluster import ClusterInformation
from libcalico.resources.ippool import IPPool
from libcalico.resources.node import Node
from libcalico.resources.profile import Profile
from services.lab.errors import LabError
from services.lab.layout import POD_NAMESPACE, HostPlan, Layout
from services.lab.roster import datastore_env
from services.lab.state import LabDir

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "docs" / "examples"
DEFAULT_POOL_FILE = EXAMPLES / "01-ippool.yaml"
POLICY_KINDS = ("WorkloadEndpoint", "HostEndpoint", "Profile", "Tier", "NetworkPolicy", "GlobalNetworkPolicy",
                "NetworkSet", "GlobalNetworkSet")


@contextlib.asynccontextmanager
async def open_client(layout: Layout, labdir: LabDir) -> AsyncIterator[Client]:
    """A client of the lab's datastore (for etcd, call from the infra namespace)."""
    try:
        backend = backend_from_env(datastore_env(layout, labdir))
    except CalicoError as exc:
        raise LabError(f"cannot open the datastore: {exc}", step="datastore") from None
    try:
        yield Client(backend)
    finally:
        await backend.close()


def load_pool(path: Path, encap: str) -> IPPool:
    """The lab's IP pool from a manifest holding one IPPool; VXLAN off for ``--encap none``."""
    try:
        docs = load_documents(path.read_text(encoding="utf-8"), source=str(path))
    except OSError as exc:
        raise LabError(f"cannot read the IP pool manifest {path}: {exc}", step="ip pool") from None
    except CalicoError as exc:
        raise LabError(str(exc), step="ip pool") from None
    pools = [d for d in docs if isinstance(d, IPPool)]
    if len(pools) != 1:
        raise LabError(f"{path} must hold exactly one IPPool, found {len(pools)}", step="ip pool")
    pool = pools[0].model_copy(deep=True)
    if encap == "none":
        pool.spec.vxlanMode = "Never"
    return pool


def namespace_profile(namespace: str) -> Profile:
    """Profile ``kns.<ns>``: allow-all, with the namespace's labels to apply."""
    return Profile.model_validate({
        "apiVersion": "projectcalico.org/v3", "kind": "Profile", "metadata": {"name": f"kns.{namespace}"},
        "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}],
                 "labelsToApply": {"pcns.projectcalico.org/name": namespace,
                                   "pcns.kubernetes.io/metadata.name": namespace}}})


def node_resource(host: HostPlan) -> Node:
    """The Node resource of a host, with its underlay address."""
    return Node.model_validate({
        "apiVersion": "projectcalico.org/v3", "kind": "Node",
        "metadata": {"name": host.name, "labels": {"kubernetes.io/hostname": host.name}},
        "spec": {"bgp": {"ipv4Address": host.cidr},
                 "addresses": [{"address": host.address, "type": "CalicoNodeIP"}]}})


def vtep_mac(node: str) -> str:
    """A stable, locally administered MAC for a node's VXLAN device (as Felix derives one)."""
    digest = hashlib.sha1(node.encode()).digest()
    return ":".join(f"{b:02x}" for b in (b"f" + digest[:5]))


async def seed(client: Client, layout: Layout, pool: IPPool) -> None:
    """Create what the services expect to find (idempotent)."""
    info = ClusterInformation.model_validate({
        "apiVersion": "projectcalico.org/v3", "kind": "ClusterInformation", "metadata": {"name": "default"},
        "spec": {"datastoreReady": True, "clusterType": "calico-lab"}})
    try:
        await client.apply(info)
        await client.apply(namespace_profile(POD_NAMESPACE))
        await client.apply(pool)
    except CalicoError as exc:
        raise LabError(str(exc), step="seed datastore") from None


async def add_node(client: Client, layout: Layout, host: HostPlan) -> Node:
    """Create a host's Node resource and, with VXLAN, give it a tunnel address (idempotent)."""
    try:
        node = await client.apply(node_resource(host))
        if layout.spec.encap != "vxlan":
            return node  # type: ignore[return-value]
        handle = f"vxlan-tunnel-addr-{host.name}"
        ipam = IPAM(client.backend)
        addresses = await ipam.ips_by_handle(handle)
        if not addresses:
            got = await ipam.auto_assign(AssignRequest(
                host=host.name, num4=1, handle=handle, use="Tunnel",
                attrs={"node": host.name, "type": "vxlanTunnelAddress"}))
            addresses = got.addresses
        if not addresses:
            raise LabError("IPAM gave no VXLAN tunnel address (is the pool full?)", host=host.name,
                           step="tunnel address")
        current = await client.get(Node, host.name)
        current.spec.ipv4VXLANTunnelAddr = str(addresses[0])  # type: ignore[attr-defined]
        current.spec.vxlanTunnelMACAddr = vtep_mac(host.name)  # type: ignore[attr-defined]
        return await client.update(current)  # type: ignore[return-value]
    except CalicoError as exc:
        raise LabError(str(exc), host=host.name, step="node resource") from None


async def policy_resources(client: Client) -> list[Resource]:
    """Everything the policy oracle needs, read from the datastore."""
    out: list[Resource] = []
    for kind in POLICY_KINDS:
        try:
            items, _ = await client.list(kind)
        except NotFound:
            continue
        out.extend(items)
    return out
