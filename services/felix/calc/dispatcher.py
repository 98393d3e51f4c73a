"""The dispatcher: routes each syncer update, by the kind its key names, to the nodes that want it.

How it works (Calico's ``dispatcher``)::

    Update(key, value) ──► classify(key) ──► KeyInfo(kind, name, namespace)
                       ──► decode value:
                             raw kinds (WorkloadEndpoint): decoder(key, map), the syncer validated it
                             model kinds: accepts(kind, map)? ──yes──► stored(key, map)   (fast, no model)
                                                             └─no───► parse_resource ──► from_model(key, model)
                               (no stored reader, a VIEW_KINDS kind: stored = from_model(key, model_view(map)))
                             IPAM blocks: the raw map (needs a cidr)
                       ──► every handler registered for that kind: handler(key, info, decoded | None)

Keys of kinds nobody registered for are dropped. A value that cannot be
decoded is treated as a deletion and logged once per key and revision, as the
syncer's own validation filter does, so bad data never stops the graph.
``accepts`` is :func:`libcalico.syncer.fastpath.accepts` when that exists: True
only for a map the model certainly accepts, so skipping the model never
accepts anything the model would reject.

Handlers of HostEndpoint, IPPool, Node and FelixConfiguration read the model's
fields (``pool.spec.natOutgoing``, ``config.spec.model_dump(...)``); for a map
``accepts`` vouches for, they get :func:`libcalico.syncer.fastview.model_view`
instead, which gives the same fields with the model's defaults and
normalisation, so even a cluster's pools, nodes and Felix configuration need
no model (and no pydantic import) at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from libcalico.datastore.keys import IPAM_ROOT, RESOURCE_ROOT
from libcalico.errors import ValidationError
from libcalico.syncer import Update
from libcalico.syncer.catalog import RESOURCE_KINDS

IPAM_BLOCK = "IPAMBlock"
_BLOCK_PREFIX = IPAM_ROOT + "assignment/"
_ROOT_LEN = len(RESOURCE_ROOT)


class KeyInfo(NamedTuple):
    """What a datastore key names: the kind, the namespace (None when cluster-wide) and the name."""

    kind: str
    name: str
    namespace: str | None = None


def classify(key: str) -> KeyInfo | None:
    """The kind, namespace and name a key stands for; None for a key the graph does not know."""
    if key.startswith(RESOURCE_ROOT):
        parts = key[_ROOT_LEN:].split("/")
        known = RESOURCE_KINDS.get(parts[0])
        if known is None:
            return None
        kind, namespaced = known
        if namespaced and len(parts) == 3 and parts[1] and parts[2]:
            return KeyInfo(kind, parts[2], parts[1])
        if not namespaced and len(parts) == 2 and parts[1]:
            return KeyInfo(kind, parts[1])
        return None
    if key.startswith(_BLOCK_PREFIX):
        parts = key[len(_BLOCK_PREFIX):].split("/")
        if len(parts) == 3 and parts[0] in ("ipv4", "ipv6") and parts[1] == "block" and parts[2]:
            return KeyInfo(IPAM_BLOCK, parts[2].replace("-", "/", 1))
    return None


Handler = Callable[[str, KeyInfo, Any], None]
Decoder = Callable[[str, dict[str, Any]], Any]  # (key, stored map) -> decoded; ValueError/KeyError/TypeError when bad
FromModel = Callable[[str, Any], Any]  # (key, validated model) -> decoded
Accepts = Callable[[str, dict[str, Any]], bool]

FASTPATH: Any = object()  # "use libcalico.syncer.fastpath.accepts if it exists"
NOT_SURE: Any = object()  # a checked reader's "I cannot vouch for this map: ask the model"
# Kinds libcalico.syncer.fastview can show as their models would (a test keeps this its VIEW_KINDS).
VIEW_KINDS = frozenset({"FelixConfiguration", "HostEndpoint", "IPPool", "Node"})


def _fastpath_accepts() -> Accepts | None:
    from libcalico.syncer import fastpath  # on first use: it is not needed to import the graph

    found = getattr(fastpath, "accepts", None)
    return found if callable(found) else None


def _view_reader(kind: str, entry: KindRoute) -> Decoder:
    """A reader of vouched-for maps of ``kind`` that gives what the model path gives, through a model view."""
    def read(key: str, value: dict[str, Any]) -> Any:
        from libcalico.syncer.fastview import model_view  # on first use, as the fast path itself

        view = model_view(kind, value)
        return view if entry.from_model is None else entry.from_model(key, view)

    return read


class KindRoute:
    """How one kind is decoded and who gets it."""

    __slots__ = ("handlers", "raw", "validate", "checked", "stored", "from_model")

    def __init__(self) -> None:
        self.handlers: list[Handler] = []
        self.raw: Decoder | None = None  # map reader (trusted: the syncer validated the kind, unless ``validate``)
        self.validate = False  # the kind's maps are validated here before ``raw`` reads them
        self.checked: Decoder | None = None  # with the fast path: reads and vouches at once (or NOT_SURE)
        self.stored: Decoder | None = None  # map reader for maps ``accepts`` vouches for
        self.from_model: FromModel | None = None  # conversion of the validated model


class Dispatcher:
    """Routes updates to the handlers registered for their kind."""

    def __init__(self, accepts: Accepts | None | object = FASTPATH) -> None:
        self._kinds: dict[str, KindRoute] = {}
        self._bad: dict[str, int] = {}
        self._accepts_given = accepts
        self._accepts: Accepts | None = None
        self._fast = False  # the default fast path is the one vouching

    def register(self, kind: str, handler: Handler, decoder: Decoder | None = None, *,
                 stored: Decoder | None = None, from_model: FromModel | None = None,
                 validate: bool = False, checked: Decoder | None = None) -> None:
        """Call ``handler(key, info, value)`` for every update of ``kind`` (value None on deletion).

        ``decoder`` replaces validation and decoding for the kind: it reads the
        stored map and raises ValueError (or KeyError, TypeError) when it is
        malformed. Otherwise the typed model validates the value, and the
        handler gets ``from_model(key, model)`` (the model itself without it);
        ``stored`` reads the maps that ``accepts`` vouches for instead, giving
        the same result without the model (for a kind in :data:`VIEW_KINDS`
        without one: ``from_model`` of a model view).

        With ``validate`` the kind's maps are validated here before
        ``decoder`` reads them: ``checked(key, map)`` reads and vouches at once
        with the default fast path (NOT_SURE when it cannot vouch), ``accepts``
        vouches otherwise, and the model decides whatever nothing vouched for.
        """
        entry = self._kinds.get(kind)
        if entry is None:
            entry = self._kinds[kind] = KindRoute()
        entry.handlers.append(handler)
        if decoder is not None:
            entry.raw = decoder
        entry.validate = entry.validate or validate
        if checked is not None:
            entry.checked = checked
        if stored is not None:
            entry.stored = stored
        if from_model is not None:
            entry.from_model = from_model
        if entry.stored is None and entry.raw is None and kind in VIEW_KINDS:
            entry.stored = _view_reader(kind, entry)

    def parsed_kinds(self) -> frozenset[str]:
        """The kinds this dispatcher validates itself (typed models), rejecting bad values."""
        return frozenset(k for k, e in self._kinds.items() if (e.raw is None or e.validate) and k != IPAM_BLOCK)

    def dispatch(self, update: Update) -> None:
        """Decode one update and hand it to its kind's handlers."""
        info = classify(update.key)
        if info is None:
            return
        entry = self._kinds.get(info.kind)
        if entry is None:
            return
        value = None if update.value is None else self.decode(update, info, entry)
        for handler in entry.handlers:
            handler(update.key, info, value)

    def kind_of(self, info: KeyInfo) -> KindRoute | None:
        """How a kind is handled (None when nobody registered for it)."""
        return self._kinds.get(info.kind)

    def decode_batch(self, kind: str, prefix: str, updates: list[Update]) -> list[Any]:
        """Decode many updates (none a deletion) of one namespaced kind with a raw decoder, all keyed under
        ``prefix`` (its plural's); bad ones are logged and left out, as are values that decode to None."""
        entry = self._kinds[kind]
        reader = entry.raw
        assert reader is not None
        bad = self._bad
        cut = len(prefix)
        out: list[Any] = []
        if entry.validate:
            # Only what the fast path vouches for is read here (``checked`` checks the key too); the rest goes
            # the slow way, below.
            checked = entry.checked if self._fast_path() else None
            slow: list[Update] = []
            for update in updates:
                try:
                    decoded = NOT_SURE if checked is None else checked(update.key, update.value)  # type: ignore[arg-type]
                except (ValueError, KeyError, TypeError):
                    decoded = NOT_SURE
                if decoded is NOT_SURE:
                    slow.append(update)
                    continue
                if bad:
                    bad.pop(update.key, None)
                if decoded is not None:
                    out.append(decoded)
            reader, updates = None, slow
        for update in updates:
            key, value = update.key, update.value
            namespace, _, name = key[cut:].partition("/")
            meta = value.get("metadata")  # type: ignore[union-attr]
            if (reader is not None and namespace and name and "/" not in name
                    and value.get("kind") == kind  # type: ignore[union-attr]
                    and meta.__class__ is dict and meta.get("name") == name and meta.get("namespace") == namespace):
                try:
                    decoded = reader(key, value)  # type: ignore[arg-type]
                except (ValueError, KeyError, TypeError):
                    pass
                else:
                    if decoded is not NOT_SURE:
                        if bad:
                            bad.pop(key, None)
                        if decoded is not None:
                            out.append(decoded)
                        continue
            info = classify(key)
            if info is not None and info.kind == kind:  # the slow way, which logs why the value is bad
                decoded = self.decode(update, info, entry)
                if decoded is not None:
                    out.append(decoded)
        return out

    def decode(self, update: Update, info: KeyInfo, entry: KindRoute) -> Any:
        """The decoded value of an update (not a deletion); None, logged, when it is not valid."""
        value = update.value
        assert value is not None
        reason: str
        reader = entry.raw
        if reader is not None and entry.validate:
            return self._decode_validated(update, info, entry)
        if reader is None and entry.stored is not None:
            accepts = self._resolve_accepts()
            if accepts is not None and accepts(info.kind, value):
                reader = entry.stored
        if reader is not None:
            meta = value.get("metadata")
            if (value.get("kind") != info.kind or not isinstance(meta, dict)
                    or meta.get("name") != info.name or meta.get("namespace") != info.namespace):
                reason = f"the value is not the {info.kind} {info.name!r} that the key names"
            else:
                try:
                    decoded = reader(update.key, value)
                except (ValueError, KeyError, TypeError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                else:
                    if self._bad:
                        self._bad.pop(update.key, None)
                    return decoded
        elif info.kind == IPAM_BLOCK:
            cidr = value.get("cidr")
            if isinstance(cidr, str):
                self._bad.pop(update.key, None)
                return value
            reason = "an IPAM block needs a cidr"
        else:
            from libcalico.resources import (
                parse_resource,  # the models: only when something needs them
            )

            try:
                resource = parse_resource(value)
            except ValidationError as exc:
                reason = str(exc)
            else:
                meta = resource.metadata
                if resource.kind == info.kind and meta.name == info.name and meta.namespace == info.namespace:
                    self._bad.pop(update.key, None)
                    return resource if entry.from_model is None else entry.from_model(update.key, resource)
                reason = f"the value is {resource.kind} {resource.metadata.name!r}, not what the key names"
        return self._rejected(update, reason)

    def _resolve_accepts(self) -> Accepts | None:
        """The fast path's vouching function (resolved on first use: the fast path is imported only then)."""
        accepts = self._accepts
        if accepts is None and self._accepts_given is not None:
            given = self._accepts_given
            accepts = self._accepts = _fastpath_accepts() if given is FASTPATH else given  # type: ignore[assignment]
            self._fast = given is FASTPATH and accepts is not None
            self._accepts_given = None
        return accepts

    def _fast_path(self) -> bool:
        """Whether the default fast path vouches (so ``checked`` readers may be used)."""
        self._resolve_accepts()
        return self._fast

    def _decode_validated(self, update: Update, info: KeyInfo, entry: KindRoute) -> Any:
        """A raw kind validated here: read by ``checked`` or ``raw`` once vouched for, else after the model."""
        value = update.value
        assert value is not None and entry.raw is not None
        meta = value.get("metadata")
        if (value.get("kind") != info.kind or not isinstance(meta, dict)
                or meta.get("name") != info.name or meta.get("namespace") != info.namespace):
            return self._rejected(update, f"the value is not the {info.kind} {info.name!r} that the key names")
        try:
            accepts = self._resolve_accepts()
            if self._fast and entry.checked is not None:
                decoded = entry.checked(update.key, value)
            elif accepts is not None and accepts(info.kind, value):
                decoded = entry.raw(update.key, value)
            else:
                decoded = NOT_SURE
            if decoded is NOT_SURE:
                from libcalico.resources import (
                    parse_resource,  # the models: only when something needs them
                )

                try:
                    parse_resource(value)
                except ValidationError as exc:
                    return self._rejected(update, str(exc))
                decoded = entry.raw(update.key, value)
        except (ValueError, KeyError, TypeError) as exc:
            return self._rejected(update, f"{type(exc).__name__}: {exc}")
        if self._bad:
            self._bad.pop(update.key, None)
        return decoded

    def _rejected(self, update: Update, reason: str) -> None:
        """A value that is not valid: logged once per key and revision; it counts as deleted."""
        if self._bad.get(update.key) != update.revision:
            self._bad[update.key] = update.revision
            import structlog  # only a bad value needs the logger

            structlog.get_logger(__name__).warning("calc invalid value", key=update.key, revision=update.revision,
                                                   reason=reason, treated_as="deleted")
        return None
