"""Datastore keys and values <-> Calico custom resources (``crd.projectcalico.org/v1``).

How it works::

    /calico/resources/v3/projectcalico.org/ippools/pool-a        -> ippools/pool-a
    /calico/resources/v3/projectcalico.org/networkpolicies/ns/p  -> networkpolicies ns/p
    /calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26            -> ipamblocks/10-0-0-0-26
    /calico/ipam/v2/host/<host>/ipv4/block/10.0.0.0-26           -> blockaffinities/<host>-10-0-0-0-26
    /calico/ipam/v2/handle/<id>                                  -> ipamhandles/<id>
    /calico/ipam/v2/config                                       -> ipamconfigs/default

A v3 resource is stored as Calico's KDD stores it: name, namespace, labels and
annotations in the custom resource's metadata, ``spec`` as its spec, every
other metadata field (uid, creationTimestamp, ...) as JSON in the
``projectcalico.org/metadata`` annotation. An IPAM value is the custom
resource's spec. Keys that cannot be read back from the name (IPAM keys) are
kept in the ``calico-py.projectcalico.org/key`` annotation. A TTL'd entry
carries its expiry in ``calico-py.projectcalico.org/expires-at`` and the label
``calico-py.projectcalico.org/ttl=true`` (Kubernetes has no TTLs; see
docs/kubernetes-datastore.md).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any

from libcalico.datastore.backend import JSONMap
from libcalico.datastore.keys import (
    IPAM_ROOT,
    RESOURCE_ROOT,
    ResourceKey,
    parse_resource_key,
    plural_of_key,
)
from libcalico.datastore.kube_types import CALICO_CRDS, RESOURCE_BY_CRD, RESOURCE_CRDS, KubeType
from libcalico.errors import DatastoreError, ValidationError

METADATA_ANNOTATION = "projectcalico.org/metadata"
KEY_ANNOTATION = "calico-py.projectcalico.org/key"
ENCODING_ANNOTATION = "calico-py.projectcalico.org/encoding"
EXPIRES_ANNOTATION = "calico-py.projectcalico.org/expires-at"
TTL_LABEL = "calico-py.projectcalico.org/ttl"
TTL_SELECTOR = f"{TTL_LABEL}=true"
OUR_ANNOTATIONS = frozenset({METADATA_ANNOTATION, KEY_ANNOTATION, ENCODING_ANNOTATION, EXPIRES_ANNOTATION})

V3_API_VERSION = "projectcalico.org/v3"
IPAM_BLOCKS = CALICO_CRDS["ipamblocks"]
IPAM_AFFINITIES = CALICO_CRDS["blockaffinities"]
IPAM_HANDLES = CALICO_CRDS["ipamhandles"]
IPAM_CONFIGS = CALICO_CRDS["ipamconfigs"]
IPAM_TYPES = (IPAM_BLOCKS, IPAM_AFFINITIES, IPAM_HANDLES, IPAM_CONFIGS)
IPAM_CONFIG_KEY = f"{IPAM_ROOT}config"
IPAM_CONFIG_NAME = "default"

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN = re.compile(rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$")
_METADATA_SKIP = ("name", "namespace", "labels", "annotations", "resourceVersion")


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one datastore key lives: a custom resource type, namespace and name."""

    key: str
    type: KubeType
    namespace: str | None
    name: str
    v3_kind: str | None  # set for projectcalico.org/v3 resource keys, None for IPAM keys

    @property
    def is_resource(self) -> bool:
        return self.v3_kind is not None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A custom resource read back: its key, value, revision and expiry (epoch seconds or None)."""

    key: str
    value: JSONMap
    revision: int
    expires_at: float | None


# ---------------------------------------------------------------- names


def is_dns_subdomain(name: str) -> bool:
    """True when ``name`` is a valid Kubernetes object name (DNS-1123 subdomain)."""
    return 0 < len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


def object_name(raw: str) -> str:
    """A valid Kubernetes object name for ``raw``: itself, lowercased, or sanitised plus a hash."""
    if is_dns_subdomain(raw):
        return raw
    if is_dns_subdomain(raw.lower()):
        return raw.lower()
    digest = hashlib.sha256(raw.encode()).hexdigest()[:10]
    stem = re.sub(r"[^a-z0-9.-]+", "-", raw.lower()).strip("-.")[:240] or "x"
    return f"{stem}-{digest}"


def cidr_name(cidr_segment: str) -> str:
    """Calico's CIDRToName on a key segment (``10.0.0.0-26`` or ``10.0.0.0/26`` -> ``10-0-0-0-26``)."""
    return cidr_segment.replace("/", "-").replace(".", "-").replace(":", "-").lower()


def affinity_name(host: str, cidr_segment: str) -> str:
    """A BlockAffinity's name as Calico builds it: ``<host>-<cidrname>``, hashed when too long."""
    cname = cidr_name(cidr_segment)
    name = f"{host}-{cname}"
    if len(name) >= 253:
        digest = hashlib.sha256(f"{host}+{cname}".encode()).hexdigest()[:11]
        name = f"{host[: 252 - len(cname) - 13]}-{cname}-{digest}"
    return object_name(name)


def _cidr_segment(cidr: str) -> tuple[int, str]:
    net = ipaddress.ip_network(cidr, strict=False)
    return net.version, f"{net.network_address}-{net.prefixlen}"


# ---------------------------------------------------------------- keys -> slots


def locate(key: str) -> Slot | None:
    """The custom resource that stores ``key``, or None when no CRD stores it (derived or unsupported)."""
    plural = plural_of_key(key)
    if plural is not None:
        res = RESOURCE_CRDS.get(plural)
        if res is None:
            return None
        try:
            rk = parse_resource_key(key, res.crd.namespaced)
        except ValueError as exc:
            raise ValidationError("key", str(exc)) from None
        return Slot(key, res.crd, rk.namespace, rk.name, res.v3_kind)
    if key.startswith(IPAM_ROOT):
        return _locate_ipam(key)
    return None


def _locate_ipam(key: str) -> Slot:
    parts = key[len(IPAM_ROOT) :].split("/")
    if parts == ["config"]:
        return Slot(key, IPAM_CONFIGS, None, IPAM_CONFIG_NAME, None)
    if len(parts) == 2 and parts[0] == "handle" and parts[1]:
        return Slot(key, IPAM_HANDLES, None, object_name(parts[1]), None)
    if len(parts) == 4 and parts[0] == "assignment" and parts[1] in ("ipv4", "ipv6") and parts[2] == "block" and parts[3]:
        return Slot(key, IPAM_BLOCKS, None, object_name(cidr_name(parts[3])), None)
    if (len(parts) == 5 and parts[0] == "host" and parts[1] and parts[2] in ("ipv4", "ipv6")
            and parts[3] == "block" and parts[4]):
        return Slot(key, IPAM_AFFINITIES, None, affinity_name(parts[1], parts[4]), None)
    raise ValidationError(
        "key",
        f"{key!r} is not an IPAM key the kubernetes datastore stores (expected {IPAM_ROOT}config, "
        f"{IPAM_ROOT}handle/<id>, {IPAM_ROOT}assignment/ipv4|ipv6/block/<cidr> or "
        f"{IPAM_ROOT}host/<host>/ipv4|ipv6/block/<cidr>)",
    )


# ---------------------------------------------------------------- values -> custom resources


def _is_resource_shaped(slot: Slot, value: JSONMap) -> bool:
    if not slot.is_resource:
        return False
    meta = value.get("metadata")
    return (
        set(value) <= {"apiVersion", "kind", "metadata", "spec", "status"}
        and value.get("apiVersion") == V3_API_VERSION
        and value.get("kind") == slot.v3_kind
        and isinstance(meta, dict)
        and meta.get("name") == slot.name
        and meta.get("namespace") == slot.namespace
        and isinstance(value.get("spec"), dict)
        and _string_map(meta.get("labels"))
        and _string_map(meta.get("annotations"))
    )


def _string_map(value: Any) -> bool:
    return value is None or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))


def format_expiry(expires_at: float) -> str:
    """An expiry instant as the RFC 3339 text kept in the expiry annotation."""
    when = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_expiry(text: str) -> float | None:
    """The epoch seconds of an expiry annotation, or None when it cannot be read."""
    try:
        when = datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        return None
    return when.timestamp()


def encode(slot: Slot, value: JSONMap, expires_at: float | None) -> JSONMap:
    """The custom resource body that stores ``value`` at ``slot`` (no resourceVersion)."""
    if not isinstance(value, dict):
        raise ValidationError("", f"a datastore value must be a JSON map, not {type(value).__name__}")
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    body: JSONMap = {"apiVersion": slot.type.api_version, "kind": slot.type.kind}
    if _is_resource_shaped(slot, value):
        meta = {k: v for k, v in value["metadata"].items() if k not in _METADATA_SKIP}
        for field in ("labels", "annotations"):
            given = value["metadata"].get(field)
            if given == {}:
                meta[field] = {}  # Kubernetes drops empty maps; remember them here
        labels.update(value["metadata"].get("labels") or {})
        annotations.update(value["metadata"].get("annotations") or {})
        annotations[METADATA_ANNOTATION] = json.dumps(meta, sort_keys=True, separators=(",", ":"))
        body["spec"] = value["spec"]
        if "status" in value:
            body["status"] = value["status"]
    else:
        if slot.is_resource:
            annotations[ENCODING_ANNOTATION] = "raw"
        body["spec"] = value
    if not slot.is_resource:
        annotations[KEY_ANNOTATION] = slot.key
    if expires_at is not None:
        labels[TTL_LABEL] = "true"
        annotations[EXPIRES_ANNOTATION] = format_expiry(expires_at)
    metadata: JSONMap = {"name": slot.name}
    if slot.namespace is not None:
        metadata["namespace"] = slot.namespace
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    body["metadata"] = metadata
    return body


# ---------------------------------------------------------------- custom resources -> values


def revision_of(obj: JSONMap) -> int:
    """The integer revision of a Kubernetes object (its resourceVersion); raise when not an integer."""
    rv = (obj.get("metadata") or {}).get("resourceVersion")
    try:
        return int(rv)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise DatastoreError(
            f"Kubernetes resourceVersion {rv!r} is not an integer: the kubernetes datastore needs an API "
            "server whose resource versions are etcd revisions"
        ) from None


def expiry_of(obj: JSONMap) -> float | None:
    """When a TTL'd custom resource expires (epoch seconds), or None."""
    text = ((obj.get("metadata") or {}).get("annotations") or {}).get(EXPIRES_ANNOTATION)
    return parse_expiry(text) if isinstance(text, str) else None


def key_of(ktype: KubeType, obj: JSONMap) -> str | None:
    """The datastore key a custom resource stores, or None when it cannot be told."""
    meta = obj.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    if KEY_ANNOTATION in annotations:
        return str(annotations[KEY_ANNOTATION])
    if ktype in IPAM_TYPES and METADATA_ANNOTATION not in annotations:
        key = _ipam_key_from_spec(ktype, obj.get("spec") or {})
        if key is not None:
            return key
    res = RESOURCE_BY_CRD.get(ktype.plural)
    if res is None or not meta.get("name"):
        return None
    return ResourceKey(res.v3_plural, meta["name"], meta.get("namespace") if ktype.namespaced else None).path


def _ipam_key_from_spec(ktype: KubeType, spec: JSONMap) -> str | None:
    # Custom resources written by Calico itself carry no key annotation: rebuild it from the spec.
    try:
        if ktype == IPAM_CONFIGS:
            return IPAM_CONFIG_KEY
        if ktype == IPAM_HANDLES and spec.get("handleID"):
            return f"{IPAM_ROOT}handle/{spec['handleID']}"
        if ktype == IPAM_BLOCKS and spec.get("cidr"):
            version, seg = _cidr_segment(spec["cidr"])
            return f"{IPAM_ROOT}assignment/ipv{version}/block/{seg}"
        if ktype == IPAM_AFFINITIES and spec.get("cidr") and spec.get("node"):
            version, seg = _cidr_segment(spec["cidr"])
            return f"{IPAM_ROOT}host/{spec['node']}/ipv{version}/block/{seg}"
    except ValueError:
        return None
    return None


def decode(ktype: KubeType, obj: JSONMap) -> Decoded | None:
    """The datastore entry a custom resource holds, or None when it holds none this backend knows."""
    key = key_of(ktype, obj)
    if key is None:
        return None
    meta = obj.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {})
    revision = revision_of(obj)
    expires_at = expiry_of(obj)
    spec = obj.get("spec")
    res = RESOURCE_BY_CRD.get(ktype.plural)
    resource_key = key.startswith(RESOURCE_ROOT)
    if not resource_key or annotations.get(ENCODING_ANNOTATION) == "raw" or res is None:
        value = spec if isinstance(spec, dict) else {}
        return Decoded(key, value, revision, expires_at)
    stored = annotations.pop(METADATA_ANNOTATION, None)
    if stored is not None:
        v3_meta: JSONMap = json.loads(stored)
    else:
        # Written by someone else (real Calico, kubectl): derive what Calico's KDD derives.
        from libcalico.datastore.kube_conversion import convert_uid

        v3_meta = {}
        if meta.get("uid"):
            v3_meta["uid"] = convert_uid(meta["uid"])
        if meta.get("creationTimestamp"):
            v3_meta["creationTimestamp"] = meta["creationTimestamp"]
    for ours in OUR_ANNOTATIONS:
        annotations.pop(ours, None)
    labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != TTL_LABEL}
    v3_meta["name"] = meta.get("name")
    if ktype.namespaced:
        v3_meta["namespace"] = meta.get("namespace")
    if labels:
        v3_meta["labels"] = labels
    if annotations:
        v3_meta["annotations"] = annotations
    value = {"apiVersion": V3_API_VERSION, "kind": res.v3_kind, "metadata": v3_meta,
             "spec": spec if isinstance(spec, dict) else {}}
    if "status" in obj:
        value["status"] = obj["status"]
    return Decoded(key, value, revision, expires_at)
