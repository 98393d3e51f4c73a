"""The sqlite datastore's reads need no write lock: a reader checks the file itself; only an empty file waits for
the writer to create the schema."""

from __future__ import annotations

import sqlite3
import time

import pytest

from libcalico.datastore.sqlite import APPLICATION_ID, DatastoreFileError, SqliteBackend
from libcalico.errors import Unavailable

K = "/calico/resources/v3/projectcalico.org/globalnetworksets/"


async def test_a_fresh_backend_lists_while_another_process_holds_the_write_lock(sqlite_db_path: str) -> None:
    async with SqliteBackend(sqlite_db_path) as seeding:
        for n in range(5):
            await seeding.create(f"{K}s{n}", {"n": n})
    lock = sqlite3.connect(sqlite_db_path, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # another process writing: the write lock is taken
        backend = SqliteBackend(sqlite_db_path, busy_timeout=1.0)
        async with backend:
            started = time.monotonic()
            rows, revision = await backend.list_rows(K)
            kv = await backend.get(f"{K}s3")
            assert time.monotonic() - started < 0.9  # never waited for the lock
            assert [r[1]["n"] for r in rows] == [0, 1, 2, 3, 4] and revision == 5 and kv.value == {"n": 3}
            with pytest.raises(Unavailable, match="busy"):
                await backend.create(f"{K}s9", {"n": 9})  # a write does wait for it, and says so
        lock.execute("ROLLBACK")
    finally:
        lock.close()


async def test_the_first_read_of_a_new_file_creates_the_schema(sqlite_db_path: str) -> None:
    backend = SqliteBackend(sqlite_db_path)
    async with backend:
        assert await backend.list_rows(K) == ([], 0)
        assert await backend.current_revision() == 0
    raw = sqlite3.connect(sqlite_db_path)
    try:
        assert raw.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


async def test_the_reader_refuses_a_foreign_database_without_writing(tmp_path: object) -> None:
    path = f"{tmp_path}/other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE notes (body TEXT)")
    raw.commit()
    raw.close()
    with open(path, "rb") as f:
        before = f.read()
    backend = SqliteBackend(path)
    async with backend:
        for _ in range(2):  # refused every time, not only on the first read
            with pytest.raises(DatastoreFileError, match="not a Calico-py datastore.*tables: notes"):
                await backend.list_rows(K)
    with open(path, "rb") as f:
        assert f.read() == before
