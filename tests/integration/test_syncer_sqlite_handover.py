"""How the felix syncer hands a sqlite snapshot over: resync-in-progress first and alone, then bounded batches
checked one at a time (other tasks run between them), then in-sync; the snapshot filed as old for the collector."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.syncer import Syncer, SyncStatus, Update, ViewCallbacks, syncer_spec
from libcalico.syncer.catalog import ResourceType
from libcalico.syncer.syncer import _MAX_BATCH
from libcalico.syncer.validation import ValidationFilter

V3 = "projectcalico.org/v3"
WEP = f"{RESOURCE_ROOT}workloadendpoints/"
COUNT = 2 * _MAX_BATCH + 345  # three batches


def endpoint(i: int) -> tuple[str, dict[str, Any]]:
    name = f"node--1-k8s-pod--{i}-eth0"
    return f"{WEP}ns-{i % 3}/{name}", {
        "apiVersion": V3, "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": f"ns-{i % 3}", "labels": {"app": f"a{i % 5}"}},
        "spec": {"node": "node-1", "pod": f"pod-{i}", "interfaceName": f"cali{i}",
                 "ipNetworks": [f"10.0.{i // 250}.{i % 250}/32"], "profiles": [f"kns.ns-{i % 3}"]}}


class CountingFilter(ValidationFilter):
    """Felix's validation, counting the entries it was asked about."""

    def __init__(self) -> None:
        super().__init__("felix")
        self.checked = 0

    def accepts(self, rtype: ResourceType, key: str, value: Any, revision: int) -> bool:
        self.checked += 1
        return super().accepts(rtype, key, value, revision)


class Recorder(ViewCallbacks):
    """A view that notes, at each callback, how many entries had been checked and how often the loop had turned."""

    def __init__(self, checks: CountingFilter, ticks: list[int]) -> None:
        super().__init__()
        self.checks, self.ticks = checks, ticks
        self.at_status: dict[SyncStatus, int] = {}
        self.batch_notes: list[tuple[int, int, bool]] = []  # (entries checked, loop turns, collector on)

    def on_status(self, status: SyncStatus) -> None:
        self.at_status.setdefault(status, self.checks.checked)
        super().on_status(status)

    def on_updates(self, updates: list[Update]) -> None:
        self.batch_notes.append((self.checks.checked, self.ticks[0], gc.isenabled()))
        super().on_updates(updates)


async def test_snapshot_goes_out_status_first_then_in_bounded_batches(sqlite_db_path: str) -> None:
    entries = dict(endpoint(i) for i in range(COUNT))
    ticks = [0]

    async def ticker() -> None:
        while True:
            ticks[0] += 1
            await asyncio.sleep(0)

    async with SqliteBackend(sqlite_db_path) as backend:
        for key, value in entries.items():
            await backend.create(key, value)
        checks = CountingFilter()
        view = Recorder(checks, ticks)
        syncer = Syncer(backend, syncer_spec("felix"), view, validate=False)
        syncer.validation = syncer.core.validation = checks
        turning = asyncio.create_task(ticker())
        try:
            async with syncer:
                await view.wait_for_status(SyncStatus.IN_SYNC, timeout=30)
        finally:
            turning.cancel()
    assert view.statuses == [SyncStatus.WAIT_FOR_DATASTORE, SyncStatus.RESYNC_IN_PROGRESS, SyncStatus.IN_SYNC]
    assert view.at_status[SyncStatus.RESYNC_IN_PROGRESS] == 0  # out before any entry was checked
    assert view.at_status[SyncStatus.IN_SYNC] == COUNT
    sizes = [len(b) for b in view.batches]
    assert sizes == [_MAX_BATCH, _MAX_BATCH, COUNT - 2 * _MAX_BATCH]
    assert [checked for checked, _, _ in view.batch_notes] == [_MAX_BATCH, 2 * _MAX_BATCH, COUNT]  # one at a time
    turns = [t for _, t, _ in view.batch_notes]
    assert turns[0] < turns[1] < turns[2]  # the loop ran other tasks between the batches
    assert not any(on for _, _, on in view.batch_notes)  # the collector stayed paused for the whole snapshot
    assert view.view == entries and view.anomalies == []


async def test_after_the_snapshot_the_collector_finds_it_old(sqlite_db_path: str) -> None:
    key, value = endpoint(7)
    async with SqliteBackend(sqlite_db_path) as backend:
        for i in range(300):
            await backend.create(*endpoint(i))
        view = ViewCallbacks()
        async with Syncer(backend, syncer_spec("felix"), view):
            await view.wait_for_status(SyncStatus.IN_SYNC)
            deadline = asyncio.get_running_loop().time() + 10
            while not gc.isenabled():
                assert asyncio.get_running_loop().time() < deadline, "the collector was never resumed"
                await asyncio.sleep(0.001)
            listed = view.view[key]
            assert listed == value
            assert gc.get_freeze_count() == 0
            assert any(obj is listed for obj in gc.get_objects(generation=2))  # filed as old at once
            assert not any(obj is listed for obj in gc.get_objects(generation=0))


async def test_a_plain_listing_is_filed_as_old_too(sqlite_backend: SqliteBackend) -> None:
    for i in range(50):
        await sqlite_backend.create(*endpoint(i))
    assert gc.isenabled()
    rows, _ = await sqlite_backend.list_rows(WEP)
    assert gc.isenabled() and len(rows) == 50
    assert any(obj is rows[0][1] for obj in gc.get_objects(generation=2))
