"""Calico resources the kubernetes datastore derives from core objects, as Calico's KDD does.

Namespaces and ServiceAccounts -> Profiles ``kns.*``/``ksa.*``, networking.k8s.io
NetworkPolicies -> ``knp.default.*`` NetworkPolicies, Pods -> WorkloadEndpoints.
Each derived value must also load as the typed v3 resource (libcalico.resources).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libcalico.datastore.backend import KV, EventType, WatchEvent
from libcalico.datastore.client import decode_resource
from libcalico.datastore.kube_conversion import convert_uid
from libcalico.datastore.kubernetes import KubernetesBackend, ReadOnlyResource
from tests.fixtures.kube import KubeCluster
from tests.fixtures.kube_apiserver import KubeApiServer

ROOT = "/calico/resources/v3/projectcalico.org/"
PROFILES = ROOT + "profiles/"
WEPS = ROOT + "workloadendpoints/"
NPS = ROOT + "networkpolicies/"
ALLOW = {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]}


async def next_events(stream: AsyncIterator[WatchEvent], count: int, timeout: float = 10.0) -> list[WatchEvent]:
    """The next ``count`` events of an open watch, or fail after ``timeout`` seconds."""
    events: list[WatchEvent] = []
    try:
        async with asyncio.timeout(timeout):
            while len(events) < count:
                events.append(await anext(stream))
    except TimeoutError:
        raise AssertionError(f"got {len(events)} of {count} events in {timeout}s: {events}") from None
    return events


def typed(kv: KV) -> Any:
    """The entry loaded as its v3 resource kind (fails if Calico-py's validation rejects it)."""
    return decode_resource(kv)


async def test_namespaces_and_service_accounts_become_profiles(kubernetes_backend: KubernetesBackend,
                                                               kube_cluster: KubeCluster) -> None:
    ns = (await kube_cluster.namespace("prod", {"team": "payments", "env": "prod"})).metadata
    sa = (await kube_cluster.service_account("prod", "builder", {"role": "ci"})).metadata
    listing = await kubernetes_backend.list(PROFILES)
    assert [kv.key for kv in listing.items] == [PROFILES + n for n in
                                                ["kns.prod", "ksa.prod.builder", "projectcalico-default-allow"]]
    kns, ksa, allow = listing.items
    assert kns.value == {
        "apiVersion": "projectcalico.org/v3", "kind": "Profile",
        "metadata": {"name": "kns.prod", "uid": convert_uid(ns.uid),
                     "creationTimestamp": ns.creation_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")},
        "spec": {**ALLOW, "labelsToApply": {"pcns.team": "payments", "pcns.env": "prod",
                                            "pcns.projectcalico.org/name": "prod"}}}
    assert kns.revision == int(ns.resource_version)
    assert ksa.value["metadata"]["name"] == "ksa.prod.builder" and ksa.revision == int(sa.resource_version)
    assert ksa.value["spec"] == {"labelsToApply": {"pcsa.role": "ci", "pcsa.projectcalico.org/name": "builder"}}
    assert allow.value["spec"] == ALLOW and allow.revision == 0
    for kv in listing.items:
        assert await kubernetes_backend.get(kv.key) == kv
        assert typed(kv).KIND.kind == "Profile"
    assert listing.revision == await kubernetes_backend.current_revision()
    for missing in ["kns.nope", "ksa.prod.nope", "ksa.bad", "other"]:
        with pytest.raises(Exception) as caught:
            await kubernetes_backend.get(PROFILES + missing)
        assert type(caught.value).__name__ == "NotFound"


async def test_profile_watch_follows_namespace_and_service_account_changes(
        kubernetes_backend: KubernetesBackend, kube_cluster: KubeCluster) -> None:
    start = await kubernetes_backend.current_revision()
    stream = kubernetes_backend.watch(PROFILES, start)
    try:
        await kube_cluster.namespace("dev", {"team": "a"})
        await kube_cluster.label_namespace("dev", {"team": "b", "tier": "web"})
        await kube_cluster.service_account("dev", "deployer")
        await kube_cluster.delete_namespace("dev")
        events = await next_events(stream, 4)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    # Namespaces and ServiceAccounts are two Kubernetes watches: each is in revision order, and the
    # two are merged as their events arrive (see docs/kubernetes-datastore.md).
    from_namespace = [e for e in events if e.key == PROFILES + "kns.dev"]
    assert [e.type for e in from_namespace] == [EventType.PUT, EventType.PUT, EventType.DELETE]
    assert [e.revision for e in from_namespace] == sorted({e.revision for e in from_namespace})
    assert from_namespace[0].revision > start
    assert from_namespace[1].value is not None and from_namespace[1].value["spec"]["labelsToApply"] == {
        "pcns.team": "b", "pcns.tier": "web", "pcns.projectcalico.org/name": "dev"}
    [from_sa] = [e for e in events if e.key != PROFILES + "kns.dev"]
    assert (from_sa.type, from_sa.key) == (EventType.PUT, PROFILES + "ksa.dev.deployer")
    assert from_namespace[1].revision < from_sa.revision < from_namespace[2].revision


async def test_kubernetes_network_policies_become_knp_policies(kubernetes_backend: KubernetesBackend,
                                                               kube_cluster: KubeCluster,
                                                               kube_server: KubeApiServer) -> None:
    await kube_cluster.namespace("prod")
    calico_np = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                 "metadata": {"name": "calico-own", "namespace": "prod"}, "spec": {"selector": "all()", "order": 5}}
    await kubernetes_backend.create(NPS + "prod/calico-own", calico_np)
    start = await kubernetes_backend.current_revision()
    stream = kubernetes_backend.watch(NPS + "prod/", start)
    try:
        await kube_cluster.network_policy("prod", "db-access", {
            "podSelector": {"matchLabels": {"app": "db"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}},
                                   "namespaceSelector": {"matchLabels": {"team": "payments"}}}],
                         "ports": [{"protocol": "TCP", "port": 5432}]}]})
        [added] = await next_events(stream, 1)
        listing = await kubernetes_backend.list(NPS + "prod/")
        assert [kv.key for kv in listing.items] == [NPS + "prod/calico-own", NPS + "prod/knp.default.db-access"]
        knp = listing.items[1]
        assert (added.type, added.key, added.value) == (EventType.PUT, knp.key, knp.value)
        assert knp.value["spec"] == {
            "order": 1000, "selector": "projectcalico.org/orchestrator == 'k8s' && app == 'db'", "types": ["Ingress"],
            "ingress": [{"action": "Allow", "protocol": "TCP",
                         "source": {"selector": "projectcalico.org/orchestrator == 'k8s' && app == 'api'",
                                    "namespaceSelector": "team == 'payments'"},
                         "destination": {"ports": [5432]}}]}
        [stored] = [o for o in kube_server.objects("networkpolicies") if o["apiVersion"] == "networking.k8s.io/v1"]
        assert knp.revision == int(stored["metadata"]["resourceVersion"])
        assert typed(knp).spec.order == 1000
        with pytest.raises(ReadOnlyResource, match="networking.k8s.io NetworkPolicy"):
            await kubernetes_backend.update(knp.key, knp.value)
        await kube_cluster.delete_network_policy("prod", "db-access")
        [removed] = await next_events(stream, 1)
        assert (removed.type, removed.key, removed.value) == (EventType.DELETE, knp.key, None)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]


async def test_pods_become_workload_endpoints(kubernetes_backend: KubernetesBackend,
                                              kube_cluster: KubeCluster) -> None:
    await kube_cluster.namespace("shop")
    await kube_cluster.service_account("shop", "web")
    pod = await kube_cluster.pod("shop", "web-0", node="node-1", labels={"app": "web"}, service_account="web",
                                 pod_ips=["10.65.0.7", "fd00:65::7"],
                                 annotations={"cni.projectcalico.org/containerID": "abc123"},
                                 ports=[{"name": "http", "containerPort": 8080},
                                        {"containerPort": 9000},  # neither named nor host-mapped: not listed
                                        {"containerPort": 53, "hostPort": 5353, "protocol": "UDP"}])
    await kube_cluster.pod("shop", "pending", node=None)
    await kube_cluster.pod("shop", "hostnet", node="node-1", host_network=True)
    await kube_cluster.pod("shop", "cni-only", node="node-2",
                           annotations={"cni.projectcalico.org/podIPs": "10.65.1.9/32"})
    listing = await kubernetes_backend.list(WEPS + "shop/")
    assert [kv.key.removeprefix(WEPS) for kv in listing.items] == [
        "shop/node--1-k8s-web--0-eth0", "shop/node--2-k8s-cni--only-eth0"]
    web, cni_only = listing.items
    meta = pod.metadata
    assert web.value == {
        "apiVersion": "projectcalico.org/v3", "kind": "WorkloadEndpoint",
        "metadata": {"name": "node--1-k8s-web--0-eth0", "namespace": "shop", "uid": meta.uid,
                     "creationTimestamp": meta.creation_timestamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "labels": {"app": "web", "projectcalico.org/namespace": "shop",
                                "projectcalico.org/orchestrator": "k8s", "projectcalico.org/serviceaccount": "web"}},
        "spec": {"orchestrator": "k8s", "node": "node-1", "pod": "web-0", "endpoint": "eth0",
                 "containerID": "abc123",
                 "interfaceName": "cali" + hashlib.sha1(b"shop.web-0").hexdigest()[:11],
                 "profiles": ["kns.shop", "ksa.shop.web"], "ipNetworks": ["10.65.0.7/32", "fd00:65::7/128"],
                 "serviceAccountName": "web",
                 "ports": [{"name": "http", "protocol": "TCP", "port": 8080},
                           {"name": "", "protocol": "UDP", "port": 53, "hostPort": 5353}]}}
    assert web.revision == int(meta.resource_version)
    assert cni_only.value["spec"]["ipNetworks"] == ["10.65.1.9/32"]
    assert cni_only.value["spec"]["profiles"] == ["kns.shop"]
    for kv in listing.items:
        assert await kubernetes_backend.get(kv.key) == kv
        assert typed(kv).KIND.kind == "WorkloadEndpoint"
    for missing in ["node--1-k8s-pending-eth0", "node--1-k8s-hostnet-eth0", "node--9-k8s-web--0-eth0", "junk"]:
        with pytest.raises(Exception) as caught:
            await kubernetes_backend.get(f"{WEPS}shop/{missing}")
        assert type(caught.value).__name__ == "NotFound"


async def test_pod_lifecycle_in_a_workload_endpoint_watch(kubernetes_backend: KubernetesBackend,
                                                          kube_cluster: KubeCluster) -> None:
    await kube_cluster.namespace("batch")
    start = await kubernetes_backend.current_revision()
    stream = kubernetes_backend.watch(WEPS, start)
    key = WEPS + "batch/worker-k8s-job-eth0"
    try:
        await kube_cluster.pod("batch", "job", node=None)  # not scheduled: no endpoint yet
        await kube_cluster.patch_pod("batch", "job", {"spec": {"nodeName": "worker"}})
        await kube_cluster.patch_pod("batch", "job", {"status": {"podIPs": [{"ip": "10.70.0.3"}]}})
        await kube_cluster.patch_pod("batch", "job", {"status": {"phase": "Succeeded"}})
        await kube_cluster.delete_pod("batch", "job")
        events = await next_events(stream, 4)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert [(e.type, e.key) for e in events] == [(EventType.PUT, key)] * 3 + [(EventType.DELETE, key)]
    nets = [(e.value or {}).get("spec", {}).get("ipNetworks") for e in events[:3]]
    assert nets == [None, ["10.70.0.3/32"], None]  # a finished pod no longer owns its address


async def test_derived_entries_are_read_only(kubernetes_backend: KubernetesBackend, kube_cluster: KubeCluster,
                                             kube_server: KubeApiServer) -> None:
    await kube_cluster.namespace("prod")
    await kube_cluster.pod("prod", "p", node="n1", pod_ips=["10.0.0.1"])
    kns = await kubernetes_backend.get(PROFILES + "kns.prod")
    wep = await kubernetes_backend.get(WEPS + "prod/n1-k8s-p-eth0")
    before = len(list(kube_server))
    for key, value in [(kns.key, kns.value), (wep.key, wep.value),
                       (PROFILES + "projectcalico-default-allow", {"spec": {}}),
                       (PROFILES + "my-own-profile", {"spec": {}})]:
        with pytest.raises(ReadOnlyResource) as caught:
            await kubernetes_backend.create(key, value)
        assert key in str(caught.value) and "change that Kubernetes object instead" in str(caught.value)
        with pytest.raises(ReadOnlyResource):
            await kubernetes_backend.update(key, value)
        with pytest.raises(ReadOnlyResource):
            await kubernetes_backend.delete(key)
    assert len(list(kube_server)) == before, "a refused write must not reach the API server"
    assert await kubernetes_backend.get(kns.key) == kns


async def test_root_listing_and_watch_span_crds_and_derived_types(kubernetes_backend: KubernetesBackend,
                                                                  kube_cluster: KubeCluster) -> None:
    await kube_cluster.namespace("prod")
    pool = {"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": "pool"},
            "spec": {"cidr": "10.0.0.0/16"}}
    await kubernetes_backend.create(ROOT + "ippools/pool", pool)
    listing = await kubernetes_backend.list(ROOT)
    assert [kv.key.removeprefix(ROOT) for kv in listing.items] == [
        "ippools/pool", "profiles/kns.prod", "profiles/projectcalico-default-allow"]
    stream = kubernetes_backend.watch(ROOT, listing.revision)
    try:
        await kube_cluster.pod("prod", "api", node="n1", pod_ips=["10.0.3.4"])
        await kubernetes_backend.delete(ROOT + "ippools/pool")
        await kube_cluster.namespace("dev")
        events = await next_events(stream, 3)
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    assert sorted((e.type.value, e.key.removeprefix(ROOT)) for e in events) == [
        ("delete", "ippools/pool"), ("put", "profiles/kns.dev"), ("put", "workloadendpoints/prod/n1-k8s-api-eth0")]
    assert all(e.revision > listing.revision for e in events)
