"""One resource operation each, with calicoctl's semantics on top of libcalico's Client.

- create keeps only the metadata a user may set (name, namespace,
  resourceVersion, labels, annotations), as calicoctl's prepareMetadataForCreate;
- apply creates, and on "already exists" replaces, comparing-and-swapping on a
  resourceVersion the manifest carries;
- replace retries on a conflict only when the manifest carries no resourceVersion;
- ClusterInformation is read-only, and NetworkPolicy names with the
  ``knp.default.`` prefix belong to Kubernetes.
"""

from __future__ import annotations

import json
from typing import Any

from libcalico.datastore import Client
from libcalico.errors import AlreadyExists, CalicoError, RevisionConflict, ValidationError
from libcalico.resources.base import ObjectMeta, Resource, parse_resource
from services.calicoctl.errors import CalicoctlError, NamespaceError, OperationNotSupported

DEFAULT_NAMESPACE = "default"
READ_ONLY_KINDS = ("ClusterInformation",)
KUBERNETES_POLICY_PREFIX = "knp.default."
UPDATE_RETRIES = 5


def resolve_namespace(cls: type[Resource], resource_ns: str | None, cli_ns: str, all_ns: bool) -> str | None:
    """The namespace to act in (None: cluster-scoped, or every namespace with -A); Calico's handleNamespace."""
    kind = cls.KIND.kind
    if not cls.KIND.namespaced:
        if resource_ns:
            raise NamespaceError(
                f"namespace should not be specified for a non-namespaced resource. {kind} is not a namespaced resource"
            )
        if all_ns or cli_ns:
            raise NamespaceError(f"{kind} is not namespaced")
        return None
    if all_ns and cli_ns:
        raise NamespaceError("cannot use both --namespace and --all-namespaces flags at the same time")
    if all_ns:
        return None
    if resource_ns and cli_ns and resource_ns != cli_ns:
        raise NamespaceError(f"resource namespace does not match client namespace. {resource_ns} != {cli_ns}")
    return resource_ns or cli_ns or DEFAULT_NAMESPACE


def with_namespace(res: Resource, namespace: str | None) -> Resource:
    """A copy of the resource placed in ``namespace`` (unchanged for cluster-scoped kinds)."""
    if not res.KIND.namespaced or res.metadata.namespace == namespace:
        return res
    out = res.model_copy(deep=True)
    out.metadata.namespace = namespace
    return out


def _guard(res: Resource, operation: str) -> None:
    kind = res.KIND.kind
    if kind in READ_ONLY_KINDS:
        raise OperationNotSupported(operation, kind, "resource is readonly" if operation == "apply" else "")
    if kind == "NetworkPolicy" and res.name.startswith(KUBERNETES_POLICY_PREFIX):
        raise OperationNotSupported(operation, res.identifier(),
                                    "kubernetes network policies must be managed through the kubernetes API")


def user_metadata(res: Resource) -> Resource:
    """A copy keeping only name, namespace, resourceVersion, labels and annotations (Calico's create rule)."""
    meta = res.metadata
    out = res.model_copy(deep=True)
    out.metadata = ObjectMeta(
        name=meta.name, namespace=meta.namespace, resourceVersion=meta.resourceVersion,
        labels=dict(meta.labels) if meta.labels is not None else None,
        annotations=dict(meta.annotations) if meta.annotations is not None else None,
    )
    return out


async def create(client: Client, res: Resource) -> Resource:
    """Create a new resource; AlreadyExists when it is there."""
    _guard(res, "create or apply")
    return await client.create(user_metadata(res))


async def replace(client: Client, res: Resource) -> Resource:
    """Replace an existing resource; compare-and-swap when it carries a resourceVersion, else retry on conflict."""
    _guard(res, "apply or replace")
    res = user_metadata(res)
    if res.metadata.resourceVersion:
        return await client.update(res)
    for attempt in range(UPDATE_RETRIES):
        try:
            return await client.update(res)
        except RevisionConflict:
            if attempt == UPDATE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


async def apply(client: Client, res: Resource) -> Resource:
    """Create the resource, or replace it when it already exists."""
    _guard(res, "apply")
    bare = res.model_copy(deep=True)
    bare.metadata.resourceVersion = None
    try:
        return await create(client, bare)
    except AlreadyExists:
        return await replace(client, res)


async def delete(client: Client, cls: type[Resource], name: str, namespace: str | None,
                 resource_version: str | None = None) -> Resource:
    """Delete by name; compare-and-swap when the manifest carried a resourceVersion."""
    if cls.KIND.kind in READ_ONLY_KINDS:
        raise OperationNotSupported("delete", cls.KIND.kind)
    if cls.KIND.kind == "NetworkPolicy" and name.startswith(KUBERNETES_POLICY_PREFIX):
        raise OperationNotSupported("delete", f"NetworkPolicy({namespace}/{name})",
                                    "kubernetes network policies must be managed through the kubernetes API")
    revision = None
    if resource_version:
        try:
            revision = int(resource_version)
        except ValueError:
            raise CalicoctlError(f"metadata.resourceVersion: {resource_version!r} is not a revision of this datastore") \
                from None
    return await client.delete(cls, name, namespace, revision=revision)


async def get(client: Client, cls: type[Resource], name: str, namespace: str | None) -> Resource:
    """Read one resource by name; a namespaced kind needs a namespace (not -A)."""
    if cls.KIND.namespaced and namespace is None:
        raise CalicoctlError("cannot use --all-namespace flag for getting a single resource")
    return await client.get(cls, name, namespace)


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch: maps merge, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def parse_patch(text: str) -> dict[str, Any]:
    """Decode a ``-p`` patch; it must be a JSON object."""
    try:
        patch = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CalicoctlError(
            f"performing merge patch: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if not isinstance(patch, dict):
        raise CalicoctlError("performing merge patch: the patch must be a JSON object")
    return patch


async def patch(client: Client, cls: type[Resource], name: str, namespace: str | None,
                patch_doc: dict[str, Any]) -> Resource:
    """Merge-patch a stored resource and write it back (compare-and-swap on the revision read)."""
    current = await get(client, cls, name, namespace)
    _guard(current, "apply or replace")
    merged = merge_patch(current.to_dict(), patch_doc)
    for path, want in (("apiVersion", current.apiVersion), ("kind", current.kind)):
        if merged.get(path) != want:
            raise CalicoctlError(f"creating resource from patched data: {path}: a patch may not change it")
    meta = merged.get("metadata") if isinstance(merged.get("metadata"), dict) else {}
    if meta.get("name") != current.name or meta.get("namespace") != current.namespace:
        raise CalicoctlError("creating resource from patched data: metadata: a patch may not change the name "
                             "or namespace")
    meta["resourceVersion"] = current.metadata.resourceVersion
    try:
        patched = parse_resource(merged)
    except ValidationError as exc:
        raise CalicoctlError(f"creating resource from patched data: {exc}") from None
    try:
        return await client.update(patched)
    except CalicoError as exc:
        raise CalicoctlError(f"updating existing resource: {exc}") from None


async def set_labels(client: Client, current: Resource, labels: dict[str, str]) -> Resource:
    """Write the resource back with exactly these labels, validated, compare-and-swap on its revision."""
    _guard(current, "apply or replace")
    doc = current.to_dict()
    doc["metadata"]["labels"] = labels
    if not labels:
        doc["metadata"].pop("labels")
    updated = parse_resource(doc)
    return await client.update(updated)
