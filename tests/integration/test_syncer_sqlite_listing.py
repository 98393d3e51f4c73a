"""The felix syncer's snapshot from sqlite: read as rows, delivered with the collector paused only meanwhile."""

from __future__ import annotations

import asyncio
import gc

from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.datastore.sqlite import Row, SqliteBackend
from libcalico.syncer import SyncStatus, Update, ViewCallbacks, new_syncer

V3 = "projectcalico.org/v3"
WEP = f"{RESOURCE_ROOT}workloadendpoints/"


def endpoint(i: int) -> tuple[str, dict[str, object]]:
    name = f"node--1-k8s-pod--{i}-eth0"
    return f"{WEP}ns-{i % 3}/{name}", {
        "apiVersion": V3, "kind": "WorkloadEndpoint", "metadata": {"name": name, "namespace": f"ns-{i % 3}",
                                                                  "labels": {"app": f"a{i % 5}"}},
        "spec": {"node": "node-1", "pod": f"pod-{i}", "interfaceName": f"cali{i}", "ipNetworks": [f"10.0.{i // 250}.{i % 250}/32"],
                 "profiles": [f"kns.ns-{i % 3}"]}}


class Counting(SqliteBackend):
    """A sqlite backend that counts how it was listed."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.calls: list[str] = []

    async def list_rows(self, prefix: str) -> tuple[list[Row], int]:
        self.calls.append("list_rows")
        return await super().list_rows(prefix)


class CollectorWatch(ViewCallbacks):
    """A view that also notes whether the cyclic collector ran while each batch was handed over."""

    def __init__(self) -> None:
        super().__init__()
        self.collector_on: list[bool] = []

    def on_updates(self, updates: list[Update]) -> None:
        self.collector_on.append(gc.isenabled())
        super().on_updates(updates)


async def test_snapshot_is_listed_as_rows_and_delivered_with_the_collector_paused(sqlite_db_path: str) -> None:
    entries = dict(endpoint(i) for i in range(600))
    bad_key = f"{WEP}ns-0/wrong-name"
    backend = Counting(sqlite_db_path)
    async with backend:
        for key, value in entries.items():
            await backend.create(key, value)
        await backend.create(bad_key, entries[next(iter(entries))])  # a name that is not its key's: rejected
        view = CollectorWatch()
        assert gc.isenabled()
        async with new_syncer("felix", backend, view):
            await view.wait_for_status(SyncStatus.IN_SYNC)
            assert gc.isenabled()  # resumed once the snapshot was handed over
            assert view.view == entries
            assert backend.calls == ["list_rows"]
            assert view.collector_on and not any(view.collector_on)
            extra_key, extra = endpoint(600)
            await backend.create(extra_key, extra)  # a delta afterwards: the collector runs as usual
            await view.wait_for(lambda: extra_key in view.view, what="the delta")
            assert view.collector_on[-1] is True
    assert view.anomalies == []


class Held(SqliteBackend):
    """A sqlite backend whose listings wait for ``release`` (set ``started`` when one begins)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def list_rows(self, prefix: str) -> tuple[list[Row], int]:
        self.started.set()
        await self.release.wait()
        return await super().list_rows(prefix)


class Stuck(ViewCallbacks):
    """A consumer that never returns from its first status: the snapshot stays queued."""

    def __init__(self) -> None:
        super().__init__()
        self.blocked = asyncio.Event()

    async def on_status(self, status: SyncStatus) -> None:  # type: ignore[override]
        super().on_status(status)
        self.blocked.set()
        await asyncio.Event().wait()


async def test_stopping_during_the_listing_leaves_the_collector_on(sqlite_db_path: str) -> None:
    backend = Held(sqlite_db_path)
    async with backend:
        await backend.create(*endpoint(1))
        syncer = new_syncer("felix", backend, ViewCallbacks())
        syncer.start()
        async with asyncio.timeout(10):
            await backend.started.wait()
        assert not gc.isenabled()  # paused for the listing about to be read
        await syncer.stop()
        assert gc.isenabled()


async def test_a_listing_never_handled_does_not_keep_the_collector_paused(sqlite_db_path: str) -> None:
    backend = Held(sqlite_db_path)
    async with backend:
        await backend.create(*endpoint(1))
        view = Stuck()
        syncer = new_syncer("felix", backend, view)
        syncer.start()
        async with asyncio.timeout(10):
            await view.blocked.wait()
            backend.release.set()
            while syncer._queue.empty():  # the snapshot is read and queued behind the stuck consumer
                await asyncio.sleep(0.001)
        assert not gc.isenabled()
        await syncer.stop()
        assert gc.isenabled()
