"""Typed access to v3 resources on top of any :class:`Backend`.

The client fills what Calico's API server fills (``uid``, ``creationTimestamp``,
``resourceVersion``, the ``default`` namespace), refuses what Calico refuses
(``resourceVersion`` on create), and turns revisions into compare-and-swap.
The stored value is the resource's wire form without ``resourceVersion``: the
revision of the stored entry is the resource version.
"""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pydantic

from libcalico.datastore.backend import KV, Backend
from libcalico.datastore.keys import ResourceKey, resource_prefix
from libcalico.errors import AlreadyExists, NotFound, RevisionConflict, ValidationError
from libcalico.resources.base import Resource, convert_pydantic_error, kind_class

DEFAULT_NAMESPACE = "default"
_APPLY_RETRIES = 8


def resource_key(cls: type[Resource], name: str, namespace: str | None = None) -> str:
    """The datastore path of one resource."""
    ns = (namespace or DEFAULT_NAMESPACE) if cls.KIND.namespaced else None
    return ResourceKey(cls.KIND.plural, name, ns).path


def decode_resource(kv: KV, cls: type[Resource] | None = None) -> Resource:
    """Build the typed resource held by a stored entry, with its resourceVersion set."""
    value: dict[str, Any] = dict(kv.value)
    if cls is None:
        cls = kind_class(str(value.get("kind")))
    meta = dict(value.get("metadata") or {})
    meta["resourceVersion"] = str(kv.revision)
    value["metadata"] = meta
    try:
        return cls.model_validate(value)
    except pydantic.ValidationError as exc:
        raise convert_pydantic_error(exc) from None


def _stored_form(res: Resource) -> dict[str, Any]:
    value = res.to_dict()
    value["metadata"].pop("resourceVersion", None)
    return value


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_revision(res: Resource) -> int | None:
    rv = res.metadata.resourceVersion
    if not rv:
        return None
    try:
        return int(rv)
    except ValueError:
        raise ValidationError("metadata.resourceVersion", f"{rv!r} is not a revision of this datastore") from None


class Client:
    """Create, read, update, delete and list v3 resources."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def _normalise(self, res: Resource) -> Resource:
        if res.KIND.namespaced and res.metadata.namespace is None:
            res = res.model_copy(deep=True)
            res.metadata.namespace = DEFAULT_NAMESPACE
        return res

    async def create(self, res: Resource) -> Resource:
        """Store a new resource; raise AlreadyExists."""
        res = self._normalise(res)
        if res.metadata.resourceVersion:
            raise ValidationError("metadata.resourceVersion", "field must not be set for a create request")
        res = res.model_copy(deep=True)
        res.metadata.uid = res.metadata.uid or str(uuid.uuid4())
        res.metadata.creationTimestamp = res.metadata.creationTimestamp or _now()
        key = resource_key(type(res), res.name, res.namespace)
        try:
            kv = await self.backend.create(key, _stored_form(res))
        except AlreadyExists:
            raise AlreadyExists(res.identifier()) from None
        return decode_resource(kv, type(res))

    async def update(self, res: Resource) -> Resource:
        """Replace an existing resource; compare-and-swap on its resourceVersion when set."""
        res = self._normalise(res)
        cls = type(res)
        key = resource_key(cls, res.name, res.namespace)
        wanted = _parse_revision(res)
        try:
            current = await self.backend.get(key)
        except NotFound:
            raise NotFound(res.identifier()) from None
        if wanted is not None and wanted != current.revision:
            raise RevisionConflict(res.identifier(), wanted, current.revision)
        merged = res.model_copy(deep=True)
        old_meta = current.value.get("metadata") or {}
        merged.metadata.uid = old_meta.get("uid") or merged.metadata.uid
        merged.metadata.creationTimestamp = old_meta.get("creationTimestamp") or merged.metadata.creationTimestamp
        try:
            kv = await self.backend.update(key, _stored_form(merged), revision=current.revision)
        except NotFound:
            raise NotFound(res.identifier()) from None
        except RevisionConflict as exc:
            raise RevisionConflict(res.identifier(), exc.expected, exc.actual) from None
        return decode_resource(kv, cls)

    async def apply(self, res: Resource) -> Resource:
        """Create the resource, or replace it whatever its current revision."""
        res = self._normalise(res)
        bare = res.model_copy(deep=True)
        bare.metadata.resourceVersion = None
        for _ in range(_APPLY_RETRIES):
            try:
                return await self.update(bare)
            except NotFound:
                pass
            except RevisionConflict:
                continue
            try:
                return await self.create(bare)
            except AlreadyExists:
                continue
        raise RevisionConflict(res.identifier())

    async def get(self, kind: type[Resource] | str, name: str, namespace: str | None = None) -> Resource:
        """Read one resource; raise NotFound naming it as Calico does."""
        cls = kind_class(kind) if isinstance(kind, str) else kind
        key = resource_key(cls, name, namespace)
        try:
            kv = await self.backend.get(key)
        except NotFound:
            raise NotFound(_identifier(cls, name, namespace)) from None
        return decode_resource(kv, cls)

    async def list(
        self,
        kind: type[Resource] | str,
        namespace: str | None = None,
        name_prefix: str = "",
    ) -> tuple[list[Resource], int]:
        """Every resource of a kind (in one namespace, or all when None), and the list's revision."""
        cls = kind_class(kind) if isinstance(kind, str) else kind
        ns = namespace if cls.KIND.namespaced else None
        prefix = resource_prefix(cls.KIND.plural, ns)
        listing = await self.backend.list(prefix)
        out = []
        for kv in listing.items:
            res = decode_resource(kv, cls)
            if res.name.startswith(name_prefix):
                out.append(res)
        return out, listing.revision

    async def delete(
        self,
        kind: type[Resource] | str,
        name: str,
        namespace: str | None = None,
        revision: int | None = None,
    ) -> Resource:
        """Remove a resource and return what it held; compare-and-swap when ``revision`` is given."""
        cls = kind_class(kind) if isinstance(kind, str) else kind
        key = resource_key(cls, name, namespace)
        try:
            kv = await self.backend.delete(key, revision=revision)
        except NotFound:
            raise NotFound(_identifier(cls, name, namespace)) from None
        except RevisionConflict as exc:
            raise RevisionConflict(_identifier(cls, name, namespace), exc.expected, exc.actual) from None
        return decode_resource(kv, cls)


def _identifier(cls: type[Resource], name: str, namespace: str | None) -> str:
    if cls.KIND.namespaced:
        return f"{cls.KIND.kind}({namespace or DEFAULT_NAMESPACE}/{name})"
    return f"{cls.KIND.kind}({name})"
