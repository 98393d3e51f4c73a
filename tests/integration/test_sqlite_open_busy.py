"""Opening the sqlite datastore's writer while another connection holds the file: it waits, bounded."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from libcalico.datastore.sqlite_file import open_writer
from libcalico.errors import Unavailable


def hold_exclusive(path: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        held.set()
        time.sleep(seconds)
        conn.execute("COMMIT")
    finally:
        conn.close()


def test_writer_opens_once_the_other_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "calico.db"
    held = threading.Event()
    holder = threading.Thread(target=hold_exclusive, args=(path, 0.3, held))
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        conn = open_writer(str(path), 5.0, "NORMAL")
        waited = time.monotonic() - started
    finally:
        holder.join(10)
    try:
        assert 0.1 < waited < 5.0
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_writer_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "calico.db"
    held = threading.Event()
    holder = threading.Thread(target=hold_exclusive, args=(path, 2.0, held))
    holder.start()
    try:
        assert held.wait(5)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="busy"):
            open_writer(str(path), 0.3, "NORMAL")
        assert time.monotonic() - started < 1.5  # bounded by the timeout (plus one pause), not the holder
    finally:
        holder.join(10)
