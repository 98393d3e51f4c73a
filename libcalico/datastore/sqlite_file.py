"""The sqlite datastore's file: its format mark, schema, connections and error translation.

A Calico-py datastore file carries ``PRAGMA application_id`` = :data:`APPLICATION_ID` and
``PRAGMA user_version`` = the schema version, set in the same write transaction that creates
the tables. So a file with our application id has its tables: a reader checks that in one read
transaction (no write lock) and reads on; only an empty file needs the writer to create the
schema first. A file that is not a database, another application's database or a newer
schema is refused with :class:`DatastoreFileError` before anything could modify it.
"""

from __future__ import annotations

import sqlite3
import time

from libcalico.errors import DatastoreError, Unavailable

APPLICATION_ID = 0x43504459  # "CPDY": marks a file as a Calico-py datastore
SCHEMA_VERSION = 1

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS calico_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS calico_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
    " revision INTEGER NOT NULL, expires REAL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS calico_kv_expires ON calico_kv(expires) WHERE expires IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS calico_events (revision INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT)",
    "INSERT OR IGNORE INTO calico_meta(name, value) VALUES ('revision', 0), ('compacted', 0)",
)

SYNCHRONOUS = ("OFF", "NORMAL", "FULL", "EXTRA")  # the PRAGMA synchronous levels


class DatastoreFileError(DatastoreError):
    """The sqlite datastore file cannot be used: not a database, another application's, corrupt or unopenable."""


def translate(path: str, exc: sqlite3.Error, opening: bool = False) -> DatastoreError:
    """Our error for a sqlite error met on ``path``."""
    code = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return Unavailable(f"sqlite datastore {path} is busy (locked by another writer): {exc}")
    if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return DatastoreFileError(f"{path}: not a usable SQLite database ({code}: {exc})")
    if opening:
        return DatastoreFileError(f"{path}: cannot open the sqlite datastore ({code}: {exc})")
    return Unavailable(f"sqlite datastore {path} failed ({code}: {exc})")


def connect(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), usable from the thread that owns it."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    return conn


def meta(conn: sqlite3.Connection, name: str) -> int:
    """A counter of ``calico_meta``: ``revision`` (the store's) or ``compacted`` (history discarded up to)."""
    row = conn.execute("SELECT value FROM calico_meta WHERE name = ?", (name,)).fetchone()
    return int(row[0])


def check_format(path: str, conn: sqlite3.Connection) -> int:
    """Raise DatastoreFileError unless the file is empty or ours; return its application id (0: empty)."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    if app_id == APPLICATION_ID:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DatastoreFileError(
                f"{path}: datastore schema version {version} is newer than this Calico-py"
                f" understands ({SCHEMA_VERSION})"
            )
        return int(app_id)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    if app_id != 0 or tables:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise DatastoreFileError(
            f"{path}: not a Calico-py datastore (an SQLite database of another application,"
            f" application_id {app_id}, tables: {shown or 'none'})"
        )
    return 0


def _checked(path: str, conn: sqlite3.Connection) -> int:
    """``check_format`` in one read transaction: the header and the table list seen at the same moment."""
    conn.execute("BEGIN")
    try:
        return check_format(path, conn)
    finally:
        conn.execute("COMMIT")


def open_writer(path: str, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
    """The write connection: the file checked (refusing foreign files), WAL mode, the schema created.

    ``synchronous`` is one of ``SYNCHRONOUS`` (checked by the caller). Processes that open one new
    file at once can meet SQLITE_BUSY without sqlite waiting (switching the file to WAL needs it
    alone); the whole open is then tried again, within ``busy_timeout`` in all.
    """
    deadline = time.monotonic() + max(busy_timeout, 0.0)
    pause = 0.002
    for _ in iter(int, 1):  # bounded by the deadline
        try:
            return _open_writer_once(path, busy_timeout, synchronous)
        except sqlite3.Error as exc:
            code = getattr(exc, "sqlite_errorname", "")
            if not code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or time.monotonic() + pause > deadline:
                raise translate(path, exc, opening=True) from exc
        time.sleep(pause)  # (the writer thread)
        pause = min(pause * 2, 0.1)
    raise AssertionError("unreachable")


def _open_writer_once(path: str, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
    conn = connect(path, busy_timeout)
    try:
        # Before anything that could modify a foreign file (another process may be creating the schema now).
        _checked(path, conn)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if check_format(path, conn) == 0:
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            for stmt in SCHEMA:
                conn.execute(stmt)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    except BaseException:
        conn.close()
        raise
    return conn


def open_reader(path: str, busy_timeout: float, synchronous: str) -> sqlite3.Connection:
    """The read connection (read-only by pragma); it checks nothing itself: see :func:`reader_ready`."""
    try:
        conn = connect(path, busy_timeout)
        conn.execute(f"PRAGMA synchronous = {synchronous}")
        conn.execute("PRAGMA query_only = 1")
    except sqlite3.Error as exc:
        raise translate(path, exc, opening=True) from exc
    return conn


def reader_ready(path: str, conn: sqlite3.Connection) -> bool:
    """Whether the file is ours with its schema (True) or still empty (False: the writer must create it).

    Raises DatastoreFileError for any other file, with nothing written to it.
    """
    try:
        return _checked(path, conn) == APPLICATION_ID
    except sqlite3.Error as exc:
        raise translate(path, exc, opening=True) from exc
