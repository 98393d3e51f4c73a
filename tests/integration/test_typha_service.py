"""calico-typha as a process on a real sqlite datastore: snapshot, deltas, filtering, reconnects, health, metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import SyncStatus, UpdateType, ViewCallbacks
from libcalico.typha.client import TyphaClient
from services.typha.filtering import trim_workload_endpoint
from tests.unit.typha.harness import RawClient, TyphaProcess, hello
from tests.unit.typha.samples import block_affinity, global_policy, node, workload_endpoint

CALICO_METRICS = (
    "typha_connections_active", "typha_connections_accepted", "typha_connections_dropped", "typha_cache_size",
    "typha_updates_total", "typha_updates_skipped", "typha_breadcrumb_seq_number",
    "typha_client_snapshot_send_secs", "typha_client_latency_secs", "typha_ping_latency",
)


@pytest.fixture
def typhas() -> Iterator[list[TyphaProcess]]:
    started: list[TyphaProcess] = []
    yield started
    for t in started:
        t.kill()


async def seed(backend: SqliteBackend) -> dict[str, dict[str, Any]]:
    """Endpoints on n1 and n2, policies, nodes and block affinities; returns what was written."""
    written: dict[str, dict[str, Any]] = {}
    items = [workload_endpoint(i, "n1" if i % 2 else "n2") for i in range(10)]
    items += [global_policy(i) for i in range(3)] + [node("n1", 1), node("n2", 2)]
    items += [block_affinity("n1", "10.0.0.0/26"), block_affinity("n2", "10.0.0.64/26")]
    for key, value in items:
        await backend.create(key, value)
        written[key] = value
    return written


def felix_expected(written: dict[str, dict[str, Any]], node_name: str) -> dict[str, dict[str, Any]]:
    out = {}
    for key, value in written.items():
        if "/ipam/" in key:
            continue
        if value.get("kind") == "WorkloadEndpoint" and value["spec"]["node"] != node_name:
            out[key] = trim_workload_endpoint(value)
        else:
            out[key] = value
    return out


async def test_snapshot_deltas_and_per_node_filtering(
    sqlite_backend: SqliteBackend, sqlite_env: dict[str, str], typhas: list[TyphaProcess]
) -> None:
    written = await seed(sqlite_backend)
    typha = TyphaProcess(sqlite_env)
    typhas.append(typha)
    felix, bgp, tunnel = ViewCallbacks(), ViewCallbacks(), ViewCallbacks()
    clients = [TyphaClient([typha.address], "felix", node="n1", callbacks=felix),
               TyphaClient([typha.address], "bgp", node="n1", callbacks=bgp),
               TyphaClient([typha.address], "tunnel-ip-allocation", node="n1", callbacks=tunnel)]
    for c in clients:
        c.start()
    try:
        for view in (felix, bgp, tunnel):
            await view.wait_for_status(SyncStatus.IN_SYNC, timeout=20)
        assert felix.view == felix_expected(written, "n1")
        assert sorted(k for k in bgp.view if "/ipam/" in k) == [block_affinity("n1", "10.0.0.0/26")[0]]
        assert set(tunnel.view) == {node("n1", 1)[0], node("n2", 2)[0]}
        assert felix.statuses == [SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC]

        # Deltas: a change on n2 reaches n1 trimmed, a deletion and a new policy arrive; same value: nothing.
        key2, wep2 = workload_endpoint(0, "n2", label="api")
        await sqlite_backend.update(key2, wep2)
        pkey, _ = global_policy(1)
        await sqlite_backend.delete(pkey)
        nkey, nval = global_policy(50)
        await sqlite_backend.create(nkey, nval)
        await felix.wait_for(lambda: nkey in felix.view and pkey not in felix.view, 10, "deltas")
        assert felix.view[key2] == trim_workload_endpoint(wep2)
        assert [u.update_type for u in felix.updates_for(pkey)] == [UpdateType.NEW, UpdateType.DELETED]
        assert felix.anomalies == []

        status, body = typha.http("/readiness")
        assert status == 200, body
        names = {r["name"] for r in json.loads(body)["reporters"]}
        assert {"cache-felix", "cache-bgp", "cache-tunnel-ip-allocation"} <= names
        assert typha.http("/liveness")[0] == 200
        _, metrics = typha.http("/metrics")
        for name in CALICO_METRICS:
            assert f"\n{name}" in metrics, name
        assert typha.metric("typha_connections_active", syncer="felix") == 1
        assert typha.metric("typha_cache_size", syncer="felix") == len(felix_expected(written, "n1")) + 0
        # The deltas went out on the fast path: written by the publisher to the caught-up client,
        # with a batching wait and a fan-out time recorded per breadcrumb (idle stream: no batching).
        assert typha.metric("typha_fanout_secs_count", syncer="felix") >= 1
        assert typha.metric("typha_breadcrumb_wait_secs_count", syncer="felix") >= 1
        assert typha.metric("typha_fanout_fallbehind_total", syncer="felix") == 0
        assert typha.metric("typha_client_latency_secs_count", syncer="felix") >= 1
    finally:
        for c in clients:
            await c.stop()
    assert typha.terminate() == 0


async def test_reconnect_after_restart_delivers_deletions_of_vanished_keys(
    sqlite_backend: SqliteBackend, sqlite_env: dict[str, str], typhas: list[TyphaProcess]
) -> None:
    written = await seed(sqlite_backend)
    first = TyphaProcess(sqlite_env)
    typhas.append(first)
    port = first.port
    view = ViewCallbacks()
    client = TyphaClient([first.address], "felix", node="n1", callbacks=view)
    async with client:
        await view.wait_for_status(SyncStatus.IN_SYNC, timeout=20)
        assert first.terminate() == 0
        # While Typha is away: one key vanishes, one changes, one appears.
        gone, _ = global_policy(0)
        await sqlite_backend.delete(gone)
        del written[gone]
        changed, value = global_policy(2, selector_value="db")
        await sqlite_backend.update(changed, value)
        written[changed] = value
        fresh, fvalue = global_policy(7)
        await sqlite_backend.create(fresh, fvalue)
        written[fresh] = fvalue
        second = TyphaProcess({**sqlite_env, "TYPHA_SERVERPORT": str(port)})
        typhas.append(second)
        await view.wait_for_status(SyncStatus.IN_SYNC, count=2, timeout=30)
        assert view.view == felix_expected(written, "n1")
        since = {(u.key, u.update_type) for u in view.updates_since(SyncStatus.RESYNC_IN_PROGRESS, 2)}
        assert since == {(gone, UpdateType.DELETED), (changed, UpdateType.UPDATED), (fresh, UpdateType.NEW)}
        assert view.anomalies == []
        assert client.connections == 2


async def test_partial_tls_configuration_is_a_startup_error(sqlite_env: dict[str, str]) -> None:
    typha = TyphaProcess({**sqlite_env, "TYPHA_CAFILE": "/nonexistent/ca.pem", "TYPHA_CLIENTCN": "felix"})
    try:
        assert typha.proc.wait(timeout=20) == 2
        event = typha.wait_event("settings_invalid")
        assert "missing: ServerCertFile, ServerKeyFile" in event["error"]
    finally:
        typha.kill()


async def _snapshot_bytes(port: int, node_name: str) -> int:
    raw = await RawClient.connect(port)
    try:
        raw.writer.write(hello(node_name))
        await raw.until(lambda m: m.get("type") == "status" and m["status"] == "in-sync", timeout=20)
        return raw.received
    finally:
        raw.close()


async def test_bytes_per_client_with_and_without_trimming(
    sqlite_backend: SqliteBackend, sqlite_env: dict[str, str], typhas: list[TyphaProcess]
) -> None:
    for i in range(200):
        key, value = workload_endpoint(i, f"node-{i % 20}")
        await sqlite_backend.create(key, value)
    for i in range(20):
        key, value = global_policy(i)
        await sqlite_backend.create(key, value)
    trimmed = TyphaProcess(sqlite_env)
    full = TyphaProcess({**sqlite_env, "TYPHA_PERNODEFILTERING": "false"})
    typhas.extend([trimmed, full])
    with_trim = await _snapshot_bytes(trimmed.port, "node-3")
    without = await _snapshot_bytes(full.port, "node-3")
    print(f"snapshot bytes per client: trimmed {with_trim}, untrimmed {without} ({with_trim / without:.0%})")
    assert with_trim < 0.8 * without  # the trimmed fields are ~30% of a typical endpoint
