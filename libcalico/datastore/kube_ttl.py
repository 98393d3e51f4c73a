"""TTLs on a store that has none: expiry annotations, honoured on read, and a sweeper that deletes.

How it works::

    create/update(ttl=s) ── writes expires-at annotation + ttl label ──► custom resource
         │                                                   ▲
         └─ track(expiry) ─► heap ─► at expiry: GET, still expired? DELETE with
                                     resourceVersion precondition (a refresh wins)
    every `interval` s: LIST each CRD with label ttl=true, delete what has expired
                        (entries written by processes that are gone)

Reads never return an expired entry whether or not it has been swept yet; the
sweeper's DELETE is what watchers see. Several sweepers (one per process) can
run at once: the precondition makes a second deletion a harmless conflict.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time

import structlog

from libcalico.datastore.kube_api import KubeApi, MissingResourceType
from libcalico.datastore.kube_crd import TTL_SELECTOR, expiry_of, revision_of
from libcalico.datastore.kube_types import CALICO_CRDS, KubeType
from libcalico.errors import DatastoreError, NotFound, RevisionConflict

log = structlog.get_logger(__name__)

_RETRY_DELAY = 1.0
_DELETED, _GONE, _ALIVE = "deleted", "gone", "alive"


class TtlSweeper:
    """Deletes TTL'd custom resources once their expiry annotation has passed."""

    def __init__(self, api: KubeApi, interval: float | None) -> None:
        self._api = api
        self._interval = interval
        self._heap: list[tuple[float, str, str, str]] = []  # (expires_at, plural, namespace, name)
        self._tracked: set[tuple[float, str, str, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.swept = 0

    def start(self) -> None:
        """Start the background task (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="kube-ttl-sweeper")

    def track(self, ktype: KubeType, namespace: str | None, name: str, expires_at: float) -> None:
        """Remember to check an entry when it expires."""
        self._push((expires_at, ktype.plural, namespace or "", name))
        self._wake.set()
        self.start()

    def _push(self, entry: tuple[float, str, str, str]) -> None:
        if entry not in self._tracked:
            self._tracked.add(entry)
            heapq.heappush(self._heap, entry)

    async def close(self) -> None:
        """Stop the background task."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        next_scan = time.time()
        while True:
            try:
                now = time.time()
                if self._interval is not None and now >= next_scan:
                    await self.scan()
                    next_scan = time.time() + self._interval
                while self._heap and self._heap[0][0] <= time.time():
                    entry = heapq.heappop(self._heap)
                    self._tracked.discard(entry)
                    _, plural, namespace, name = entry
                    await self.expire(CALICO_CRDS[plural], namespace or None, name)
                deadline = min(next_scan if self._interval is not None else math.inf,
                               self._heap[0][0] if self._heap else math.inf)
                self._wake.clear()
                timeout = None if deadline == math.inf else max(0.0, deadline - time.time())
                try:
                    # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation
                    # that arrives just as the awaited event is set.
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            except asyncio.CancelledError:
                raise
            except DatastoreError as exc:
                log.warning("kube_ttl_sweep_failed", error=str(exc))
                await asyncio.sleep(_RETRY_DELAY)
            except Exception:  # task root: log and keep sweeping
                log.exception("kube_ttl_sweeper_crashed")
                await asyncio.sleep(_RETRY_DELAY)

    async def expire(self, ktype: KubeType, namespace: str | None, name: str) -> bool:
        """Delete one entry if it has expired; True when it no longer exists afterwards."""
        ident = f"{ktype}/{namespace + '/' if namespace else ''}{name}"
        try:
            obj = await self._api.get(ktype, namespace, name, ident)
        except NotFound:
            return True
        return await self._delete_if_expired(ktype, obj, ident) != _ALIVE

    async def _delete_if_expired(self, ktype: KubeType, obj: dict[str, object], ident: str) -> str:
        expires_at = expiry_of(obj)
        if expires_at is None:
            return _ALIVE  # refreshed without a TTL
        meta = obj.get("metadata") or {}
        assert isinstance(meta, dict)
        if expires_at > time.time():
            self._push((expires_at, ktype.plural, meta.get("namespace") or "", meta["name"]))
            return _ALIVE  # refreshed with a later expiry
        try:
            await self._api.delete(ktype, meta.get("namespace"), meta["name"], revision_of(obj), ident)
        except NotFound:
            return _GONE  # another sweeper (or a delete) was first
        except RevisionConflict:
            return _ALIVE  # refreshed between our read and our delete
        self.swept += 1
        log.debug("kube_ttl_expired", type=str(ktype), name=meta["name"], namespace=meta.get("namespace"))
        return _DELETED

    async def scan(self) -> int:
        """List every TTL'd custom resource and delete the expired ones; return how many were deleted."""
        deleted = 0
        for ktype in CALICO_CRDS.values():
            try:
                objs, _ = await self._api.list(ktype, None, str(ktype), label_selector=TTL_SELECTOR)
            except MissingResourceType:
                continue
            for obj in objs:
                meta = obj.get("metadata") or {}
                ident = f"{ktype}/{meta.get('name')}"
                if await self._delete_if_expired(ktype, obj, ident) == _DELETED:
                    deleted += 1
        return deleted
