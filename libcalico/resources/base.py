"""The shape every v3 resource shares: metadata, kind registry, loading and errors.

A resource kind is a pydantic model subclassing :class:`Resource`, registered
with :func:`register`. Field names are Calico's wire names (camelCase) so that
real Calico YAML loads unchanged and dumps back the same; unknown fields are
rejected. Validation problems surface as :class:`libcalico.errors.ValidationError`
naming the field path (``spec.ingress[0].destination.ports[1]``) and the reason.
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, field_validator

from libcalico.errors import MultiValidationError, ValidationError

API_VERSION: Final = "projectcalico.org/v3"

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_RE = re.compile(rf"^{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*$")


def check_dns1123_subdomain(value: str, what: str = "name") -> str:
    """Raise ValueError unless ``value`` is a valid DNS-1123 subdomain (Kubernetes object name)."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > 253:
        raise ValueError(f"{what} {value!r} is longer than 253 characters")
    if not DNS1123_SUBDOMAIN_RE.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} is not a valid DNS-1123 subdomain (lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit)"
        )
    return value


def field_error(loc: tuple[int | str, ...], reason: str, value: Any = None) -> pydantic.ValidationError:
    """An error to raise from a model validator that names a nested field, e.g. ``("ingress", 0, "action")``.

    ``loc`` is relative to the model being validated; pydantic prefixes the outer path.
    """
    return pydantic.ValidationError.from_exception_data(
        "CalicoModel",
        [{"type": "value_error", "loc": loc, "input": value, "ctx": {"error": ValueError(reason)}}],
    )


class CalicoModel(BaseModel):
    """Base of every resource part: wire names, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)


class OwnerReference(CalicoModel):
    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ObjectMeta(CalicoModel):
    """Kubernetes-style object metadata, as Calico's v3 resources carry it."""

    name: str
    namespace: str | None = None
    generateName: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    resourceVersion: str | None = None
    uid: str | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    deletionGracePeriodSeconds: int | None = None
    generation: int | None = None
    finalizers: list[str] | None = None
    ownerReferences: list[OwnerReference] | None = None
    managedFields: list[dict[str, Any]] | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace_valid(cls, value: str | None) -> str | None:
        if value is not None:
            if len(value) > 63 or not re.fullmatch(_DNS1123_LABEL, value):
                raise ValueError(f"namespace {value!r} is not a valid DNS-1123 label")
        return value


@dataclass(frozen=True)
class KindInfo:
    """What calicoctl and the datastore need to know about a kind."""

    kind: str
    plural: str
    namespaced: bool
    aliases: tuple[str, ...] = ()


class Resource(CalicoModel):
    """A projectcalico.org/v3 resource. Subclasses set ``KIND``, ``kind`` and ``spec``."""

    KIND: ClassVar[KindInfo]

    apiVersion: Literal["projectcalico.org/v3"] = API_VERSION
    kind: str
    metadata: ObjectMeta

    @classmethod
    def check_name(cls, name: str) -> None:
        """Raise ValueError when ``name`` is not allowed for this kind (default: DNS-1123 subdomain)."""
        check_dns1123_subdomain(name)

    @pydantic.model_validator(mode="after")
    def _metadata_valid(self) -> Resource:
        # Runs for every kind; errors are reported at metadata.name / metadata.namespace.
        try:
            type(self).check_name(self.metadata.name)
        except ValueError as exc:
            raise field_error(("metadata", "name"), str(exc), self.metadata.name) from None
        if not self.KIND.namespaced and self.metadata.namespace is not None:
            raise field_error(("metadata", "namespace"),
                              f"{self.KIND.kind} is cluster-scoped and takes no namespace",
                              self.metadata.namespace)
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace

    def identifier(self) -> str:
        """How errors and calicoctl name this resource: ``Kind(ns/name)`` or ``Kind(name)``."""
        if self.KIND.namespaced:
            return f"{self.KIND.kind}({self.metadata.namespace or 'default'}/{self.metadata.name})"
        return f"{self.KIND.kind}({self.metadata.name})"


_KINDS: dict[str, type[Resource]] = {}
_ALIASES: dict[str, type[Resource]] = {}


def register(cls: type[Resource]) -> type[Resource]:
    """Class decorator: make a resource kind known to the loader, calicoctl and the datastore."""
    info = cls.KIND
    if info.kind in _KINDS:
        raise RuntimeError(f"kind {info.kind} registered twice")
    _KINDS[info.kind] = cls
    for alias in {info.kind.lower(), info.plural, *info.aliases}:
        if alias in _ALIASES and _ALIASES[alias] is not cls:
            raise RuntimeError(f"alias {alias!r} used by {_ALIASES[alias].KIND.kind} and {info.kind}")
        _ALIASES[alias] = cls
    return cls


def all_kinds() -> list[type[Resource]]:
    """Every registered kind, in registration order."""
    _ensure_loaded()
    return list(_KINDS.values())


def kind_class(kind: str) -> type[Resource]:
    """The class of a kind by its exact name (``NetworkPolicy``); raise ValidationError."""
    cls = _KINDS.get(kind)
    if cls is not None:
        return cls
    from libcalico.resources import _LAZY

    if kind in _LAZY:  # load only the module the kind lives in (a start-up path may need just one)
        importlib.import_module(f"libcalico.resources.{_LAZY[kind]}")
        cls = _KINDS.get(kind)
        if cls is not None:
            return cls
    _ensure_loaded()
    try:
        return _KINDS[kind]
    except KeyError:
        raise ValidationError("kind", f"unknown resource kind {kind!r}") from None


def lookup_kind(name: str) -> type[Resource]:
    """Resolve a kind name, plural or alias as calicoctl accepts them (case-insensitive)."""
    _ensure_loaded()
    cls = _ALIASES.get(name.lower())
    if cls is None:
        raise ValidationError("", f"resource type {name!r} is not supported")
    return cls


def kind_for_plural(plural: str) -> type[Resource] | None:
    """The class stored under a plural key segment, or None."""
    _ensure_loaded()
    for cls in _KINDS.values():
        if cls.KIND.plural == plural:
            return cls
    return None


_ALL_LOADED = False


def _ensure_loaded() -> None:
    # The kinds register themselves when their modules are imported, and those load lazily (see the
    # package): import them all, then put the registry in the package's order whatever loaded first.
    global _ALL_LOADED
    if _ALL_LOADED:
        return
    from libcalico.resources import _KIND_MODULES, _load_all

    _load_all()
    rank = {f"libcalico.resources.{module}": i for i, module in enumerate(_KIND_MODULES)}
    ordered = sorted(_KINDS.values(), key=lambda cls: rank.get(cls.__module__, len(rank)))
    _KINDS.clear()
    _KINDS.update((cls.KIND.kind, cls) for cls in ordered)
    _ALL_LOADED = True


# ---------------------------------------------------------------- errors


_SKIP_LOC = re.compile(r"^(function-|tagged-union|union|lax-|json-or-python|chain|model-)|\[")


def format_loc(loc: Iterable[int | str]) -> str:
    """Turn a pydantic error location into Calico's field path: ``spec.ingress[0].action``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        if _SKIP_LOC.search(part) or part in {"int", "str", "float", "bool", "list", "dict", "none"}:
            continue
        out += f".{part}" if out else part
    return out


def _reason(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "field is required"
    msg: str = err["msg"]
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    return msg


def convert_pydantic_error(exc: pydantic.ValidationError, prefix: tuple[int | str, ...] = ()) -> ValidationError:
    """Turn a pydantic ValidationError into ours (one entry per problem, in document order)."""
    errors = [ValidationError(format_loc(prefix + tuple(e["loc"])), _reason(e)) for e in exc.errors()]
    seen: set[tuple[str, str]] = set()
    unique = []
    for e in errors:
        if (e.field, e.reason) not in seen:
            seen.add((e.field, e.reason))
            unique.append(e)
    return unique[0] if len(unique) == 1 else MultiValidationError(unique)


# ---------------------------------------------------------------- loading


def parse_resource(doc: Any) -> Resource:
    """Validate one decoded document (a map) into its resource kind; raise ValidationError."""
    if not isinstance(doc, dict):
        raise ValidationError("", f"a resource must be a map, not {type(doc).__name__}")
    api = doc.get("apiVersion")
    if api != API_VERSION:
        raise ValidationError("apiVersion", f"must be {API_VERSION!r}, not {api!r}")
    kind = doc.get("kind")
    if not isinstance(kind, str):
        raise ValidationError("kind", "field is required")
    cls = kind_class(kind)
    if not isinstance(doc.get("metadata"), dict):
        raise ValidationError("metadata", "field is required (a map with at least a name)")
    try:
        return cls.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise convert_pydantic_error(exc) from None


def decode_documents(text: str, source: str = "<stdin>") -> list[Any]:
    """Decode multi-document YAML (which includes JSON); raise ValidationError with line and column."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError("", f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
                                  source=source) from None
        return data if isinstance(data, list) else [data]
    import yaml  # only YAML input needs it

    # libyaml's parser when PyYAML was built with it: about 10x faster on big files.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return [d for d in yaml.load_all(text, Loader=loader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ValidationError("", f"invalid YAML{where}: {problem}", source=source) from None


def load_documents(text: str, source: str = "<stdin>") -> list[Resource]:
    """Load every resource in a YAML/JSON text, expanding ``kind: List``.

    All documents are checked before anything is returned: if any is invalid, a
    ValidationError (a MultiValidationError when several are) names the source,
    the document number and the field of each problem.
    """
    resources: list[Resource] = []
    problems: list[ValidationError] = []
    for index, doc in enumerate(decode_documents(text, source), start=1):
        where = f"{source} document {index}"
        items: list[tuple[str, Any]]
        if isinstance(doc, dict) and doc.get("kind") == "List":
            raw = doc.get("items")
            if not isinstance(raw, list):
                problems.append(ValidationError("items", "a List must have a list of items", source=where))
                continue
            items = [(f"{where} item {i}", item) for i, item in enumerate(raw, start=1)]
        else:
            items = [(where, doc)]
        for item_where, item in items:
            try:
                resources.append(parse_resource(item))
            except MultiValidationError as exc:
                problems.extend(e.with_source(item_where) for e in exc.errors)
            except ValidationError as exc:
                problems.append(exc.with_source(item_where))
    if problems:
        raise problems[0] if len(problems) == 1 else MultiValidationError(problems, source="")
    return resources
