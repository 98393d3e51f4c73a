"""The ``kubernetes`` datastore: Calico's CRDs (``crd.projectcalico.org/v1``) through kubernetes-asyncio.

How it works::

    Backend call ──► kube_crd.locate(key) ──► custom resource (type, namespace, name)
                     │                          get/create/replace(PUT)/delete with
                     │                          resourceVersion preconditions (CAS)
                     └─► kube_sources ──► derived, read-only entries:
                           Namespaces/ServiceAccounts -> Profiles, k8s NetworkPolicies
                           -> knp.default.*, Pods -> WorkloadEndpoints

Revisions are Kubernetes resourceVersions read as integers (they are etcd
revisions on every real API server; a non-integer one is an error). A list over
several types reports the smallest of their list revisions, so a watch from it
misses nothing. Watches are one Kubernetes watch per type, merged; a 410 Gone
becomes ResyncRequired. TTLs are expiry annotations honoured on read plus a
sweeper (:mod:`~libcalico.datastore.kube_ttl`). See docs/kubernetes-datastore.md.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Self

import structlog
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.config.config_exception import ConfigException

from libcalico.datastore.backend import KV, Backend, EventType, JSONMap, ListResult, WatchEvent
from libcalico.datastore.keys import parse_resource_key, plural_of_key
from libcalico.datastore.kube_api import KubeApi, MissingResourceType
from libcalico.datastore.kube_conversion import (
    DEFAULT_ALLOW_PROFILE,
    K8S_POLICY_PREFIX,
    NAMESPACE_PROFILE_PREFIX,
    SERVICE_ACCOUNT_PROFILE_PREFIX,
    default_allow_profile,
    parse_workload_endpoint_name,
)
from libcalico.datastore.kube_crd import Decoded, Slot, decode, encode, locate
from libcalico.datastore.kube_sources import Source, sources_for
from libcalico.datastore.kube_ttl import TtlSweeper
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
    RevisionConflict,
    ValidationError,
)

log = structlog.get_logger(__name__)

_CAS_RETRIES = 16
_WATCH_QUEUE = 1024


class ReadOnlyResource(DatastoreError):
    """A write to an entry the kubernetes datastore derives from a core Kubernetes object."""

    def __init__(self, key: str, source: str) -> None:
        super().__init__(f"{key} is read-only in the kubernetes datastore: it is derived from {source}; "
                         "change that Kubernetes object instead")
        self.key = key


def _derived_origin(key: str) -> str | None:
    """What a derived key comes from, or None when the key is not a derived one."""
    plural = plural_of_key(key)
    name = key.rsplit("/", 1)[-1]
    if plural == "profiles":
        return "a Kubernetes Namespace or ServiceAccount (Calico's KDD has no stored Profiles)"
    if plural == "workloadendpoints":
        return "a Kubernetes Pod"
    if plural == "networkpolicies" and name.startswith(K8S_POLICY_PREFIX):
        return "a networking.k8s.io NetworkPolicy"
    return None


def kubeconfig_connector(path: str) -> Any:
    """A coroutine factory making an ApiClient from a kubeconfig file."""

    async def connect() -> kclient.ApiClient:
        try:
            return await kconfig.new_client_from_config(config_file=path, persist_config=False)
        except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
            raise ValidationError("KUBECONFIG", f"cannot use kubeconfig {path}: {exc}") from exc

    return connect


def incluster_connector() -> Any:
    """A coroutine factory making an ApiClient from the pod's service account."""

    async def connect() -> kclient.ApiClient:
        cfg = kclient.Configuration()
        try:
            kconfig.load_incluster_config(client_configuration=cfg)
        except (ConfigException, OSError) as exc:
            raise ValidationError("KUBECONFIG", f"not set and the in-cluster configuration failed: {exc}") from exc
        return kclient.ApiClient(configuration=cfg)

    return connect


class KubernetesBackend(Backend):
    """Calico's datastore on the Kubernetes API (custom resources plus derived core objects)."""

    name = "kubernetes"

    def __init__(self, connect: Any, *, request_timeout: float = 30.0, watch_timeout: int = 300,
                 sweep_interval: float | None = 30.0) -> None:
        self.api = KubeApi(connect, request_timeout=request_timeout, watch_timeout=watch_timeout)
        self.sweeper = TtlSweeper(self.api, sweep_interval)
        self._sweep_started = False

    @classmethod
    def from_kubeconfig(cls, path: str, **kwargs: Any) -> Self:
        """A backend for the cluster a kubeconfig file names."""
        return cls(kubeconfig_connector(path), **kwargs)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Self:
        """The backend ``DATASTORE_TYPE=kubernetes`` selects: ``KUBECONFIG``, else the in-cluster config."""
        value = env.get("KUBECONFIG") or ""
        if value:
            paths = [p for p in value.split(os.pathsep) if p]
            existing = [p for p in paths if os.path.isfile(p)]
            if not existing:
                raise ValidationError("KUBECONFIG", f"no kubeconfig file at {value!r}")
            return cls.from_kubeconfig(existing[0])
        if env.get("KUBERNETES_SERVICE_HOST"):
            return cls(incluster_connector())
        raise ValidationError("KUBECONFIG", "must name a kubeconfig file when DATASTORE_TYPE=kubernetes "
                              "(or run in a pod with a service account)")

    def _touch(self) -> None:
        if not self._sweep_started:
            self._sweep_started = True
            self.sweeper.start()

    # ------------------------------------------------------------ reads

    async def _read_slot(self, slot: Slot) -> Decoded:
        obj = await self.api.get(slot.type, slot.namespace, slot.name, slot.key)
        found = decode(slot.type, obj)
        if found is None or found.key != slot.key:
            raise NotFound(slot.key)
        if found.expires_at is not None and found.expires_at <= time.time():
            self.sweeper.track(slot.type, slot.namespace, slot.name, found.expires_at)
            raise NotFound(slot.key)
        return found

    async def _read_derived(self, key: str) -> Decoded:
        plural = plural_of_key(key)
        name = key.rsplit("/", 1)[-1]
        ktype: KubeType | None = None
        namespace: str | None = None
        obj_name = ""
        if plural == "profiles":
            if name == DEFAULT_ALLOW_PROFILE:
                default_key, value = default_allow_profile()
                if default_key == key:
                    return Decoded(key, value, 0, None)
            elif name.startswith(NAMESPACE_PROFILE_PREFIX):
                ktype, obj_name = NAMESPACES, name[len(NAMESPACE_PROFILE_PREFIX) :]
            elif name.startswith(SERVICE_ACCOUNT_PROFILE_PREFIX) and name.count(".") >= 2:
                _, namespace, obj_name = name.split(".", 2)
                ktype = SERVICE_ACCOUNTS
        elif plural in ("networkpolicies", "workloadendpoints"):
            try:
                rk = parse_resource_key(key, namespaced=True)
            except ValueError:
                raise NotFound(key) from None
            namespace = rk.namespace
            if plural == "networkpolicies":
                ktype, obj_name = K8S_NETWORK_POLICIES, rk.name[len(K8S_POLICY_PREFIX) :]
            else:
                parts = parse_workload_endpoint_name(rk.name)
                if parts is not None:
                    ktype, obj_name = PODS, parts[2]
        if ktype is None or not obj_name:
            raise NotFound(key)
        source = next(s for s in sources_for(key) if s.ktype == ktype)
        obj = await self.api.get(ktype, namespace, obj_name, key)
        for entry in source.convert(obj):
            if entry.key == key:
                return entry
        raise NotFound(key)

    async def get(self, key: str) -> KV:
        """Return the entry at ``key``; raise NotFound."""
        self._touch()
        slot = locate(key)
        try:
            if slot is None or _derived_origin(key) is not None:
                found = await self._read_derived(key)
            else:
                found = await self._read_slot(slot)
        except MissingResourceType:
            raise NotFound(key) from None
        return KV(found.key, found.value, found.revision)

    async def _list_source(self, source: Source, prefix: str) -> tuple[list[Decoded], int | None]:
        namespace = source.namespace_for(prefix)
        try:
            objs, revision = await self.api.list(source.ktype, namespace, prefix)
        except MissingResourceType:
            log.warning("kube_type_not_served", type=str(source.ktype))
            return [], None
        now = time.time()
        entries = []
        for obj in objs:
            for entry in source.convert(obj):
                if entry.key.startswith(prefix) and (entry.expires_at is None or entry.expires_at > now):
                    entries.append(entry)
        return entries, revision

    async def list(self, prefix: str) -> ListResult:
        """Return every entry whose key starts with ``prefix``, in key order."""
        self._touch()
        results = await asyncio.gather(*(self._list_source(s, prefix) for s in sources_for(prefix)),
                                       return_exceptions=True)
        entries: dict[str, Decoded] = {}
        revisions: list[int] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            found, revision = result
            entries.update((e.key, e) for e in found)
            if revision is not None:
                revisions.append(revision)
        default_key, default_value = default_allow_profile()
        if default_key.startswith(prefix):
            entries[default_key] = Decoded(default_key, default_value, 0, None)
        revision = min(revisions) if revisions else await self.api.current_revision()
        items = [KV(e.key, e.value, e.revision) for _, e in sorted(entries.items())]
        return ListResult(items, revision)

    async def current_revision(self) -> int:
        """The store-wide revision now."""
        self._touch()
        return await self.api.current_revision()

    # ------------------------------------------------------------ writes

    def _writable(self, key: str) -> Slot:
        origin = _derived_origin(key)
        if origin is not None:
            raise ReadOnlyResource(key, origin)
        slot = locate(key)
        if slot is None:
            raise ValidationError("key", f"the kubernetes datastore does not store {key!r}: Calico keeps only "
                                  f"resources with a CRD in crd.projectcalico.org/v1 and IPAM data there")
        return slot

    @staticmethod
    def _expiry(ttl: float | None) -> float | None:
        if ttl is None:
            return None
        if ttl <= 0:
            raise ValidationError("ttl", f"must be positive, not {ttl}")
        return time.time() + ttl

    def _written(self, slot: Slot, obj: JSONMap, expires_at: float | None) -> KV:
        if expires_at is not None:
            self.sweeper.track(slot.type, slot.namespace, slot.name, expires_at)
        found = decode(slot.type, obj)
        if found is None:
            raise DatastoreError(f"the Kubernetes API returned an object that does not hold {slot.key}")
        return KV(slot.key, found.value, found.revision)

    async def create(self, key: str, value: JSONMap, *, ttl: float | None = None) -> KV:
        """Store a new entry; raise AlreadyExists. ``ttl`` seconds makes it expire."""
        self._touch()
        slot = self._writable(key)
        expires_at = self._expiry(ttl)
        body = encode(slot, value, expires_at)
        for attempt in range(2):
            try:
                obj = await self.api.create(slot.type, slot.namespace, body, key)
            except AlreadyExists:
                if attempt == 0 and await self.sweeper.expire(slot.type, slot.namespace, slot.name):
                    continue  # an expired entry the sweeper had not removed yet
                raise AlreadyExists(key) from None
            except MissingResourceType as exc:
                raise DatastoreError(f"cannot store {key}: {exc}") from None
            return self._written(slot, obj, expires_at)
        raise AlreadyExists(key)

    async def update(
        self, key: str, value: JSONMap, *, revision: int | None = None, ttl: float | None = None
    ) -> KV:
        """Replace an entry; raise NotFound, or RevisionConflict when ``revision`` is given and stale."""
        self._touch()
        slot = self._writable(key)
        expires_at = self._expiry(ttl)
        body = encode(slot, value, expires_at)
        for _ in range(_CAS_RETRIES):
            current = await self._current(slot)
            if revision is not None and revision != current.revision:
                raise RevisionConflict(key, revision, current.revision)
            body["metadata"]["resourceVersion"] = str(current.revision)
            try:
                obj = await self.api.replace(slot.type, slot.namespace, slot.name, body, key, current.revision)
            except RevisionConflict:
                if revision is not None:
                    raise RevisionConflict(key, revision) from None
                continue  # changed between our read and our write: read again
            except NotFound:
                raise NotFound(key) from None
            return self._written(slot, obj, expires_at)
        raise RevisionConflict(key)

    async def delete(self, key: str, *, revision: int | None = None) -> KV:
        """Remove an entry and return what it held; raise NotFound or RevisionConflict."""
        self._touch()
        slot = self._writable(key)
        for _ in range(_CAS_RETRIES):
            current = await self._current(slot)
            if revision is not None and revision != current.revision:
                raise RevisionConflict(key, revision, current.revision)
            try:
                await self.api.delete(slot.type, slot.namespace, slot.name, current.revision, key)
            except RevisionConflict:
                if revision is not None:
                    raise RevisionConflict(key, revision) from None
                continue
            except NotFound:
                if revision is not None:
                    raise NotFound(key) from None
                continue
            return KV(key, current.value, current.revision)
        raise RevisionConflict(key)

    async def _current(self, slot: Slot) -> Decoded:
        try:
            return await self._read_slot(slot)
        except MissingResourceType:
            raise NotFound(slot.key) from None

    # ------------------------------------------------------------ watch

    async def _pump(self, source: Source, prefix: str, revision: int,
                    queue: asyncio.Queue[WatchEvent | BaseException]) -> None:
        try:
            namespace = source.namespace_for(prefix)
            async for etype, obj in self.api.watch(source.ktype, namespace, revision, prefix):
                now = time.time()
                for entry in source.convert(obj):
                    if not entry.key.startswith(prefix):
                        continue
                    gone = etype == "DELETED" or (entry.expires_at is not None and entry.expires_at <= now)
                    if gone:
                        await queue.put(WatchEvent(EventType.DELETE, entry.key, None, entry.revision))
                    else:
                        await queue.put(WatchEvent(EventType.PUT, entry.key, entry.value, entry.revision))
        except asyncio.CancelledError:
            raise
        except MissingResourceType:
            log.warning("kube_type_not_served", type=str(source.ktype))
        except DatastoreError as exc:
            await queue.put(exc)
        except Exception as exc:  # task root: hand the failure to the watcher
            log.exception("kube_watch_crashed", type=str(source.ktype))
            await queue.put(exc)

    async def watch(self, prefix: str, revision: int) -> AsyncIterator[WatchEvent]:
        """Yield changes under ``prefix`` made after ``revision``; raise ResyncRequired on 410 Gone."""
        self._touch()
        queue: asyncio.Queue[WatchEvent | BaseException] = asyncio.Queue(maxsize=_WATCH_QUEUE)
        tasks = [asyncio.create_task(self._pump(s, prefix, revision, queue), name=f"kube-watch-{s.ktype}")
                 for s in sources_for(prefix)]
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop the TTL sweeper and close the HTTP session."""
        await self.sweeper.close()
        await self.api.close()
