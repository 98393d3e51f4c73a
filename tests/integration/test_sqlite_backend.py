"""Sqlite-only behaviour of the embedded datastore: files, durability, history, TTL sweeping, bad input."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libcalico.datastore import backend_from_env
from libcalico.datastore.backend import Backend, EventType, WatchEvent
from libcalico.datastore.sqlite import APPLICATION_ID, DatastoreFileError, SqliteBackend
from libcalico.errors import (
    AlreadyExists,
    NotFound,
    ResyncRequired,
    RevisionConflict,
    Unavailable,
    ValidationError,
)

K = "/calico/resources/v3/projectcalico.org/globalnetworksets/"


def val(n: int) -> dict[str, object]:
    return {"kind": "GlobalNetworkSet", "metadata": {"name": f"s{n}"}, "spec": {"nets": [f"10.{n % 256}.0.0/16"]}}


async def take(backend: Backend, prefix: str, revision: int, count: int, timeout: float = 10.0) -> list[WatchEvent]:
    """The first ``count`` events of a watch within ``timeout`` seconds."""
    out: list[WatchEvent] = []
    async with asyncio.timeout(timeout):
        async with contextlib.aclosing(cast(AsyncGenerator[WatchEvent, None], backend.watch(prefix, revision))) as stream:
            async for event in stream:
                out.append(event)
                if len(out) >= count:
                    break
    return out


# ------------------------------------------------------------------ files and durability


async def test_data_history_and_revision_survive_reopen(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path) as first:
        for n in range(5):
            await first.create(K + f"s{n}", val(n))
        await first.delete(K + "s1")
        await first.update(K + "s2", val(22))
        revision = await first.current_revision()
    assert revision == 7
    async with SqliteBackend(sqlite_db_path) as again:
        assert await again.current_revision() == revision
        listing = await again.list(K)
        assert [kv.key for kv in listing.items] == [K + f"s{n}" for n in (0, 2, 3, 4)]
        assert (await again.get(K + "s2")).value == val(22)
        history = await take(again, K, 0, revision)
        assert [e.revision for e in history] == list(range(1, revision + 1))
        assert history[5].type is EventType.DELETE and history[5].key == K + "s1"
        assert (await again.create(K + "s9", val(9))).revision == revision + 1


async def test_store_is_in_wal_mode_and_marked_as_ours(sqlite_backend: SqliteBackend, sqlite_db_path: str) -> None:
    await sqlite_backend.create(K + "a", val(1))
    assert Path(sqlite_db_path + "-wal").exists()
    raw = sqlite3.connect(sqlite_db_path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("SELECT key, revision FROM calico_kv").fetchall() == [(K + "a", 1)]
    finally:
        raw.close()


async def test_closed_store_is_a_consistent_sqlite_file(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path) as backend:
        for n in range(50):
            await backend.apply(K + f"s{n % 7}", val(n))
    raw = sqlite3.connect(sqlite_db_path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert raw.execute("SELECT count(*) FROM calico_kv").fetchone()[0] == 7
        assert raw.execute("SELECT value FROM calico_meta WHERE name = 'revision'").fetchone()[0] == 50
    finally:
        raw.close()


async def test_two_backend_objects_on_one_file_see_each_others_writes(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path) as a, SqliteBackend(sqlite_db_path) as b:
        start = await b.current_revision()
        watcher = asyncio.create_task(take(b, K, start, 3))
        written = [(await a.create(K + "x", val(1))).revision, (await a.update(K + "x", val(2))).revision,
                   (await a.delete(K + "x")).revision]
        events = await watcher
        assert [e.revision for e in events[:2]] == written[:2]
        assert events[2].type is EventType.DELETE and events[2].revision > written[1]
        assert await b.current_revision() == await a.current_revision() == events[2].revision


# ------------------------------------------------------------------ bad files


@pytest.mark.parametrize("content", [b"hello, this is a text file\n" * 200, os.urandom(8192)], ids=["text", "random"])
async def test_a_file_that_is_not_a_database_is_refused_and_left_alone(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    backend = SqliteBackend(str(path))
    with pytest.raises(DatastoreFileError) as caught:
        await backend.get(K + "a")
    assert str(path) in str(caught.value) and "not a usable SQLite database" in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    with pytest.raises(DatastoreFileError):
        await backend.create(K + "a", val(1))
    await backend.close()
    assert path.read_bytes() == content
    assert not Path(str(path) + "-wal").exists()


async def test_another_applications_database_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    raw.execute("INSERT INTO users(name) VALUES ('ann')")
    raw.commit()
    raw.close()
    before = path.read_bytes()
    backend = backend_from_env({"DATASTORE_TYPE": "sqlite", "CALICO_DB": str(path)})
    with pytest.raises(DatastoreFileError, match="not a Calico-py datastore.*tables: users"):
        await backend.list(K)
    await backend.close()
    assert path.read_bytes() == before
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    raw.close()


async def test_a_store_with_a_damaged_header_is_refused(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path) as backend:
        await backend.create(K + "a", val(1))
    with open(sqlite_db_path, "r+b") as f:
        f.write(b"garbage garbage!")
    with pytest.raises(DatastoreFileError, match="not a usable SQLite database"):
        async with SqliteBackend(sqlite_db_path) as again:
            await again.get(K + "a")


async def test_a_store_from_a_newer_schema_is_refused(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path) as backend:
        await backend.create(K + "a", val(1))
    raw = sqlite3.connect(sqlite_db_path)
    raw.execute("PRAGMA user_version = 99")
    raw.close()
    with pytest.raises(DatastoreFileError, match="schema version 99 is newer"):
        async with SqliteBackend(sqlite_db_path) as again:
            await again.get(K + "a")


@pytest.mark.parametrize("where", ["missing-dir/calico.db", "."], ids=["missing-directory", "a-directory"])
async def test_an_unopenable_path_is_a_clear_error(tmp_path: Path, where: str) -> None:
    path = str(tmp_path / where)
    async with SqliteBackend(path) as backend:
        with pytest.raises(DatastoreFileError, match="cannot open the sqlite datastore"):
            await backend.current_revision()
    assert not (tmp_path / "missing-dir").exists()


# ------------------------------------------------------------------ bad input, closed store


async def test_bad_values_are_refused_and_nothing_is_written(sqlite_backend: SqliteBackend) -> None:
    await sqlite_backend.create(K + "a", val(1))
    before = await sqlite_backend.current_revision()
    with pytest.raises(ValidationError, match="must be a JSON map, not list"):
        await sqlite_backend.create(K + "b", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        await sqlite_backend.update(K + "a", {"x": float("nan")})
    with pytest.raises(ValidationError, match="not JSON-serialisable"):
        await sqlite_backend.apply(K + "a", {"x": object()})
    with pytest.raises(ValidationError, match="ttl"):
        await sqlite_backend.create(K + "c", val(3), ttl=0)
    with pytest.raises(ValidationError, match="key"):
        await sqlite_backend.create("", val(3))
    assert await sqlite_backend.current_revision() == before
    assert [kv.key for kv in (await sqlite_backend.list(K)).items] == [K + "a"]
    assert (await sqlite_backend.get(K + "a")).value == val(1)


async def test_close_ends_watches_and_refuses_later_calls(sqlite_db_path: str) -> None:
    backend = SqliteBackend(sqlite_db_path)
    await backend.create(K + "a", val(1))
    seen: list[WatchEvent] = []

    async def watch() -> None:
        async for event in backend.watch(K, 0):
            seen.append(event)

    watcher = asyncio.create_task(watch())
    for _ in range(1000):
        if seen:
            break
        await asyncio.sleep(0.005)
    await backend.close()
    async with asyncio.timeout(5):
        await watcher
    assert [e.key for e in seen] == [K + "a"]
    with pytest.raises(Unavailable, match="closed"):
        await backend.get(K + "a")


# ------------------------------------------------------------------ history


async def test_history_beyond_the_window_is_compacted(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path, history=50) as backend:
        for n in range(300):
            await backend.apply(K + f"s{n % 10}", val(n))
        head = await backend.current_revision()
        assert head == 300
        with pytest.raises(ResyncRequired) as caught:
            await take(backend, K, 0, 1)
        assert caught.value.compacted is not None and head - 50 - 128 <= caught.value.compacted <= head - 50
        recent = await take(backend, K, head - 20, 20)
        assert [e.revision for e in recent] == list(range(head - 19, head + 1))
        raw = sqlite3.connect(sqlite_db_path)
        try:
            kept = raw.execute("SELECT count(*) FROM calico_events").fetchone()[0]
        finally:
            raw.close()
        assert 50 <= kept <= 50 + 128


async def test_a_lagging_watch_fails_with_resync_once_its_history_is_gone(sqlite_backend: SqliteBackend) -> None:
    await sqlite_backend.create(K + "a", val(0))
    stream = cast(AsyncGenerator[WatchEvent, None], sqlite_backend.watch(K, 0))
    try:
        first = await anext(stream)
        assert first.revision == 1
        for n in range(5):
            await sqlite_backend.update(K + "a", val(n))
        compacted = await sqlite_backend.compact(3)
        assert compacted == 3
        with pytest.raises(ResyncRequired) as caught:
            async with asyncio.timeout(5):
                await anext(stream)
        assert caught.value.requested == 1 and caught.value.compacted == 3
    finally:
        await stream.aclose()
    assert [e.revision for e in await take(sqlite_backend, K, 3, 3)] == [4, 5, 6]


# ------------------------------------------------------------------ TTL


async def test_expired_entry_is_invisible_at_once_and_then_deleted_with_an_event(sqlite_backend: SqliteBackend) -> None:
    created = await sqlite_backend.create(K + "short", val(1), ttl=0.3)
    await sqlite_backend.create(K + "long", val(2))
    deadline = time.monotonic() + 10
    for _ in range(10_000):  # no watcher and no writer: only reads notice the expiry
        try:
            await sqlite_backend.get(K + "short")
        except NotFound:
            break
        assert time.monotonic() < deadline, "entry with a 0.3 s TTL still readable after 10 s"
        await asyncio.sleep(0.02)
    assert [kv.key for kv in (await sqlite_backend.list(K)).items] == [K + "long"]
    events = await take(sqlite_backend, K + "short", created.revision, 1)
    assert events[0].type is EventType.DELETE and events[0].key == K + "short"


async def test_a_watching_process_deletes_entries_another_left_to_expire(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path) as writer:
        created = await writer.create(K + "lease", val(1), ttl=0.5)
    async with SqliteBackend(sqlite_db_path) as watcher:
        events = await take(watcher, K, created.revision, 1)
        assert [(e.type, e.key) for e in events] == [(EventType.DELETE, K + "lease")]
    async with SqliteBackend(sqlite_db_path) as reader:
        with pytest.raises(NotFound):
            await reader.get(K + "lease")
        raw = await reader.list(K)
        assert raw.items == [] and raw.revision == events[0].revision


async def test_update_with_a_new_ttl_extends_it_and_without_one_clears_it(sqlite_backend: SqliteBackend) -> None:
    await sqlite_backend.create(K + "a", val(1), ttl=0.2)
    await sqlite_backend.update(K + "a", val(2))  # no ttl: the entry no longer expires
    made = time.monotonic()
    await sqlite_backend.create(K + "b", val(3), ttl=0.2)
    await wait_until_gone(sqlite_backend, K + "b", 10)
    assert time.monotonic() - made >= 0.2
    assert (await sqlite_backend.get(K + "a")).value == val(2)


async def wait_until_gone(backend: SqliteBackend, key: str, timeout: float) -> None:
    """Poll until ``key`` reads as NotFound."""
    deadline = time.monotonic() + timeout
    for _ in range(100_000):
        try:
            await backend.get(key)
        except NotFound:
            return
        assert time.monotonic() < deadline, f"{key} still present after {timeout}s"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ model-based


_OPS = st.lists(
    st.tuples(st.sampled_from(["create", "update", "apply", "delete"]), st.integers(0, 4), st.integers(0, 99),
              st.sampled_from(["none", "current", "stale"])),
    max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_any_sequence_of_writes_matches_a_dict_and_replays_from_its_watch(
    tmp_path: Path, ops: list[tuple[str, int, int, str]]
) -> None:
    """Each write succeeds or fails exactly as a dict model says; one revision per success; the watch replays it."""

    async def run(path: str) -> None:
        model: dict[str, tuple[dict[str, object], int]] = {}
        successes = 0
        async with SqliteBackend(path) as backend:
            for op, k, n, rev_mode in ops:
                key, value = f"{K}k{k}", val(n)
                present = key in model
                revision = None
                if rev_mode != "none" and present:
                    revision = model[key][1] + (0 if rev_mode == "current" else -1)
                try:
                    if op == "create":
                        kv = await backend.create(key, value)
                    elif op == "update":
                        kv = await backend.update(key, value, revision=revision)
                    elif op == "apply":
                        kv = await backend.apply(key, value)
                    else:
                        kv = await backend.delete(key, revision=revision)
                except AlreadyExists:
                    assert op == "create" and present
                    continue
                except NotFound:
                    assert op in ("update", "delete") and not present
                    continue
                except RevisionConflict:
                    assert op in ("update", "delete") and rev_mode == "stale" and present
                    continue
                assert not (op == "create" and present) and (present or op in ("create", "apply"))
                assert not (rev_mode == "stale" and present and op in ("update", "delete"))
                successes += 1
                if op == "delete":
                    assert (kv.value, kv.revision) == model.pop(key)
                else:
                    assert kv.revision == successes
                    model[key] = (value, kv.revision)
            listing = await backend.list(K)
            assert {kv.key: (kv.value, kv.revision) for kv in listing.items} == model
            assert listing.revision == successes
            replayed: dict[str, tuple[dict[str, object], int]] = {}
            for event in (await take(backend, K, 0, successes)) if successes else []:
                if event.type is EventType.DELETE:
                    replayed.pop(event.key)
                else:
                    assert event.value is not None
                    replayed[event.key] = (event.value, event.revision)
            assert replayed == model

    path = tmp_path / f"model-{time.monotonic_ns()}.db"
    try:
        asyncio.run(run(str(path)))
    finally:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
