"""Two calico-typha replicas sharing clients: limits from Calico's formula, shedding, graceful handover.

Three Node resources and three syncer types give each of two replicas a limit of
3 × (1 + 3·120/100/1) = 12 connections. Twenty felix clients first all land on
replica A (B is not up yet: A is a lone typha, limit 10000); when B registers,
A's limit drops to 12 and A sheds one client at a time with ``bye: rebalance``
until the clients are split within the limits. Then B is stopped gracefully:
it deregisters (A's limit goes back up) and says ``bye: shutdown`` to its
clients one at a time, spread over its shutdown timeout, and they all move to A.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest

from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import SyncStatus, ViewCallbacks
from libcalico.typha.client import TyphaClient
from tests.unit.typha.harness import TyphaProcess, async_wait_until, free_port
from tests.unit.typha.samples import global_policy, node

CLIENTS = 20


@pytest.fixture
def typhas() -> Iterator[list[TyphaProcess]]:
    started: list[TyphaProcess] = []
    yield started
    for t in started:
        t.kill()


def replica_env(env: dict[str, str], name: str, port: int) -> dict[str, str]:
    return {**env, "TYPHA_SERVERPORT": str(port), "TYPHA_REPLICANAME": name,
            "TYPHA_CONNECTIONREBALANCINGMODE": "datastore", "TYPHA_K8SSERVICEPOLLINTERVALSECS": "0.3",
            "TYPHA_CONNECTIONDROPINTERVALSECS": "0.1", "TYPHA_MAXCONNECTIONSLOWERLIMIT": "1",
            "TYPHA_SHUTDOWNTIMEOUTSECS": "4", "TYPHA_SHUTDOWNCONNECTIONDROPINTERVALMAXSECS": "1"}


def _stamp(event: dict) -> float:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


async def test_clients_split_within_limits_and_move_over_on_graceful_shutdown(
    sqlite_backend: SqliteBackend, sqlite_env: dict[str, str], typhas: list[TyphaProcess]
) -> None:
    for i in range(3):
        await sqlite_backend.create(*node(f"n{i}", i + 1))
    for i in range(5):
        await sqlite_backend.create(*global_policy(i))
    port_a, port_b = free_port(), free_port()
    a = TyphaProcess(replica_env(sqlite_env, "typha-a", port_a))
    typhas.append(a)
    a.wait_event("connection_limit", where=lambda e: e["reason"] == "lone typha")
    views = [ViewCallbacks() for _ in range(CLIENTS)]
    clients = [TyphaClient([f"127.0.0.1:{port_a}", f"127.0.0.1:{port_b}"], "felix", node=f"client-{i}",
                           callbacks=v, local_hosts=set()) for i, v in enumerate(views)]
    for c in clients:
        c.start()
    try:
        for v in views:
            await v.wait_for_status(SyncStatus.IN_SYNC, timeout=30)
        assert all(c.address is not None and c.address.port == port_a for c in clients)

        b = TyphaProcess(replica_env(sqlite_env, "typha-b", port_b))
        typhas.append(b)
        limit = await a.await_event("connection_limit", where=lambda e: e["reason"] == "fraction+20%")
        assert limit["limit"] == 12 and limit["replicas"] == 2 and limit["nodes"] == 3

        def split() -> tuple[int, int] | None:
            on_a = sum(1 for c in clients if c.address is not None and c.address.port == port_a)
            on_b = sum(1 for c in clients if c.address is not None and c.address.port == port_b)
            in_sync = all(v.status is SyncStatus.IN_SYNC for v in views)
            return (on_a, on_b) if in_sync and on_a + on_b == CLIENTS and on_a <= 12 and on_b >= 8 else None

        on_a, on_b = await async_wait_until(split, 30, "clients split within the limits")
        shed = a.find_all("client_shed")
        assert len(shed) >= CLIENTS - 12
        gaps = [_stamp(y) - _stamp(x) for x, y in zip(shed, shed[1:], strict=False)]
        assert all(g >= 0.04 for g in gaps), gaps  # one at a time, ~0.1 s (jittered) apart
        key, value = global_policy(42)
        await sqlite_backend.create(key, value)
        for v in views:
            await v.wait_for(lambda v=v: key in v.view, 10, "update on both replicas")

        # Graceful stop of B: its clients move to A, one at a time, without a storm.
        moved = [c for c in clients if c.address is not None and c.address.port == port_b]
        connections_before = {id(c): c.connections for c in clients}
        assert b.terminate(timeout=30) == 0
        await async_wait_until(
            lambda: all(c.address is not None and c.address.port == port_a and v.status is SyncStatus.IN_SYNC
                        for c, v in zip(clients, views, strict=True)), 30, "every client on A")
        byes = [e for e in b.find_all("client_gone") if e["reason"] == "shutdown"]
        assert len(byes) == len(moved)
        gaps = [_stamp(y) - _stamp(x) for x, y in zip(byes, byes[1:], strict=False)]
        assert all(g >= 0.2 for g in gaps), gaps  # paced: min(1 s, 4 s × 0.9 / clients) apart
        for c in clients:
            # A client that was on B reconnected once (to A); the others were not disturbed.
            assert c.connections - connections_before[id(c)] == (1 if c in moved else 0)
        for v in views:
            assert v.anomalies == []
            assert key in v.view
        print(f"split after rebalancing: A {on_a}, B {on_b}; B's shutdown moved {len(moved)} clients")
    finally:
        for c in clients:
            await c.stop()
