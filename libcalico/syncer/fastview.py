"""The models' reading of a value :func:`.fastpath.accepts` vouched for, without the models.

How it works::

    stored map ──accepts(kind, map)──► model_view(kind, map) ──► ModelView: view.spec.cidr, view.metadata.labels,
                                                                 view.spec.model_dump(exclude_none=True)...

A consumer that reads a resource through its model's fields (``pool.spec.natOutgoing``,
``node.spec.bgp.ipv4Address``, ``config.spec.model_dump(...)``) can read a view instead
and get the same values: every field the model declares (None when unset), with what
the model's validators change filled in: an IPPool's defaults (modes, ``blockSize``,
``nodeSelector``, ``allowedUses``) and canonical CIDR, an AS number in asdot notation as
a number, FelixConfiguration ports as ``fields.Port`` normalises them (``"80"`` → ``80``,
``"80:80"`` → ``80``). ``model_dump`` is pydantic's for these models (they have no
aliases and no values that JSON mode would change). Kinds: :data:`VIEW_KINDS`.

Only for values ``accepts`` said True for: the view does not validate. A test compares
``model_view(kind, v).model_dump()`` with the model's ``model_dump()`` over the manifest
corpus and randomized documents.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from libcalico.syncer.fastconfig import FIELDS, MODELS, PORT, Shape
from libcalico.syncer.fastkinds import (
    ADDRESS_FIELDS,
    BGP_FIELDS,
    DEFAULT_USES,
    HEP_FIELDS,
    NODE_FIELDS,
    ORCH_REF_FIELDS,
    POOL_FIELDS,
    PORT_FIELDS,
    STATUS_FIELDS,
    WIREGUARD_FIELDS,
    as_number,
    pool_setting,
)

# base.ObjectMeta's fields, in its order.
META_FIELDS = ("name", "namespace", "generateName", "labels", "annotations", "resourceVersion", "uid",
               "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "finalizers",
               "ownerReferences", "managedFields")


class ModelView:
    """Read-only field access to a resource (or a part of one) as its pydantic model would give it."""

    __slots__ = ("_fields",)

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def __getattr__(self, name: str) -> Any:
        if name == "_fields":  # not set yet (copying): no recursion through __getattr__
            raise AttributeError(name)
        try:
            return self._fields[name]
        except KeyError:
            raise AttributeError(f"the viewed model has no field {name!r}") from None

    def model_dump(self, *, mode: str = "python", exclude_none: bool = False, by_alias: bool = False
                   ) -> dict[str, Any]:
        """Plain data, as pydantic's ``model_dump`` gives it for the viewed model (any ``mode``, ``by_alias``)."""
        return {name: _plain(value, exclude_none) for name, value in self._fields.items()
                if not (exclude_none and value is None)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelView) and self._fields == other._fields

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ModelView({self._fields!r})"


def _plain(value: Any, exclude_none: bool) -> Any:
    if value.__class__ is ModelView:
        return value.model_dump(exclude_none=exclude_none)
    if value.__class__ is list:
        return [_plain(item, exclude_none) for item in value]
    if value.__class__ is dict:
        return dict(value)
    return value


def _fields(names: Any, value: dict[str, Any]) -> dict[str, Any]:
    """Every field in ``names`` (None when ``value`` leaves it out), in order."""
    get = value.get
    return {name: get(name) for name in names}


def _meta(meta: dict[str, Any]) -> ModelView:
    return ModelView(_fields(META_FIELDS, meta))


def _resource(value: dict[str, Any], spec: ModelView, **extra: Any) -> ModelView:
    return ModelView({"apiVersion": value["apiVersion"], "kind": value["kind"], "metadata": _meta(value["metadata"]),
                      "spec": spec, **extra})


def _parts(items: list[dict[str, Any]] | None, names: Any) -> list[ModelView] | None:
    return None if items is None else [ModelView(_fields(names, item)) for item in items]


def _part(item: dict[str, Any] | None, names: Any) -> ModelView | None:
    return None if item is None else ModelView(_fields(names, item))


# ---------------------------------------------------------------- the kinds


def _ippool(value: dict[str, Any]) -> ModelView:
    spec = value["spec"]
    fields = _fields(POOL_FIELDS, spec)
    net = ipaddress.ip_network(spec["cidr"], strict=False)
    fields["cidr"] = str(net)
    fields["vxlanMode"] = pool_setting(spec, "vxlanMode", "Never")
    fields["ipipMode"] = pool_setting(spec, "ipipMode", "Never")
    fields["nodeSelector"] = pool_setting(spec, "nodeSelector", "all()")
    fields["assignmentMode"] = pool_setting(spec, "assignmentMode", "Automatic")
    fields["natOutgoing"] = spec.get("natOutgoing", False)
    fields["blockSize"] = spec.get("blockSize") or (26 if net.version == 4 else 122)
    fields["allowedUses"] = list(spec.get("allowedUses") or DEFAULT_USES)
    return _resource(value, ModelView(fields))


def _node(value: dict[str, Any]) -> ModelView:
    spec = value.get("spec") or {}
    fields = _fields(NODE_FIELDS, spec)
    bgp = spec.get("bgp")
    if bgp is not None:
        bgp_fields = _fields(BGP_FIELDS, bgp)
        if bgp_fields["asNumber"] is not None:
            bgp_fields["asNumber"] = as_number(bgp_fields["asNumber"])
        fields["bgp"] = ModelView(bgp_fields)
    fields["orchRefs"] = _parts(spec.get("orchRefs"), ORCH_REF_FIELDS)
    fields["addresses"] = _parts(spec.get("addresses"), ADDRESS_FIELDS)
    fields["wireguard"] = _part(spec.get("wireguard"), WIREGUARD_FIELDS)
    return _resource(value, ModelView(fields), status=_part(value.get("status"), STATUS_FIELDS))


def _host_endpoint(value: dict[str, Any]) -> ModelView:
    spec = value["spec"]
    fields = _fields(HEP_FIELDS, spec)
    fields["ports"] = _parts(spec.get("ports"), PORT_FIELDS)
    return _resource(value, ModelView(fields))


def rule_port(port: Any) -> Any:
    """A valid ``fields.Port`` as the model keeps it: numbers as ints, ``"a:a"`` as ``a``, ranges without zeros."""
    if port.__class__ is not str:
        return port
    if ":" in port:
        low, _, high = port.partition(":")
        return int(low) if int(low) == int(high) else f"{int(low)}:{int(high)}"
    return int(port) if port.isdigit() else port


def _shaped(shape: Shape) -> Callable[[Any], Any] | None:
    """How the model changes a valid value of ``shape`` (None: it keeps it as it is)."""
    if shape == PORT:
        return rule_port
    tag = shape[0]
    if tag == "model":
        fields = MODELS[shape[1]]
        return lambda item: ModelView(_fields(fields, item))  # no nested model changes its values
    if tag == "list":
        inner = _shaped(shape[1])
        return None if inner is None else lambda items: [inner(item) for item in items]
    return None


_FELIX_CHANGES = {name: change for name, shape in FIELDS.items() if (change := _shaped(shape)) is not None}


def _felix_configuration(value: dict[str, Any]) -> ModelView:
    spec = value.get("spec") or {}
    fields = _fields(FIELDS, spec)
    for name, change in _FELIX_CHANGES.items():
        item = fields[name]
        if item is not None:
            fields[name] = change(item)
    return _resource(value, ModelView(fields))


_VIEWS: dict[str, Callable[[dict[str, Any]], ModelView]] = {
    "IPPool": _ippool,
    "Node": _node,
    "HostEndpoint": _host_endpoint,
    "FelixConfiguration": _felix_configuration,
}
VIEW_KINDS = frozenset(_VIEWS)


def model_view(kind: str, value: dict[str, Any]) -> ModelView:
    """The model's reading of ``value``, a ``kind`` that ``fastpath.accepts`` said True for; KeyError for
    a kind without a view (see :data:`VIEW_KINDS`)."""
    return _VIEWS[kind](value)
