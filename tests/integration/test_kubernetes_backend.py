"""The kubernetes datastore against the kmock-based API server: storage form, CAS, watches, 410, TTLs, errors.

The generic behaviour (CRUD, CAS, list, watch, compaction, TTL, racing processes)
is in test_datastore_contract.py (``-k kubernetes``); these tests cover what is
particular to Kubernetes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import kmock
import pytest
from kubernetes_asyncio import client as kclient

from libcalico.datastore import backend_from_env
from libcalico.datastore.backend import EventType, WatchEvent
from libcalico.datastore.kube_conversion import convert_uid
from libcalico.datastore.kubernetes import KubernetesBackend, ReadOnlyResource
from libcalico.errors import (
    DatastoreError,
    NotFound,
    ResyncRequired,
    RevisionConflict,
    Unavailable,
    ValidationError,
)
from tests.fixtures.kube import CRD_DIR, TOKEN, KubeCluster, write_kubeconfig
from tests.fixtures.kube_apiserver import KubeApiServer, ResType

ROOT = "/calico/resources/v3/projectcalico.org/"
GNP = ROOT + "globalnetworkpolicies/"
NETSETS = ROOT + "globalnetworksets/"
IPAM = "/calico/ipam/v2/"


def gnp(name: str, order: float = 1.0, **labels: str) -> tuple[str, dict[str, Any]]:
    meta: dict[str, Any] = {"name": name, "uid": f"uid-{name}", "creationTimestamp": "2024-02-03T04:05:06Z"}
    if labels:
        meta["labels"] = dict(labels)
    return GNP + name, {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkPolicy", "metadata": meta,
                        "spec": {"order": order, "selector": "all()"}}


def netset(name: str) -> tuple[str, dict[str, Any]]:
    return NETSETS + name, {"apiVersion": "projectcalico.org/v3", "kind": "GlobalNetworkSet",
                            "metadata": {"name": name}, "spec": {"nets": ["10.0.0.0/8"]}}


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


async def wait_until(predicate: Any, timeout: float, what: str) -> None:
    """Poll an async predicate every 50 ms until true, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        if await predicate():
            return
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        await asyncio.sleep(0.05)


def requests_of(server: KubeApiServer, method: str, path_part: str) -> list[kmock.Request]:
    return [r for r in server if str(r.method.value) == method and path_part in r.url.path]


# ------------------------------------------------------------------ selection and configuration


async def test_backend_from_env_opens_the_cluster_in_kubeconfig(kubernetes_env: dict[str, str]) -> None:
    backend = backend_from_env(kubernetes_env)
    try:
        assert isinstance(backend, KubernetesBackend) and backend.name == "kubernetes"
        created = await backend.create(*netset("a"))
        assert await backend.get(created.key) == created
    finally:
        await backend.close()


async def test_configuration_errors_name_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as unset:
        KubernetesBackend.from_env({"DATASTORE_TYPE": "kubernetes"})
    assert unset.value.field == "KUBECONFIG"
    with pytest.raises(ValidationError, match="no kubeconfig file at"):
        KubernetesBackend.from_env({"KUBECONFIG": str(tmp_path / "missing")})
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n")
    backend = KubernetesBackend.from_env({"KUBECONFIG": str(broken)})
    try:
        with pytest.raises(ValidationError) as bad:
            await backend.get(GNP + "x")
        assert bad.value.field == "KUBECONFIG" and str(broken) in str(bad.value)
    finally:
        await backend.close()


async def test_wrong_credentials_are_an_error_not_unavailability(kube_server: KubeApiServer, tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kc", str(kube_server.url).rstrip("/"), token="wrong")
    backend = KubernetesBackend.from_kubeconfig(str(config))
    try:
        with pytest.raises(DatastoreError) as denied:
            await backend.get(GNP + "x")
        assert not isinstance(denied.value, Unavailable) and "401" in str(denied.value)
    finally:
        await backend.close()


# ------------------------------------------------------------------ storage form


async def test_resources_are_stored_as_calico_custom_resources(kubernetes_backend: KubernetesBackend,
                                                               kube_server: KubeApiServer) -> None:
    key, value = gnp("allow-dns", order=5, tier="platform")
    created = await kubernetes_backend.create(key, value)
    [stored] = kube_server.objects("globalnetworkpolicies")
    assert stored["apiVersion"] == "crd.projectcalico.org/v1" and stored["kind"] == "GlobalNetworkPolicy"
    assert stored["metadata"]["name"] == "allow-dns" and stored["metadata"]["labels"] == {"tier": "platform"}
    assert json.loads(stored["metadata"]["annotations"]["projectcalico.org/metadata"]) == {
        "uid": "uid-allow-dns", "creationTimestamp": "2024-02-03T04:05:06Z"}
    assert stored["spec"] == value["spec"]
    assert int(stored["metadata"]["resourceVersion"]) == created.revision
    assert created.value == value


async def test_custom_resources_written_by_calico_itself_are_read(kubernetes_backend: KubernetesBackend,
                                                                  kube_cluster: KubeCluster) -> None:
    crds = kclient.CustomObjectsApi(kube_cluster.api)
    made = await crds.create_cluster_custom_object("crd.projectcalico.org", "v1", "ippools", {
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool",
        "metadata": {"name": "default-ipv4-ippool"}, "spec": {"cidr": "192.168.0.0/16", "natOutgoing": True}})
    await crds.create_cluster_custom_object("crd.projectcalico.org", "v1", "ipamblocks", {
        "apiVersion": "crd.projectcalico.org/v1", "kind": "IPAMBlock",
        "metadata": {"name": "192-168-5-0-26"}, "spec": {"cidr": "192.168.5.0/26", "allocations": [None]}})
    pool = await kubernetes_backend.get(ROOT + "ippools/default-ipv4-ippool")
    assert pool.value == {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                          "metadata": {"name": "default-ipv4-ippool", "uid": convert_uid(made["metadata"]["uid"]),
                                       "creationTimestamp": made["metadata"]["creationTimestamp"]},
                          "spec": {"cidr": "192.168.0.0/16", "natOutgoing": True}}
    assert pool.revision == int(made["metadata"]["resourceVersion"])
    blocks = await kubernetes_backend.list(IPAM)
    assert [(kv.key, kv.value["cidr"]) for kv in blocks.items] == [
        (IPAM + "assignment/ipv4/block/192.168.5.0-26", "192.168.5.0/26")]


async def test_ipam_keys_round_trip_and_list_narrows(kubernetes_backend: KubernetesBackend,
                                                     kube_server: KubeApiServer) -> None:
    entries: dict[str, dict[str, Any]] = {
        IPAM + "assignment/ipv4/block/10.0.0.0-26": {"cidr": "10.0.0.0/26", "allocations": [0, None],
                                                     "unallocated": [1], "attributes": [{"handle_id": "h"}]},
        IPAM + "host/node-a/ipv4/block/10.0.0.0-26": {"state": "confirmed", "node": "node-a", "cidr": "10.0.0.0/26"},
        IPAM + "host/node-b/ipv4/block/10.0.0.64-26": {"state": "pending", "node": "node-b", "cidr": "10.0.0.64/26"},
        IPAM + "handle/k8s-pod-network.Abc": {"handleID": "k8s-pod-network.Abc", "block": {"10.0.0.0/26": 1}},
        IPAM + "config": {"strictAffinity": False, "maxBlocksPerHost": 0},
    }
    for key, value in entries.items():
        await kubernetes_backend.create(key, value)
    for key, value in entries.items():
        assert (await kubernetes_backend.get(key)).value == value
    everything = await kubernetes_backend.list(IPAM)
    assert [kv.key for kv in everything.items] == sorted(entries)
    node_a = await kubernetes_backend.list(IPAM + "host/node-a/")
    assert [kv.key for kv in node_a.items] == [IPAM + "host/node-a/ipv4/block/10.0.0.0-26"]
    assert [o["metadata"]["name"] for o in kube_server.objects("blockaffinities")] == [
        "node-a-10-0-0-0-26", "node-b-10-0-0-64-26"]
    assert [o["metadata"]["name"] for o in kube_server.objects("ipamhandles")] == ["k8s-pod-network.abc"]


async def test_keys_without_a_crd_are_refused_for_writes_and_absent_for_reads(
        kubernetes_backend: KubernetesBackend) -> None:
    felix = "/calico/felix/v2/no-region/host/h1/status"
    with pytest.raises(ValidationError, match="does not store"):
        await kubernetes_backend.create(felix, {"time": "now"}, ttl=10)
    with pytest.raises(NotFound):
        await kubernetes_backend.get(felix)
    listing = await kubernetes_backend.list("/calico/felix/")
    assert listing.items == [] and listing.revision == await kubernetes_backend.current_revision()
    with pytest.raises(ReadOnlyResource, match="derived from a Kubernetes Pod"):
        await kubernetes_backend.create(ROOT + "workloadendpoints/ns/n1-k8s-p-eth0", {"spec": {}})


async def test_list_pages_through_large_collections(kubernetes_backend: KubernetesBackend,
                                                    kube_server: KubeApiServer) -> None:
    rtype = next(t for t in kube_server.types.values() if t.plural == "globalnetworksets")
    for i in range(520):  # written straight into the server's store: the list is what is under test
        kube_server.store[(rtype, None, f"n{i:04d}")] = {
            "apiVersion": rtype.api_version, "kind": rtype.kind,
            "metadata": {"name": f"n{i:04d}", "resourceVersion": str(kube_server.revision), "uid": f"u{i}"},
            "spec": {"nets": [f"10.{i // 256}.{i % 256}.0/24"]}}
    listing = await kubernetes_backend.list(NETSETS)
    assert [kv.key for kv in listing.items] == [NETSETS + f"n{i:04d}" for i in range(520)]
    assert len([r for r in requests_of(kube_server, "GET", "/globalnetworksets") if r.params.get("continue")]) == 1


# ------------------------------------------------------------------ compare-and-swap


async def test_writes_carry_resource_version_preconditions(kubernetes_backend: KubernetesBackend,
                                                           kube_server: KubeApiServer) -> None:
    key, value = gnp("p")
    created = await kubernetes_backend.create(key, value)
    updated = await kubernetes_backend.update(*gnp("p", order=2), revision=created.revision)
    [put] = requests_of(kube_server, "PUT", "/globalnetworkpolicies/p")
    assert put.data["metadata"]["resourceVersion"] == str(created.revision)
    await kubernetes_backend.delete(key, revision=updated.revision)
    [delete] = requests_of(kube_server, "DELETE", "/globalnetworkpolicies/p")
    assert delete.data["preconditions"] == {"resourceVersion": str(updated.revision)}


async def test_a_write_between_read_and_replace_is_caught(kubernetes_backend: KubernetesBackend,
                                                          kube_server: KubeApiServer) -> None:
    key, value = gnp("contended", order=1)
    created = await kubernetes_backend.create(key, value)
    raced: list[int] = []
    orders = iter([50, 60, 70])

    def concurrent_writer(verb: str, rtype: ResType, namespace: str | None, name: str) -> None:
        if name == "contended" and not raced:  # another client wins the race, once per armed step
            patched = kube_server.patch_object("globalnetworkpolicies", None, name, {"spec": {"order": next(orders)}})
            raced.append(int(patched["metadata"]["resourceVersion"]))

    kube_server.before_write.append(concurrent_writer)
    with pytest.raises(RevisionConflict) as conflict:
        await kubernetes_backend.update(*gnp("contended", order=2), revision=created.revision)
    assert conflict.value.identifier == key
    assert (await kubernetes_backend.get(key)).value["spec"]["order"] == 50
    raced.clear()
    blind = await kubernetes_backend.update(*gnp("contended", order=3))  # unconditional: re-reads and retries
    assert blind.value["spec"]["order"] == 3 and blind.revision > raced[0]
    assert len(requests_of(kube_server, "PUT", "/globalnetworkpolicies/contended")) == 3
    raced.clear()
    gone = await kubernetes_backend.delete(key)  # unconditional: re-reads and retries
    assert gone.value["spec"]["order"] == 70 and gone.revision == raced[0]
    assert len(requests_of(kube_server, "DELETE", "/globalnetworkpolicies/contended")) == 2
    with pytest.raises(NotFound):
        await kubernetes_backend.get(key)


# ------------------------------------------------------------------ watches


async def test_broken_watch_on_compacted_history_requires_resync(kubernetes_backend: KubernetesBackend,
                                                                 kube_server: KubeApiServer) -> None:
    start = await kubernetes_backend.current_revision()
    stream = kubernetes_backend.watch(GNP, start)
    try:
        first = await kubernetes_backend.create(*gnp("a"))
        [event] = await next_events(stream, 1)
        assert (event.type, event.revision) == (EventType.PUT, first.revision)
        await kubernetes_backend.create(*netset("elsewhere"))  # history moves on, nothing for this watch
        compacted = kube_server.compact()
        assert await kube_server.drop_watches() == 1
        with pytest.raises(ResyncRequired) as resync:
            await next_events(stream, 1)
        assert resync.value.requested == first.revision and resync.value.compacted == compacted
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
    listing = await kubernetes_backend.list(GNP)
    again = kubernetes_backend.watch(GNP, listing.revision)
    try:
        later = await kubernetes_backend.update(*gnp("a", order=9))
        assert [(e.key, e.revision) for e in await next_events(again, 1)] == [(later.key, later.revision)]
    finally:
        await again.aclose()  # type: ignore[attr-defined]


async def test_watch_resumes_across_server_timeouts_without_gaps(kube_server: KubeApiServer,
                                                                 kubernetes_env: dict[str, str]) -> None:
    backend = KubernetesBackend.from_kubeconfig(kubernetes_env["KUBECONFIG"], watch_timeout=1)
    try:
        start = await backend.current_revision()
        stream = backend.watch(GNP, start)
        written: list[int] = []
        seen: list[int] = []
        began = time.monotonic()
        for i in range(5000):
            written.append((await backend.apply(*gnp("ticker", order=float(i)))).revision)
            await backend.apply(*netset(f"noise{i % 3}"))  # revisions the watch never sees as events
            seen.extend(e.revision for e in await next_events(stream, 1))
            if time.monotonic() - began > 2.6 and i >= 5:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        assert seen == written
        watches = [r for r in requests_of(kube_server, "GET", "/globalnetworkpolicies") if r.params.get("watch")]
        assert len(watches) >= 3, "the server-side timeout should have ended the watch at least twice"
        resumed = [int(r.params["resourceVersion"]) for r in watches]
        assert resumed == sorted(resumed) and resumed[-1] > written[0]
    finally:
        await backend.close()


async def test_lost_api_server_makes_calls_and_watches_unavailable(tmp_path: Path) -> None:
    handler = KubeApiServer(token=TOKEN)
    handler.install_crd_files(CRD_DIR)
    async with handler:
        server = kmock.Server(handler)
        await server.__aenter__()
        backend = KubernetesBackend.from_kubeconfig(
            str(write_kubeconfig(tmp_path / "kc", str(server.url).rstrip("/"))), request_timeout=5)
        try:
            created = await backend.create(*gnp("a"))
            stream = backend.watch(GNP, created.revision)
            pending = asyncio.ensure_future(anext(stream))
            await wait_until(lambda: _true(len(handler.watchers) == 1), 10, "the watch to be open")
            await handler.drop_watches()
            await server.__aexit__(None, None, None)
            with pytest.raises(Unavailable):
                await asyncio.wait_for(pending, 15)
            await stream.aclose()  # type: ignore[attr-defined]
            with pytest.raises(Unavailable):
                await backend.get(created.key)
        finally:
            await backend.close()


async def _true(value: bool) -> bool:
    return value


# ------------------------------------------------------------------ TTLs


async def test_expired_entries_vanish_on_read_before_any_sweep(kube_server: KubeApiServer,
                                                               kubernetes_env: dict[str, str]) -> None:
    backend = KubernetesBackend.from_kubeconfig(kubernetes_env["KUBECONFIG"], sweep_interval=None)
    try:
        key, value = gnp("short")
        created = await backend.create(key, value, ttl=0.3)
        stored = kube_server.objects("globalnetworkpolicies")[0]
        assert stored["metadata"]["labels"] == {"calico-py.projectcalico.org/ttl": "true"}
        assert "calico-py.projectcalico.org/expires-at" in stored["metadata"]["annotations"]
        assert (await backend.get(key)).value == value  # labels of ours are not part of the value
        await backend.close()  # the writer goes away: nobody will sweep this entry
        reader = KubernetesBackend.from_kubeconfig(kubernetes_env["KUBECONFIG"], sweep_interval=None)
        try:
            deadline = created_at = time.monotonic()
            deadline += 10
            while time.monotonic() - created_at < 0.35:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            assert len(kube_server.objects("globalnetworkpolicies")) == 1  # still stored ...
            with pytest.raises(NotFound):
                await reader.get(key)  # ... but expired for every reader
            assert (await reader.list(GNP)).items == []
            recreated = await reader.create(key, value)  # the expired entry does not block a create
            assert recreated.revision > created.revision
            assert "calico-py.projectcalico.org/ttl" not in (
                kube_server.objects("globalnetworkpolicies")[0]["metadata"].get("labels") or {})
        finally:
            await reader.close()
    finally:
        await backend.close()


async def test_sweeper_scan_deletes_what_a_gone_writer_left(kube_server: KubeApiServer,
                                                            kubernetes_env: dict[str, str]) -> None:
    writer = KubernetesBackend.from_kubeconfig(kubernetes_env["KUBECONFIG"], sweep_interval=None)
    try:
        await writer.create(*netset("left-behind"), ttl=0.2)
        await writer.create(*netset("long-lived"), ttl=300)
    finally:
        await writer.close()
    sweeper = KubernetesBackend.from_kubeconfig(kubernetes_env["KUBECONFIG"], sweep_interval=0.2)
    try:
        start = await sweeper.current_revision()  # first use starts the sweeper
        await wait_until(lambda: _true([o["metadata"]["name"] for o in kube_server.objects("globalnetworksets")]
                                       == ["long-lived"]), 15, "the expired entry to be swept")
        assert sweeper.sweeper.swept == 1
        [delete] = requests_of(kube_server, "DELETE", "/globalnetworksets/left-behind")
        assert int(delete.data["preconditions"]["resourceVersion"]) < start
    finally:
        await sweeper.close()


async def test_ttl_is_refreshed_by_update_and_dropped_without_one(kubernetes_backend: KubernetesBackend,
                                                                  kube_server: KubeApiServer) -> None:
    key, value = gnp("beat")
    await kubernetes_backend.create(key, value, ttl=0.4)
    await kubernetes_backend.update(key, value, ttl=60)
    began = time.monotonic()
    while time.monotonic() - began < 0.6:  # well past the first expiry
        await asyncio.sleep(0.05)
    assert (await kubernetes_backend.get(key)).value == value
    await kubernetes_backend.update(key, value)  # no ttl: the entry no longer expires
    meta = kube_server.objects("globalnetworkpolicies")[0]["metadata"]
    assert "calico-py.projectcalico.org/expires-at" not in meta.get("annotations", {})
    assert "labels" not in meta
    with pytest.raises(ValidationError, match="positive"):
        await kubernetes_backend.create(*gnp("bad"), ttl=0)


# ------------------------------------------------------------------ cluster set-up problems


async def test_missing_crds_and_namespaces_are_reported_clearly(tmp_path: Path) -> None:
    bare = KubeApiServer(token=TOKEN, require_namespaces=True)  # no Calico CRDs installed
    async with bare, kmock.Server(bare):
        backend = KubernetesBackend.from_kubeconfig(str(write_kubeconfig(tmp_path / "kc", str(bare.url).rstrip("/"))))
        try:
            with pytest.raises(DatastoreError, match="deploy/crds"):
                await backend.create(*gnp("a"))
            assert (await backend.list(GNP)).items == []  # as Calico's KDD: an unserved type lists empty
            bare.install_crd_files(CRD_DIR)
            np = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
                  "metadata": {"name": "web", "namespace": "prod"}, "spec": {"selector": "all()"}}
            with pytest.raises(ValidationError) as missing_ns:
                await backend.create(ROOT + "networkpolicies/prod/web", np)
            assert missing_ns.value.field == "metadata.namespace" and "'prod'" in str(missing_ns.value)
        finally:
            await backend.close()
