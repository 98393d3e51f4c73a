"""The embedded datastore: one SQLite file shared by every service on one machine.

How it works::

    process A ─┐                         ┌─ calico_kv      key → value, revision, expires
    process B ─┼─► one file (WAL mode) ──┼─ calico_events  revision → key, value (NULL = delete)
    process C ─┘                         └─ calico_meta    revision counter, compacted point

Every write runs in ``BEGIN IMMEDIATE`` (one writer at a time across processes,
others wait up to the busy timeout), takes the next value of the store-wide
revision counter, changes ``calico_kv`` and appends one row per changed key to
``calico_events``. A watch replays ``calico_events`` after its revision; it is
woken at once by writes made through the same backend object and, for writes
from other processes, by a poller that checks ``PRAGMA data_version`` every few
milliseconds. The event log keeps the last ``history`` revisions; a watch from
before that point raises :class:`~libcalico.errors.ResyncRequired`.

Entries with a TTL are invisible to reads once expired; the first writer or
watching poller to notice deletes them, which appends a DELETE event.

SQLite calls never run on the event loop: writes go to one worker thread with
its own connection, reads (and watch polls) to another, so a busy database only
ever stalls those threads.

Values are read as bytes and decoded with orjson (several times faster than the
json module), falling back to the json module wherever the two could differ
(integers beyond 64 bits, NaN, anything orjson refuses), so the values and the
errors are exactly the json module's. A stored value that is not a JSON map
raises :class:`DatastoreFileError` naming the key. ``list_rows`` is ``list``
without the per-entry :class:`KV` objects, for the syncer's snapshot.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import orjson
import structlog

from libcalico.datastore.backend import KV, Backend, EventType, JSONMap, ListResult, WatchEvent
from libcalico.datastore.jsonexact import LONG_DIGIT_RUN, ZERO_DIGITS
from libcalico.errors import (
    AlreadyExists,
    DatastoreError,
    NotFound,
    ResyncRequired,
    RevisionConflict,
    Unavailable,
    ValidationError,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

APPLICATION_ID = 0x43504459  # "CPDY": marks a file as a Calico-py datastore
SCHEMA_VERSION = 1
_WATCH_BATCH = 512
_LIST_CHUNK = 512  # rows fetched and decoded at a time by list_rows
_COMPACT_EVERY = 128

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS calico_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS calico_kv (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
    " revision INTEGER NOT NULL, expires REAL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS calico_kv_expires ON calico_kv(expires) WHERE expires IS NOT NULL",
    "CREATE TABLE IF NOT EXISTS calico_events (revision INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT)",
    "INSERT OR IGNORE INTO calico_meta(name, value) VALUES ('revision', 0), ('compacted', 0)",
)


class DatastoreFileError(DatastoreError):
    """The sqlite datastore file cannot be used: not a database, another application's, corrupt or unopenable."""


def _translate(path: str, exc: sqlite3.Error, opening: bool = False) -> DatastoreError:
    """Our error for a sqlite error met on ``path``."""
    code = getattr(exc, "sqlite_errorname", "") or type(exc).__name__
    if code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return Unavailable(f"sqlite datastore {path} is busy (locked by another writer): {exc}")
    if code.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return DatastoreFileError(f"{path}: not a usable SQLite database ({code}: {exc})")
    if opening:
        return DatastoreFileError(f"{path}: cannot open the sqlite datastore ({code}: {exc})")
    return Unavailable(f"sqlite datastore {path} failed ({code}: {exc})")


def _encode(key: str, value: JSONMap) -> str:
    if not isinstance(key, str) or not key:
        raise ValidationError("key", f"must be a non-empty string, not {key!r}")
    if not isinstance(value, dict):
        raise ValidationError("value", f"{key}: must be a JSON map, not {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("value", f"{key}: not JSON-serialisable: {exc}") from None


Row = tuple[str, JSONMap, int]  # key, value, revision
Rows = list[Row]


def _decode_slow(path: str, key: str, data: bytes | str) -> JSONMap:
    """The json module's reading of a value; DatastoreFileError (with its message) when it is not a JSON map."""
    try:
        value = json.loads(data if isinstance(data, str) else data.decode())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DatastoreFileError(f"{path}: the value at {key} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DatastoreFileError(f"{path}: the value at {key} is not a JSON map but {type(value).__name__}")
    return value


def _decode(path: str, key: str, data: bytes | str) -> JSONMap:
    """One stored value, as the json module reads it; raise DatastoreFileError when it is not a JSON map."""
    return _decode_rows(path, [(key, data, 0)])[0][1]


def _decode_rows(path: str, rows: list[tuple[str, bytes | str, int]]) -> list[Row]:
    """Decode ``(key, stored value, revision)`` rows: orjson for bytes it reads as the json module would."""
    loads, zero, run, decode_error = orjson.loads, ZERO_DIGITS, LONG_DIGIT_RUN, orjson.JSONDecodeError
    out: list[Row] = []
    append = out.append
    for key, data, revision in rows:
        value = None
        if data.__class__ is bytes and data.translate(zero).find(run) < 0:
            try:
                value = loads(data)
            except decode_error:
                value = None
        if value.__class__ is not dict:
            value = _decode_slow(path, key, data)
        append((key, value, revision))
    return out


def _prefix_clause(prefix: str) -> tuple[str, tuple[Any, ...]]:
    """SQL (and parameters) selecting keys that start with ``prefix``, using the key index when possible."""
    if not prefix:
        return "1", ()
    last = ord(prefix[-1])
    if last < 0xD7FF or 0xE000 <= last < 0x10FFFF:
        return "key >= ? AND key < ?", (prefix, prefix[:-1] + chr(last + 1))
    return "substr(key, 1, ?) = ?", (len(prefix), prefix)


def _meta(conn: sqlite3.Connection, name: str) -> int:
    row = conn.execute("SELECT value FROM calico_meta WHERE name = ?", (name,)).fetchone()
    return int(row[0])


class SqliteBackend(Backend):
    """A :class:`Backend` in one SQLite file, safe to share between processes on one machine.

    ``history`` is how many revisions of change history watches can replay;
    ``poll_interval`` how often (seconds) to look for other processes' writes while watching.
    Beyond the Backend interface, :meth:`compact` discards history on demand.
    """

    name = "sqlite"

    def __init__(self, path: str, *, busy_timeout: float = 5.0, history: int = 10_000,
                 poll_interval: float = 0.015, synchronous: str = "FULL") -> None:
        if synchronous not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValidationError("synchronous", f"must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}")
        if history < 1:
            raise ValidationError("history", f"must be at least 1, not {history}")
        self.path, self.busy_timeout, self.history = str(path), busy_timeout, history
        self.poll_interval, self.synchronous = poll_interval, synchronous
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-write")
        self._reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="sqlite-read")
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._open_future: concurrent.futures.Future[None] | None = None
        self._open_guard = threading.Lock()
        self._closed = False
        self._wake: asyncio.Event | None = None
        self._watchers = 0
        self._poller: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ connections

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return conn

    def _open_writer(self) -> None:
        """Open the write connection, refusing foreign files, and create the schema (writer thread)."""
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            raise _translate(self.path, exc, opening=True) from exc
        try:
            # Before anything that could modify a foreign file; in one read transaction so the
            # header and the table list are seen at the same moment (another process may be
            # creating the schema right now).
            conn.execute("BEGIN")
            try:
                self._check_format(conn)
            finally:
                conn.execute("COMMIT")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                if self._check_format(conn) == 0:
                    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                for stmt in _SCHEMA:
                    conn.execute(stmt)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            conn.close()
            raise _translate(self.path, exc, opening=True) from exc
        except BaseException:
            conn.close()
            raise
        self._wconn = conn

    def _check_format(self, conn: sqlite3.Connection) -> int:
        """Raise DatastoreFileError unless the file is empty or ours; return its application id."""
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id == APPLICATION_ID:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DatastoreFileError(
                    f"{self.path}: datastore schema version {version} is newer than this Calico-py"
                    f" understands ({SCHEMA_VERSION})"
                )
            return int(app_id)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        if app_id != 0 or tables:
            shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise DatastoreFileError(
                f"{self.path}: not a Calico-py datastore (an SQLite database of another application,"
                f" application_id {app_id}, tables: {shown or 'none'})"
            )
        return 0

    def _read_conn(self) -> sqlite3.Connection:
        if self._closed:
            raise Unavailable(f"sqlite datastore {self.path} is closed")
        if self._rconn is None:
            conn = self._connect()
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            conn.execute("PRAGMA query_only = 1")
            self._rconn = conn
        return self._rconn

    async def _ensure_open(self) -> None:
        if self._closed:
            raise Unavailable(f"sqlite datastore {self.path} is closed")
        with self._open_guard:
            fut = self._open_future
            if fut is None or fut.cancelled() or (fut.done() and fut.exception() is not None):
                fut = self._open_future = self._writer.submit(self._open_writer)
        await asyncio.shield(asyncio.wrap_future(fut))  # one caller's cancellation must not cancel the others' open

    async def _run(self, executor: concurrent.futures.Executor, fn: Callable[..., T], *args: Any) -> T:
        await self._ensure_open()
        if self._closed:
            raise Unavailable(f"sqlite datastore {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(executor, self._guarded, fn, *args)

    def _guarded(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        except sqlite3.Error as exc:
            raise _translate(self.path, exc) from exc

    async def _write(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        result = await self._run(self._writer, self._in_write_txn, fn)
        self._notify()
        return result

    async def _read(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        return await self._run(self._reader, lambda: fn(self._read_conn(), time.time()))

    def _in_write_txn(self, fn: Callable[[sqlite3.Connection, float], T]) -> T:
        conn = self._wconn
        if conn is None:
            raise Unavailable(f"sqlite datastore {self.path} is closed")
        conn.execute("BEGIN IMMEDIATE")
        try:
            now = time.time()
            self._sweep_expired(conn, now)
            result = fn(conn, now)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return result

    # ------------------------------------------------------------ write primitives (writer thread)

    def _record(self, conn: sqlite3.Connection, key: str, text: str | None) -> int:
        """Take the next store revision for a change of ``key`` (``text`` None: deleted) and log the event."""
        rows = conn.execute("UPDATE calico_meta SET value = value + 1 WHERE name = 'revision' RETURNING value").fetchall()
        rev = int(rows[0][0])
        if rev % _COMPACT_EVERY == 0 and rev > self.history:
            self._compact_to(conn, rev - self.history)
        conn.execute("INSERT INTO calico_events(revision, key, value) VALUES (?, ?, ?)", (rev, key, text))
        return rev

    def _compact_to(self, conn: sqlite3.Connection, revision: int) -> int:
        done = max(_meta(conn, "compacted"), min(revision, _meta(conn, "revision")))
        conn.execute("DELETE FROM calico_events WHERE revision <= ?", (done,))
        conn.execute("UPDATE calico_meta SET value = ? WHERE name = 'compacted'", (done,))
        return done

    def _sweep_expired(self, conn: sqlite3.Connection, now: float) -> int:
        keys = [r[0] for r in conn.execute(
            "SELECT key FROM calico_kv WHERE expires IS NOT NULL AND expires <= ? ORDER BY expires, key", (now,))]
        for key in keys:
            conn.execute("DELETE FROM calico_kv WHERE key = ?", (key,))
            self._record(conn, key, None)
        if keys:
            log.debug("sqlite expired", path=self.path, count=len(keys))
        return len(keys)

    @staticmethod
    def _expiry(key: str, ttl: float | None, now: float) -> float | None:
        if ttl is None:
            return None
        if not ttl > 0:
            raise ValidationError("ttl", f"{key}: must be a positive number of seconds, not {ttl!r}")
        return now + ttl

    # ------------------------------------------------------------ Backend

    async def get(self, key: str) -> KV:
        """Return the entry at ``key``; raise NotFound."""

        def op(conn: sqlite3.Connection, now: float) -> tuple[KV | None, bool]:
            row = conn.execute("SELECT CAST(value AS BLOB), revision, expires FROM calico_kv WHERE key = ?",
                               (key,)).fetchone()
            if row is None:
                return None, False
            if row[2] is not None and row[2] <= now:
                return None, True
            return KV(key, _decode(self.path, key, row[0]), row[1]), False

        kv, expired = await self._read(op)
        if expired:
            self._kick_sweep()
        if kv is None:
            raise NotFound(key)
        return kv

    async def list(self, prefix: str) -> ListResult:
        """Return every entry whose key starts with ``prefix``, in key order."""
        rows, revision = await self.list_rows(prefix)
        return ListResult([KV(k, v, r) for k, v, r in rows], revision)

    async def list_rows(self, prefix: str) -> tuple[Rows, int]:
        """``list`` as ``(key, value, revision)`` tuples and the listing's revision: no KV per entry."""
        clause, params = _prefix_clause(prefix)

        def op(conn: sqlite3.Connection, now: float) -> tuple[Rows, int, bool]:
            # The cyclic collector is paused (process-wide, unless the caller already paused it): every
            # row and value made here survives, and collections over them would cost more than the reading.
            paused = gc.isenabled()
            if paused:
                gc.disable()
            try:
                conn.execute("BEGIN")
                try:
                    out: Rows = []
                    cursor = conn.execute(
                        f"SELECT key, CAST(value AS BLOB), revision FROM calico_kv WHERE {clause}"
                        " AND (expires IS NULL OR expires > ?) ORDER BY key", (*params, now))
                    while rows := cursor.fetchmany(_LIST_CHUNK):  # decoded as read: the raw bytes are reused
                        out += _decode_rows(self.path, rows)
                    expired = conn.execute(  # any expired entry at all (the sweep takes them all): by the index
                        "SELECT 1 FROM calico_kv WHERE expires IS NOT NULL AND expires <= ? LIMIT 1",
                        (now,)).fetchone()
                    revision = _meta(conn, "revision")
                finally:
                    conn.execute("COMMIT")
                return out, revision, expired is not None
            finally:
                if paused:
                    gc.enable()

        rows, revision, expired = await self._read(op)
        if expired:
            self._kick_sweep()
        return rows, revision

    async def create(self, key: str, value: JSONMap, *, ttl: float | None = None) -> KV:
        """Store a new entry; raise AlreadyExists. ``ttl`` seconds makes it expire."""
        text = _encode(key, value)

        def op(conn: sqlite3.Connection, now: float) -> KV:
            expires = self._expiry(key, ttl, now)
            if conn.execute("SELECT 1 FROM calico_kv WHERE key = ?", (key,)).fetchone() is not None:
                raise AlreadyExists(key)
            rev = self._record(conn, key, text)
            conn.execute("INSERT INTO calico_kv(key, value, revision, expires) VALUES (?, ?, ?, ?)",
                         (key, text, rev, expires))
            return KV(key, json.loads(text), rev)

        return await self._write(op)

    async def update(self, key: str, value: JSONMap, *, revision: int | None = None, ttl: float | None = None) -> KV:
        """Replace an entry; raise NotFound, or RevisionConflict when ``revision`` is given and stale."""
        text = _encode(key, value)

        def op(conn: sqlite3.Connection, now: float) -> KV:
            expires = self._expiry(key, ttl, now)
            row = conn.execute("SELECT revision FROM calico_kv WHERE key = ?", (key,)).fetchone()
            if row is None:
                raise NotFound(key)
            if revision is not None and row[0] != revision:
                raise RevisionConflict(key, revision, row[0])
            rev = self._record(conn, key, text)
            conn.execute("UPDATE calico_kv SET value = ?, revision = ?, expires = ? WHERE key = ?",
                         (text, rev, expires, key))
            return KV(key, json.loads(text), rev)

        return await self._write(op)

    async def apply(self, key: str, value: JSONMap, *, ttl: float | None = None) -> KV:
        """Create or unconditionally replace an entry (one transaction)."""
        text = _encode(key, value)

        def op(conn: sqlite3.Connection, now: float) -> KV:
            expires = self._expiry(key, ttl, now)
            rev = self._record(conn, key, text)
            conn.execute("INSERT INTO calico_kv(key, value, revision, expires) VALUES (?, ?, ?, ?) ON CONFLICT(key)"
                         " DO UPDATE SET value = excluded.value, revision = excluded.revision, expires = excluded.expires",
                         (key, text, rev, expires))
            return KV(key, json.loads(text), rev)

        return await self._write(op)

    async def delete(self, key: str, *, revision: int | None = None) -> KV:
        """Remove an entry and return what it held (with its last revision); raise NotFound or RevisionConflict."""

        def op(conn: sqlite3.Connection, now: float) -> KV:
            row = conn.execute("SELECT CAST(value AS BLOB), revision FROM calico_kv WHERE key = ?",
                               (key,)).fetchone()
            if row is None:
                raise NotFound(key)
            if revision is not None and row[1] != revision:
                raise RevisionConflict(key, revision, row[1])
            value = _decode(self.path, key, row[0])
            conn.execute("DELETE FROM calico_kv WHERE key = ?", (key,))
            self._record(conn, key, None)
            return KV(key, value, row[1])

        return await self._write(op)

    async def current_revision(self) -> int:
        """The store-wide revision now."""
        return await self._read(lambda conn, now: _meta(conn, "revision"))

    async def compact(self, revision: int | None = None) -> int:
        """Discard change history up to ``revision`` (default: all of it); return the compacted revision.

        A watch from a revision below the returned one raises ResyncRequired.
        """
        done = await self._write(
            lambda conn, now: self._compact_to(conn, _meta(conn, "revision") if revision is None else revision))
        log.info("sqlite compacted", path=self.path, revision=done)
        return done

    async def sweep(self) -> int:
        """Delete every expired entry now (each with a DELETE event); return how many."""
        return await self._write(self._sweep_expired)

    # ------------------------------------------------------------ watch

    async def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchEvent]:
        """Yield changes under ``prefix`` made after ``revision``, in revision order."""
        await self._ensure_open()
        clause, params = _prefix_clause(prefix)

        def fetch(conn: sqlite3.Connection, now: float, after: int) -> tuple[list[WatchEvent], int, int]:
            conn.execute("BEGIN")
            try:
                compacted = _meta(conn, "compacted")
                head = _meta(conn, "revision")
                if after < compacted:
                    return [], compacted, head
                rows = conn.execute(
                    f"SELECT revision, key, CAST(value AS BLOB) FROM calico_events WHERE revision > ? AND {clause}"
                    " ORDER BY revision LIMIT ?", (after, *params, _WATCH_BATCH)).fetchall()
            finally:
                conn.execute("COMMIT")
            events = [WatchEvent(EventType.DELETE, k, None, r) if v is None
                      else WatchEvent(EventType.PUT, k, _decode(self.path, k, v), r) for r, k, v in rows]
            return events, compacted, head if len(rows) < _WATCH_BATCH else rows[-1][0]

        self._watchers += 1
        self._start_poller()
        try:
            last = revision
            while not self._closed:
                wake = self._wake_event()
                try:
                    events, compacted, scanned = await self._read(functools.partial(fetch, after=last))
                except Unavailable:
                    if self._closed:
                        return  # closed under the watch: it ends, as after close() while waiting
                    raise
                if last < compacted:
                    raise ResyncRequired(last, compacted)
                for event in events:
                    yield event
                last = max(last, scanned)
                if not events:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(1.0):
                            await wake.wait()
        finally:
            self._watchers -= 1

    def _wake_event(self) -> asyncio.Event:
        if self._wake is None:
            self._wake = asyncio.Event()
        return self._wake

    def _notify(self) -> None:
        """Wake every watcher of this backend (they re-read the event log)."""
        if self._wake is not None:
            self._wake.set()
            self._wake = None

    def _start_poller(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll(), name=f"sqlite-poll {self.path}")

    async def _poll(self) -> None:
        """Wake watchers when another connection commits; sweep expired entries when one is due."""

        def probe(conn: sqlite3.Connection, now: float) -> tuple[int, float | None]:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            soonest = conn.execute("SELECT min(expires) FROM calico_kv WHERE expires IS NOT NULL").fetchone()[0]
            return int(version), soonest

        seen: int | None = None
        while self._watchers > 0 and not self._closed:
            try:
                version, soonest = await self._read(probe)
                if version != seen:
                    seen = version
                    self._notify()
                if soonest is not None and soonest <= time.time():
                    await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # task root: keep polling; the watchers' own reads report failures
                log.warning("sqlite poll failed", path=self.path, error=str(exc))
                self._notify()
                await asyncio.sleep(min(1.0, self.poll_interval * 20))
            await asyncio.sleep(self.poll_interval)

    def _kick_sweep(self) -> None:
        """Delete the expired entries a read noticed, in the background."""

        async def root() -> None:
            try:
                await self.sweep()
            except Exception as exc:  # task root: a later writer or poller sweeps instead
                log.warning("sqlite sweep failed", path=self.path, error=str(exc))

        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(root(), name="sqlite-sweep")

    # ------------------------------------------------------------ lifecycle

    async def close(self) -> None:
        """Stop watches and the poller, close both connections and their threads."""
        if self._closed:
            return
        self._closed = True
        self._notify()
        for task in (self._poller, self._sweeper):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._writer, self._close_conn, "_wconn")
        await loop.run_in_executor(self._reader, self._close_conn, "_rconn")
        self._writer.shutdown(wait=False)
        self._reader.shutdown(wait=False)

    def _close_conn(self, attr: str) -> None:
        conn = getattr(self, attr)
        setattr(self, attr, None)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
