"""The felix syncer on the kubernetes datastore: snapshot then deltas, CRDs and derived resources alike.

The API server is kmock's stateful stand-in (tests/fixtures/kube_apiserver.py).
Calico kinds are written as CRDs through the backend; Profiles, ``knp.default.*``
policies and WorkloadEndpoints are derived from Namespaces, ServiceAccounts,
Kubernetes NetworkPolicies and Pods made with kubectl-like calls. Calico Nodes
are not seeded: in Kubernetes datastore mode Calico derives them from Kubernetes
Nodes, which this backend does not (it refuses the key).
"""

from __future__ import annotations

from libcalico.datastore.kubernetes import KubernetesBackend
from libcalico.errors import ValidationError
from libcalico.syncer import (
    RetryPolicy,
    Syncer,
    SyncStatus,
    UpdateType,
    ViewCallbacks,
    syncer_spec,
)
from libcalico.syncer.catalog import SyncerSpec
from libcalico.syncer.validation import check_value
from tests.fixtures.kube import KubeCluster

R = "/calico/resources/v3/projectcalico.org/"
V3 = "projectcalico.org/v3"
FAST = RetryPolicy(initial=0.02, maximum=0.2)
WFD, RIP, IN_SYNC = SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC
BLOCK = "/calico/ipam/v2/assignment/ipv4/block/10.65.0.0-26"


def pool(name: str, cidr: str) -> dict:
    return {"apiVersion": V3, "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr}}


def netset(name: str, net: str) -> dict:
    return {"apiVersion": V3, "kind": "GlobalNetworkSet", "metadata": {"name": name}, "spec": {"nets": [net]}}


def policy(name: str, action: str = "Allow") -> dict:
    return {"apiVersion": V3, "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"selector": "app == 'web'", "ingress": [{"action": action}]}}


def host_endpoint(name: str) -> dict:
    return {"apiVersion": V3, "kind": "HostEndpoint", "metadata": {"name": name},
            "spec": {"node": "node-1", "interfaceName": "eth0", "expectedIPs": ["192.0.2.10"]}}


async def expected_view(store: KubernetesBackend, spec: SyncerSpec) -> dict[str, dict]:
    """What a felix consumer must hold: every carried, valid entry the datastore lists for the stream's types."""
    out: dict[str, dict] = {}
    for rtype in spec.types:
        for kv in (await store.list(rtype.prefix)).items:
            if not rtype.matches(kv.key):
                continue
            try:
                check_value(rtype, kv.key, kv.value)
            except ValidationError:
                continue
            out[kv.key] = kv.value
    return out


async def test_felix_snapshot_then_deltas_on_kubernetes(kubernetes_backend: KubernetesBackend,
                                                        kube_cluster: KubeCluster) -> None:
    store, spec = kubernetes_backend, syncer_spec("felix")
    await store.create(f"{R}ippools/pool-a", pool("pool-a", "10.65.0.0/16"))
    await store.create(f"{R}globalnetworksets/blocked", netset("blocked", "198.51.100.0/24"))
    await store.create(f"{R}networkpolicies/shop/allow-web", policy("allow-web"))
    await store.create(f"{R}hostendpoints/node-1-eth0", host_endpoint("node-1-eth0"))
    await store.create(BLOCK, {"cidr": "10.65.0.0/26", "affinity": "host:node-1", "allocations": [0, None],
                               "unallocated": [1], "attributes": [{"handle_id": "h1"}]})
    await kube_cluster.namespace("shop", {"team": "retail"})
    await kube_cluster.service_account("shop", "web-sa")
    await kube_cluster.pod("shop", "web-1", labels={"app": "web"}, service_account="web-sa",
                           pod_ips=["10.65.0.1"])
    await kube_cluster.network_policy("shop", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]})

    view = ViewCallbacks()
    async with Syncer(store, spec, view, retry=FAST) as syncer:
        await view.wait_for_status(IN_SYNC, timeout=20)
        assert view.statuses == [WFD, RIP, IN_SYNC]
        snapshot = await expected_view(store, spec)
        assert view.view == snapshot
        kinds = {key[len(R):].split("/", 1)[0] for key in view.view if key.startswith(R)}
        assert kinds == {"ippools", "globalnetworksets", "networkpolicies", "hostendpoints", "profiles",
                         "workloadendpoints"}
        assert BLOCK in view.view
        assert {f"{R}profiles/kns.shop", f"{R}profiles/ksa.shop.web-sa",
                f"{R}networkpolicies/shop/knp.default.deny-all"} <= set(view.view)
        wep_keys = [k for k in view.view if k.startswith(f"{R}workloadendpoints/shop/")]
        assert len(wep_keys) == 1 and view.view[wep_keys[0]]["spec"]["ipNetworks"] == ["10.65.0.1/32"]
        assert all(u.update_type is UpdateType.NEW for u in view.updates)

        # Deltas: CRD writes and changes of the Kubernetes objects the derived entries come from.
        await store.update(f"{R}globalnetworksets/blocked", netset("blocked", "203.0.113.0/24"))
        await store.delete(f"{R}hostendpoints/node-1-eth0")
        await kube_cluster.pod("shop", "web-2", labels={"app": "web"}, pod_ips=["10.65.0.2"])
        await kube_cluster.label_namespace("shop", {"team": "checkout"})
        await kube_cluster.delete_network_policy("shop", "deny-all")
        marker = await store.create(f"{R}ippools/zz-marker", pool("zz-marker", "10.66.0.0/16"))
        await view.wait_for(lambda: view.revisions.get(marker.key) == marker.revision, timeout=20,
                            what="the marker pool after every delta")
        await view.wait_for(lambda: len([k for k in view.view if "/workloadendpoints/" in k]) == 2
                            and f"{R}networkpolicies/shop/knp.default.deny-all" not in view.view,
                            timeout=20, what="the derived deltas")

        deltas = {(u.key, u.update_type) for u in view.updates_since(IN_SYNC)}
        assert (f"{R}globalnetworksets/blocked", UpdateType.UPDATED) in deltas
        assert (f"{R}hostendpoints/node-1-eth0", UpdateType.DELETED) in deltas
        assert (f"{R}profiles/kns.shop", UpdateType.UPDATED) in deltas
        assert (f"{R}networkpolicies/shop/knp.default.deny-all", UpdateType.DELETED) in deltas
        assert view.view[f"{R}profiles/kns.shop"]["spec"]["labelsToApply"]["pcns.team"] == "checkout"
        assert view.view[f"{R}globalnetworksets/blocked"]["spec"]["nets"] == ["203.0.113.0/24"]
        assert view.view == await expected_view(store, spec), "the view equals the datastore, key by key"
        assert view.statuses == [WFD, RIP, IN_SYNC] and view.anomalies == []
        assert syncer.listings == [1] * len(syncer.plans)
