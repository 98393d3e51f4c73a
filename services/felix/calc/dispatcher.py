"""The dispatcher: routes each syncer update, by the kind its key names, to the nodes that want it.

How it works (Calico's ``dispatcher``)::

    Update(key, value) ──► classify(key) ──► KeyInfo(kind, namespace, name)
                       ──► decode value (typed v3 resource, or the raw IPAM block map)
                       ──► every handler registered for that kind: handler(key, info, decoded | None)

Keys of kinds nobody registered for are dropped. A value that cannot be
decoded is treated as a deletion and logged once per key and revision, as the
syncer's own validation filter does, so bad data never stops the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from libcalico.datastore.keys import IPAM_ROOT, RESOURCE_ROOT
from libcalico.errors import ValidationError
from libcalico.resources import parse_resource
from libcalico.syncer import Update
from libcalico.syncer.catalog import RESOURCE_KINDS

log = structlog.get_logger(__name__)

IPAM_BLOCK = "IPAMBlock"
_BLOCK_PREFIX = IPAM_ROOT + "assignment/"


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What a datastore key names: the kind, the namespace (None when cluster-wide) and the name."""

    kind: str
    name: str
    namespace: str | None = None


def classify(key: str) -> KeyInfo | None:
    """The kind, namespace and name a key stands for; None for a key the graph does not know."""
    if key.startswith(RESOURCE_ROOT):
        parts = key[len(RESOURCE_ROOT):].split("/")
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
Decoder = Callable[[dict[str, Any]], Any]


class Dispatcher:
    """Routes updates to the handlers registered for their kind."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._decoders: dict[str, Decoder] = {}
        self._bad: dict[str, int] = {}

    def register(self, kind: str, handler: Handler, decoder: Decoder | None = None) -> None:
        """Call ``handler(key, info, value)`` for every update of ``kind`` (value None on deletion).

        ``decoder`` replaces the typed-model decoding for the kind: it reads the
        stored map and raises ValueError (or KeyError, TypeError) when it is malformed.
        """
        self._handlers.setdefault(kind, []).append(handler)
        if decoder is not None:
            self._decoders[kind] = decoder

    def parsed_kinds(self) -> frozenset[str]:
        """The kinds this dispatcher parses and checks itself (typed models), rejecting bad values."""
        return frozenset(k for k in self._handlers if k not in self._decoders and k != IPAM_BLOCK)

    def dispatch(self, update: Update) -> None:
        """Decode one update and hand it to its kind's handlers."""
        info = classify(update.key)
        if info is None:
            return
        handlers = self._handlers.get(info.kind)
        if not handlers:
            return
        value = None if update.value is None else self._decode(update, info)
        for handler in handlers:
            handler(update.key, info, value)

    def _decode(self, update: Update, info: KeyInfo) -> Any:
        assert update.value is not None
        decoder = self._decoders.get(info.kind)
        if decoder is not None:
            meta = update.value.get("metadata")
            if (update.value.get("kind") != info.kind or not isinstance(meta, dict)
                    or meta.get("name") != info.name or meta.get("namespace") != info.namespace):
                reason = f"the value is not the {info.kind} {info.name!r} that the key names"
            else:
                try:
                    decoded = decoder(update.value)
                except (ValueError, KeyError, TypeError) as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                else:
                    self._bad.pop(update.key, None)
                    return decoded
        elif info.kind == IPAM_BLOCK:
            cidr = update.value.get("cidr")
            if isinstance(cidr, str):
                self._bad.pop(update.key, None)
                return update.value
            reason = "an IPAM block needs a cidr"
        else:
            try:
                resource = parse_resource(update.value)
            except ValidationError as exc:
                reason = str(exc)
            else:
                meta = resource.metadata
                if resource.kind == info.kind and meta.name == info.name and meta.namespace == info.namespace:
                    self._bad.pop(update.key, None)
                    return resource
                reason = f"the value is {resource.kind} {resource.metadata.name!r}, not what the key names"
        if self._bad.get(update.key) != update.revision:
            self._bad[update.key] = update.revision
            log.warning("calc invalid value", key=update.key, revision=update.revision, reason=reason,
                        treated_as="deleted")
        return None
