"""Calls to the Kubernetes API through kubernetes-asyncio, with every failure translated at the edge.

Responses are read raw (``_preload_content=False``) and decoded as JSON maps in
the API's own camelCase, the same shape for custom and core objects. HTTP and
connection failures become :mod:`libcalico.errors`:

    404 object        -> NotFound            409 AlreadyExists -> AlreadyExists
    404 namespace     -> ValidationError     409 Conflict      -> RevisionConflict
    400/422           -> ValidationError     410 (watch)       -> ResyncRequired
    401/403           -> DatastoreError      429/5xx, network  -> Unavailable

A watch is one long GET per type (``watch=true&resourceVersion=N``) that is
re-opened from the last seen resourceVersion whenever the server ends it
(``timeoutSeconds``) or the connection drops, as client-go's reflector does.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import structlog
from kubernetes_asyncio import client as kclient

from libcalico.datastore.backend import JSONMap
from libcalico.datastore.kube_crd import revision_of
from libcalico.datastore.kube_types import (
    K8S_NETWORK_POLICIES,
    NAMESPACES,
    PODS,
    SERVICE_ACCOUNTS,
    KubeType,
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

ApiConnector = Callable[[], Awaitable[kclient.ApiClient]]
PAGE_SIZE = 500
MAX_PAGES = 100_000
_TOO_OLD = re.compile(r"\((\d+)\)")
_NETWORK_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


class MissingResourceType(DatastoreError):
    """The API server does not serve a resource type (its CRD is not installed)."""

    def __init__(self, ktype: KubeType) -> None:
        super().__init__(f"the Kubernetes API does not serve {ktype}: install Calico's CRDs (deploy/crds/)")
        self.ktype = ktype


def _status_text(status: int, body: JSONMap) -> str:
    reason = body.get("reason") or "Failure"
    message = body.get("message") or ""
    return f"{status} {reason}: {message}".strip()


def translate_error(status: int, body: JSONMap, ktype: KubeType, ident: str, op: str,
                    expected: int | None = None) -> Exception:
    """The libcalico error for a failed Kubernetes API call (status code plus its Status body)."""
    reason = body.get("reason")
    raw_details = body.get("details")
    details: JSONMap = raw_details if isinstance(raw_details, dict) else {}
    if status == 404:
        if details.get("kind") == "namespaces" and op == "create":
            return ValidationError("metadata.namespace", f"namespace {details.get('name')!r} does not exist in "
                                   f"the Kubernetes cluster ({ident})")
        if not details.get("name"):
            return MissingResourceType(ktype)
        return NotFound(ident)
    if status == 409:
        if reason == "AlreadyExists" or (reason != "Conflict" and op == "create"):
            return AlreadyExists(ident)
        return RevisionConflict(ident, expected)
    if status == 410:
        match = _TOO_OLD.search(str(body.get("message") or ""))
        return ResyncRequired(expected or 0, int(match.group(1)) if match else None)
    if status in (400, 422):
        causes = details.get("causes") or [{}]
        return ValidationError(str(causes[0].get("field") or ""), f"Kubernetes rejected {op} of {ident}: "
                               f"{body.get('message') or reason}")
    if status in (401, 403):
        return DatastoreError(f"Kubernetes API refused {op} of {ident}: {_status_text(status, body)}")
    return Unavailable(f"Kubernetes API failed {op} of {ident}: {_status_text(status, body)}")


def _decode(raw: bytes, what: str) -> JSONMap:
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        text = raw[:200].decode(errors="replace")
        return {"reason": "Unparseable", "message": f"{what}: not JSON: {text!r}"}
    return data if isinstance(data, dict) else {"message": f"{what}: unexpected JSON {type(data).__name__}"}


class KubeApi:
    """Get, list, create, replace, delete and watch Kubernetes objects as JSON maps."""

    def __init__(self, connect: ApiConnector, *, request_timeout: float = 30.0, watch_timeout: int = 300) -> None:
        self._connect = connect
        self._client: kclient.ApiClient | None = None
        self._lock = asyncio.Lock()
        self.request_timeout = request_timeout
        self.watch_timeout = watch_timeout

    async def client(self) -> kclient.ApiClient:
        """The shared ApiClient, made on first use."""
        if self._client is None:
            async with self._lock:
                if self._client is None:
                    self._client = await self._connect()
        return self._client

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._client is not None:
            api, self._client = self._client, None
            await api.close()

    # ------------------------------------------------------------ call plumbing

    async def _calls(self, ktype: KubeType) -> tuple[Any, bool]:
        api = await self.client()
        if ktype.is_crd:
            return kclient.CustomObjectsApi(api), True
        if ktype == K8S_NETWORK_POLICIES:
            return kclient.NetworkingV1Api(api), False
        return kclient.CoreV1Api(api), False

    async def _call(self, ktype: KubeType, op: str, namespace: str | None, name: str | None,
                    **kwargs: Any) -> tuple[Callable[..., Awaitable[Any]], tuple[Any, ...], dict[str, Any]]:
        api, custom = await self._calls(ktype)
        if custom:
            g, v, p = ktype.group, ktype.version, ktype.plural
            scope = "namespaced" if ktype.namespaced and namespace is not None else "cluster"
            method = {"get": "get", "list": "list", "create": "create", "replace": "replace", "delete": "delete"}[op]
            fn = getattr(api, f"{method}_{scope}_custom_object")
            args: tuple[Any, ...] = (g, v, namespace, p) if scope == "namespaced" else (g, v, p)
            if name is not None:
                args = (*args, name)
            return fn, args, kwargs
        return self._core_call(api, ktype, op, namespace, name), (), kwargs

    @staticmethod
    def _core_call(api: Any, ktype: KubeType, op: str, namespace: str | None,
                   name: str | None) -> Callable[..., Awaitable[Any]]:
        stem = {NAMESPACES: "namespace", SERVICE_ACCOUNTS: "service_account", PODS: "pod",
                K8S_NETWORK_POLICIES: "network_policy"}[ktype]
        if op == "get":
            if ktype == NAMESPACES:
                return lambda **kw: api.read_namespace(name, **kw)
            return lambda **kw: getattr(api, f"read_namespaced_{stem}")(name, namespace, **kw)
        if op != "list":
            raise DatastoreError(f"{ktype} is read-only for the kubernetes datastore")
        if ktype == NAMESPACES:
            return api.list_namespace
        if namespace is None:
            return getattr(api, f"list_{stem}_for_all_namespaces")
        return lambda **kw: getattr(api, f"list_namespaced_{stem}")(namespace, **kw)

    async def _request(self, ktype: KubeType, op: str, ident: str, namespace: str | None, name: str | None,
                       expected: int | None = None, **kwargs: Any) -> JSONMap:
        fn, args, kw = await self._call(ktype, op, namespace, name, **kwargs)
        kw.update(_preload_content=False, _request_timeout=aiohttp.ClientTimeout(total=self.request_timeout))
        try:
            resp = await fn(*args, **kw)
            async with resp:
                raw = await resp.read()
                status = resp.status
        except _NETWORK_ERRORS as exc:
            raise Unavailable(f"Kubernetes API unreachable ({op} {ident}): {exc!r}") from exc
        body = _decode(raw, f"{op} {ident}")
        if 200 <= status < 300:
            return body
        raise translate_error(status, body, ktype, ident, op, expected)

    # ------------------------------------------------------------ verbs

    async def get(self, ktype: KubeType, namespace: str | None, name: str, ident: str) -> JSONMap:
        """Read one object; raise NotFound."""
        return await self._request(ktype, "get", ident, namespace, name)

    async def list(self, ktype: KubeType, namespace: str | None, ident: str,
                   label_selector: str | None = None) -> tuple[list[JSONMap], int]:
        """Every object of a type (in one namespace, or all), paginated, and the list's revision."""
        for _attempt in range(3):
            items: list[JSONMap] = []
            revision: int | None = None
            token: str | None = None
            try:
                for _page in range(MAX_PAGES):
                    kw: dict[str, Any] = {"limit": PAGE_SIZE}
                    if token:
                        kw["_continue"] = token
                    if label_selector:
                        kw["label_selector"] = label_selector
                    data = await self._request(ktype, "list", ident, namespace, None, **kw)
                    meta = data.get("metadata") or {}
                    if revision is None:
                        revision = revision_of(data)
                    items.extend(data.get("items") or [])
                    token = meta.get("continue")
                    if not token:
                        break
            except ResyncRequired:
                continue  # the continue token expired: list again from the start
            assert revision is not None
            return items, revision
        raise Unavailable(f"Kubernetes API kept expiring the pagination of {ktype} ({ident})")

    async def create(self, ktype: KubeType, namespace: str | None, body: JSONMap, ident: str) -> JSONMap:
        """Create an object; raise AlreadyExists."""
        return await self._request(ktype, "create", ident, namespace, None, body=body)

    async def replace(self, ktype: KubeType, namespace: str | None, name: str, body: JSONMap, ident: str,
                      expected: int | None) -> JSONMap:
        """Replace an object (PUT); a resourceVersion in ``body`` makes it compare-and-swap."""
        return await self._request(ktype, "replace", ident, namespace, name, expected=expected, body=body)

    async def delete(self, ktype: KubeType, namespace: str | None, name: str, revision: int, ident: str) -> JSONMap:
        """Delete an object if it is still at ``revision`` (a resourceVersion precondition)."""
        options = {"apiVersion": "v1", "kind": "DeleteOptions",
                   "preconditions": {"resourceVersion": str(revision)}}
        return await self._request(ktype, "delete", ident, namespace, name, expected=revision, body=options)

    async def current_revision(self) -> int:
        """The API server's revision now: the resourceVersion of a one-item Namespace list."""
        data = await self._request(NAMESPACES, "list", "namespaces", None, None, limit=1)
        return revision_of(data)

    async def watch(self, ktype: KubeType, namespace: str | None, revision: int,
                    ident: str) -> AsyncIterator[tuple[str, JSONMap]]:
        """Yield (ADDED|MODIFIED|DELETED, object) after ``revision``; raise ResyncRequired on 410 Gone."""
        rv = revision
        quiet_ends = 0
        while True:
            fn, args, kw = await self._call(ktype, "list", namespace, None)
            kw.update(watch=True, resource_version=str(rv), allow_watch_bookmarks=True,
                      timeout_seconds=self.watch_timeout, _preload_content=False,
                      _request_timeout=aiohttp.ClientTimeout(sock_connect=self.request_timeout,
                                                             sock_read=self.watch_timeout + 30))
            try:
                resp = await fn(*args, **kw)
            except _NETWORK_ERRORS as exc:
                raise Unavailable(f"Kubernetes API unreachable (watch {ident}): {exc!r}") from exc
            delivered = False
            async with resp:
                if resp.status != 200:
                    body = _decode(await resp.read(), f"watch {ident}")
                    raise translate_error(resp.status, body, ktype, ident, "watch", rv)
                try:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = _decode(line, f"watch {ident}")
                        etype, obj = event.get("type"), event.get("object") or {}
                        if etype == "ERROR":
                            code = int(obj.get("code") or 500)
                            raise translate_error(code, obj, ktype, ident, "watch", rv)
                        if etype not in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
                            raise Unavailable(f"Kubernetes watch of {ident} sent an unknown event {event!r:.200}")
                        obj_rv = revision_of(obj)
                        delivered = True
                        if etype == "BOOKMARK":
                            rv = max(rv, obj_rv)
                            continue
                        if revision and obj_rv <= revision:
                            continue  # a server that replays old state: not a change after `revision`
                        rv = max(rv, obj_rv)
                        yield etype, obj
                except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
                    log.info("kube_watch_interrupted", type=str(ktype), revision=rv, error=repr(exc))
            quiet_ends = 0 if delivered else quiet_ends + 1
            if quiet_ends:
                await asyncio.sleep(min(0.05 * 2**quiet_ends, 5.0))
