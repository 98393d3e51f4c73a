"""The etcdv3 backend: Calico's keys as JSON values in etcd, through aetcd.

How it works::

    EtcdBackend ──► EtcdConnection (endpoint failover, retries) ──► aetcd client ──► etcd
        create   txn  if version(key) == 0      then put(key, json, lease)
        update   txn  if version(key) > 0 [and mod(key) == rev]   then put   else get
        delete   txn  if version(key) > 0 [and mod(key) == rev]   then delete(prev_kv) else get
        list     Range pages of ``page_size`` keys, every page at the first page's revision;
                 ``list_pages`` hands them over one by one (the next one already in flight)
        watch    aetcd watch from revision + 1, resumed on another member after a failure
        ttl      a fresh lease per write, never kept alive: the entry expires unless re-written

Each entry's revision is etcd's ``mod_revision``. Values are parsed by orjson
(with the json module's answer wherever the two would differ). A stored value
that is not a JSON object is skipped by list and seen as a deletion by watch,
with a warning logged once per key and revision.
A watch whose history was compacted raises ResyncRequired once and ends;
connection loss beyond the retry budget raises Unavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import aetcd
import grpc
import structlog
from aetcd import rpc

from libcalico.collector import collector_paused
from libcalico.datastore.backend import KV, Backend, EventType, JSONMap, ListResult, WatchEvent
from libcalico.datastore.etcd_codec import (
    RejectLog,
    check_key,
    decode_page,
    decode_value,
    encode_value,
    lease_seconds,
    load_json,
    range_end,
)
from libcalico.datastore.etcd_config import EtcdConfig
from libcalico.datastore.etcd_connection import (
    EtcdClient,
    EtcdConnection,
    Failure,
    RpcFailure,
    backoff_delay,
    classify,
    refusal_error,
)
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

LIST_ATTEMPTS = 3
CANCEL_TIMEOUT = 2.0
DECODE_CHUNK = 200  # listed values decoded between two turns of the event loop


def _ranger(request: rpc.RangeRequest) -> Callable[[EtcdClient], Awaitable[rpc.RangeResponse]]:
    """A call that sends one fixed Range request on whichever client it is given."""

    def send(client: EtcdClient) -> Awaitable[rpc.RangeResponse]:
        return client.range(request)

    return send


def _abandon_watch(task: asyncio.Future[Any]) -> None:
    """Clean up after a watch creation given up on: cancel the watch if it was made after all."""
    if task.cancelled() or task.exception() is not None:
        return
    closer = asyncio.ensure_future(task.result().cancel())
    closer.add_done_callback(lambda t: t.cancelled() or t.exception())


def _raise_if_lost(op: str, key: str, lost: list[RpcFailure]) -> None:
    """After an attempt was cut off in flight, a failed compare may be that attempt's own effect."""
    if lost:
        raise Unavailable(
            f"etcd {op} of {key}: outcome unknown; an attempt was cut off ({lost[0].details})"
            " and may have applied before the retry found the entry changed"
        )


class EtcdBackend(Backend):
    """Calico's datastore in etcd v3 (``DATASTORE_TYPE=etcdv3``)."""

    name = "etcdv3"

    def __init__(self, config: EtcdConfig) -> None:
        self.config = config
        self._conn = EtcdConnection(config)
        self._rejects = RejectLog()

    @classmethod
    def from_env(cls, env: Mapping[str, str], **overrides: Any) -> EtcdBackend:
        """Open from ``ETCD_ENDPOINTS`` and the ``ETCD_*_FILE`` variables; ``overrides`` tune timeouts."""
        config = EtcdConfig.from_env(env)
        if overrides:
            config = dataclasses.replace(config, **overrides)
        return cls(config)

    @property
    def connected_endpoint(self) -> str | None:
        """The endpoint now in use, or None between connections."""
        client = self._conn.current
        return str(client.endpoint) if client is not None else None

    # ------------------------------------------------------------------ reads

    async def get(self, key: str) -> KV:
        """Return the entry at ``key``; raise NotFound."""
        request = rpc.RangeRequest(key=check_key(key))
        resp = await self._conn.call("get", key, _ranger(request))
        for kv in resp.kvs:
            value = decode_value(key, kv.value, kv.mod_revision, self._rejects)
            if value is None:
                raise DatastoreError(f"etcd value at {key} is not a JSON object")
            return KV(key, value, kv.mod_revision)
        raise NotFound(key)

    async def list(self, prefix: str) -> ListResult:
        """Return every entry whose key starts with ``prefix``, in key order, at one revision."""
        for attempt in range(LIST_ATTEMPTS):
            try:
                return await self._list_once(prefix)
            except ResyncRequired:
                log.info("etcd list restarted after compaction", prefix=prefix, attempt=attempt)
        raise Unavailable(
            f"etcd list of {prefix}: history compacted under the listing {LIST_ATTEMPTS} times"
        )

    async def _list_once(self, prefix: str) -> ListResult:
        items: list[KV] = []
        revision = 0
        async for page in self.list_pages(prefix):
            items.extend(page.items)
            revision = page.revision
        return ListResult(items, revision)

    async def list_pages(self, prefix: str) -> AsyncIterator[ListResult]:
        """Yield the entries under ``prefix`` page by page, in key order, all at one revision.

        Each page is a ListResult carrying the listing's revision; there is always at
        least one (maybe empty). The next page is already being fetched while the caller
        handles this one. Raises ResyncRequired when the history is compacted under the
        listing (the caller starts again), Unavailable when etcd cannot be reached.
        """
        end = range_end(prefix.encode())

        def fetch(start: bytes, revision: int) -> asyncio.Task[rpc.RangeResponse]:
            request = rpc.RangeRequest(
                key=start, range_end=end, limit=self.config.page_size, revision=revision
            )
            return asyncio.ensure_future(self._conn.call("list", prefix, _ranger(request)))

        with collector_paused():
            pending = fetch(prefix.encode() or b"\x00", 0)
            revision = 0
            try:
                for _ in range(1 << 40):  # bounded by the keys in the range: every page moves on
                    resp = await pending
                    revision = revision or resp.header.revision
                    more = resp.more and len(resp.kvs) > 0
                    if more:
                        pending = fetch(resp.kvs[-1].key + b"\x00", revision)
                    kvs = resp.kvs
                    page: list[KV] = []
                    for start in range(0, len(kvs), DECODE_CHUNK):
                        # Let the loop run between chunks: the next page's request goes out
                        # (and the caller's work on the last page goes on) while this one decodes.
                        await asyncio.sleep(0)
                        page.extend(decode_page(kvs[start:start + DECODE_CHUNK], self._rejects))
                    del resp, kvs
                    yield ListResult(page, revision)
                    if not more:
                        break
            finally:
                if not pending.done():
                    pending.cancel()
                    await asyncio.gather(pending, return_exceptions=True)

    async def current_revision(self) -> int:
        """The store-wide revision now."""
        request = rpc.RangeRequest(key=b"\x00", count_only=True)
        resp = await self._conn.call("revision", "/", _ranger(request))
        return int(resp.header.revision)

    # ------------------------------------------------------------------ writes

    async def _lease(self, key: str, ttl: float | None) -> int:
        if ttl is None:
            return 0
        seconds = lease_seconds(key, ttl)
        lease = await self._conn.call("lease", key, lambda c: c.lease(seconds))
        return int(lease.id)

    async def create(self, key: str, value: JSONMap, *, ttl: float | None = None) -> KV:
        """Store a new entry; raise AlreadyExists. ``ttl`` seconds makes it expire."""
        data = encode_value(key, value)
        lease = await self._lease(key, ttl)
        k = key.encode()

        async def txn(c: EtcdClient) -> tuple[bool, list[Any]]:
            tx = c.transactions
            return await c.transaction(
                compare=[tx.version(k) == 0], success=[tx.put(k, data, lease=lease)], failure=[]
            )

        lost: list[RpcFailure] = []
        ok, responses = await self._conn.call("create", key, txn, lost=lost)
        if not ok:
            _raise_if_lost("create", key, lost)
            raise AlreadyExists(key)
        return KV(key, load_json(data), responses[0].response_put.header.revision)

    async def update(
        self, key: str, value: JSONMap, *, revision: int | None = None, ttl: float | None = None
    ) -> KV:
        """Replace an entry; raise NotFound, or RevisionConflict when ``revision`` is given and stale."""
        data = encode_value(key, value)
        lease = await self._lease(key, ttl)
        k = key.encode()

        async def txn(c: EtcdClient) -> tuple[bool, list[Any]]:
            tx = c.transactions
            compare = [tx.version(k) > 0]
            if revision is not None:
                compare.append(tx.mod(k) == revision)
            return await c.transaction(
                compare=compare, success=[tx.put(k, data, lease=lease)], failure=[tx.get(k)]
            )

        lost: list[RpcFailure] = []
        ok, responses = await self._conn.call("update", key, txn, lost=lost)
        if not ok:
            _raise_if_lost("update", key, lost)
            self._raise_precondition(key, revision, responses)
        return KV(key, load_json(data), responses[0].response_put.header.revision)

    async def apply(self, key: str, value: JSONMap, *, ttl: float | None = None) -> KV:
        """Create or unconditionally replace an entry (one put)."""
        data = encode_value(key, value)
        lease = await self._lease(key, ttl)
        k = key.encode()

        async def txn(c: EtcdClient) -> tuple[bool, list[Any]]:
            return await c.transaction(
                compare=[], success=[c.transactions.put(k, data, lease=lease)], failure=[]
            )

        _, responses = await self._conn.call("apply", key, txn)
        return KV(key, load_json(data), responses[0].response_put.header.revision)

    async def delete(self, key: str, *, revision: int | None = None) -> KV:
        """Remove an entry and return what it held (with its last revision); raise NotFound or RevisionConflict."""
        k = check_key(key)

        async def txn(c: EtcdClient) -> tuple[bool, list[Any]]:
            tx = c.transactions
            compare = [tx.version(k) > 0]
            if revision is not None:
                compare.append(tx.mod(k) == revision)
            return await c.transaction(
                compare=compare, success=[tx.delete(k, prev_kv=True)], failure=[tx.get(k)]
            )

        lost: list[RpcFailure] = []
        ok, responses = await self._conn.call("delete", key, txn, lost=lost)
        if not ok:
            _raise_if_lost("delete", key, lost)
            self._raise_precondition(key, revision, responses)
        prev = responses[0].response_delete_range.prev_kvs
        if not prev:  # deleted by someone else between compare and delete cannot happen in a txn
            raise NotFound(key)
        value = decode_value(key, prev[0].value, prev[0].mod_revision, self._rejects)
        return KV(key, value if value is not None else {}, prev[0].mod_revision)

    @staticmethod
    def _raise_precondition(key: str, revision: int | None, responses: Sequence[Any]) -> None:
        current = responses[0] if responses else []
        if not current:
            raise NotFound(key)
        raise RevisionConflict(key, revision, current[0][1].mod_revision)

    async def compact(self, revision: int | None = None) -> int:
        """Discard change history up to ``revision`` (default: now); return the compacted revision."""
        target = revision if revision is not None else await self.current_revision()
        try:
            await self._conn.call("compact", "/", lambda c: c.compact(target, physical=True))
        except ResyncRequired:
            log.info("etcd already compacted", revision=target)
        return target

    # ------------------------------------------------------------------ watch

    async def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchEvent]:
        """Yield changes under ``prefix`` made after ``revision``, in revision order.

        Survives the loss of one member by resuming on another; raises ResyncRequired
        when the history after ``revision`` is compacted, Unavailable when no member
        answers within the retry budget.
        """
        if revision < 0:
            raise ValidationError("revision", f"watch of {prefix}: {revision} is not a revision")
        start = prefix.encode() or b"\x00"
        end = range_end(prefix.encode())
        loop = asyncio.get_running_loop()
        next_revision = revision + 1
        deadline: float | None = None
        attempt = 0
        while True:
            if deadline is None:
                deadline = loop.time() + self.config.retry_timeout
            client = await self._conn.client(deadline)
            stream: Any = None
            try:
                stream = await self._open_watch(client, start, end, next_revision)
                async for event in stream:
                    deadline, attempt = None, 0
                    next_revision = event.kv.mod_revision + 1
                    yield self._event(event)
                # The stream ended without an error: its client was closed under us.
                self._conn.discard(client, RpcFailure(Failure.LOST, None, "watch stream closed"))
            except aetcd.RevisionCompactedError as exc:
                raise ResyncRequired(next_revision - 1, exc.compacted_revision) from exc
            except (grpc.aio.AioRpcError, aetcd.ClientError) as exc:
                failure = classify(exc)
                if failure.kind is Failure.REFUSED:
                    raise refusal_error("watch", prefix, failure) from exc
                if failure.kind is Failure.COMPACTED:
                    raise ResyncRequired(next_revision - 1) from exc
                self._conn.discard(client, failure)
                if deadline is not None and loop.time() >= deadline:
                    raise Unavailable(
                        f"etcd watch of {prefix} lost at {client.endpoint}: {failure.details}"
                    ) from exc
                log.info(
                    "etcd watch resuming",
                    prefix=prefix,
                    revision=next_revision,
                    error=failure.details,
                )
            finally:
                if stream is not None:
                    with contextlib.suppress(grpc.aio.AioRpcError, aetcd.ClientError, TimeoutError):
                        async with asyncio.timeout(CANCEL_TIMEOUT):
                            await stream.cancel()
            if deadline is None:
                deadline = loop.time() + self.config.retry_timeout
            await asyncio.sleep(min(backoff_delay(attempt), max(0.0, deadline - loop.time())))
            attempt += 1

    @staticmethod
    async def _open_watch(client: EtcdClient, start: bytes, end: bytes, revision: int) -> Any:
        """Create a watch on ``client``, giving up as soon as the connection drops that client.

        aetcd creates one watch at a time per client; after its stream breaks, creations
        already queued would each wait out the request timeout in turn (18 watches: minutes).
        """
        creating = asyncio.ensure_future(client.watch(start, range_end=end, start_revision=revision))
        dropped = asyncio.ensure_future(client.dropped.wait())
        try:
            await asyncio.wait({creating, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
            given_up = not creating.done()
            if given_up:
                creating.cancel()  # finishes in the background (aetcd re-takes its lock first)
                creating.add_done_callback(_abandon_watch)
        if given_up:
            raise aetcd.ConnectionFailedError("etcd connection dropped while a watch was being created")
        return creating.result()

    def _event(self, event: aetcd.rtypes.Event) -> WatchEvent:
        key = event.kv.key.decode()
        if event.kind == "PUT":
            value = decode_value(key, event.kv.value, event.kv.mod_revision, self._rejects)
            if value is not None:
                return WatchEvent(EventType.PUT, key, value, event.kv.mod_revision)
        return WatchEvent(EventType.DELETE, key, None, event.kv.mod_revision)

    async def close(self) -> None:
        """Close every connection."""
        await self._conn.close()
