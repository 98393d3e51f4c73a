"""Opening the sqlite datastore's writer while another connection holds the file: it waits, bounded."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libcalico.datastore.sqlite_file import open_writer
from libcalico.errors import Unavailable


@contextlib.contextmanager
def held_exclusive(path: Path, seconds: float) -> Iterator[None]:
    """Another connection holds ``path`` exclusively for ``seconds`` (from a thread) while the block runs."""
    held = threading.Event()

    def hold() -> None:
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(seconds)
            conn.execute("COMMIT")
        finally:
            conn.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(5)
        yield
    finally:
        holder.join(10)


def test_writer_opens_once_the_other_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "calico.db"
    with held_exclusive(path, 0.3):
        started = time.monotonic()
        conn = open_writer(str(path), 5.0, "NORMAL")
        waited = time.monotonic() - started
    try:
        assert 0.1 < waited < 5.0
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_writer_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "calico.db"
    with held_exclusive(path, 2.0):
        started = time.monotonic()
        with pytest.raises(Unavailable, match="busy"):
            open_writer(str(path), 0.3, "NORMAL")
        assert time.monotonic() - started < 1.5  # bounded by the timeout (plus one pause), not the holder
