"""The syncer's validation filter, as Felix's: a value that fails validation is treated as deleted.

Resource values are checked against their key (kind, name, namespace) and then
by the kind's model through :func:`libcalico.resources.base.parse_resource`
(the common forms of endpoints, policies, profiles and network sets through
:func:`.fastpath.accepts`, which gives the same answer faster);
a kind whose model is not registered gets the key and shape checks only. IPAM
entries get shape checks. Each rejected key/revision is logged once.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import structlog

from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.errors import ValidationError
from libcalico.syncer.catalog import ResourceType
from libcalico.syncer.fastpath import accepts as fast_accepts

log = structlog.get_logger(__name__)

_AFFINITY_STATES = ("confirmed", "pending", "pendingDeletion")


def check_value(rtype: ResourceType, key: str, value: Any) -> None:
    """Raise ValidationError unless ``value`` is a valid entry of ``rtype`` stored at ``key``."""
    if not isinstance(value, dict):
        raise ValidationError("", f"value must be a map, not {type(value).__name__}")
    if rtype.kind is not None:
        _check_resource(rtype, key, value)
    elif rtype.name == "ipam-blocks":
        _check_block(key, value)
    elif rtype.name == "block-affinities":
        _check_affinity(value)


def _check_resource(rtype: ResourceType, key: str, value: dict[str, Any]) -> None:
    kind = value.get("kind")
    if kind != rtype.kind:
        raise ValidationError("kind", f"must be {rtype.kind!r} under {rtype.prefix}, not {kind!r}")
    meta = value.get("metadata")
    if not isinstance(meta, dict):
        raise ValidationError("metadata", "field is required (a map with at least a name)")
    parts = key[len(RESOURCE_ROOT):].split("/")
    if meta.get("name") != parts[-1]:
        raise ValidationError("metadata.name", f"{meta.get('name')!r} does not match the key's name {parts[-1]!r}")
    if rtype.namespaced and meta.get("namespace") != parts[1]:
        raise ValidationError("metadata.namespace",
                              f"{meta.get('namespace')!r} does not match the key's namespace {parts[1]!r}")
    if isinstance(kind, str) and fast_accepts(kind, value):
        return  # the model would accept it: see fastpath
    from libcalico.resources.base import kind_for_plural, parse_resource

    if kind_for_plural(parts[0]) is not None:
        parse_resource(value)
    elif value.get("apiVersion") != "projectcalico.org/v3":
        raise ValidationError("apiVersion", f"must be 'projectcalico.org/v3', not {value.get('apiVersion')!r}")


def _check_block(key: str, value: dict[str, Any]) -> None:
    wanted = key.rsplit("/", 1)[1].replace("-", "/", 1)
    cidr = value.get("cidr")
    try:
        ok = isinstance(cidr, str) and ipaddress.ip_network(cidr) == ipaddress.ip_network(wanted)
    except ValueError:
        ok = False
    if not ok:
        raise ValidationError("cidr", f"{cidr!r} does not match the block key's CIDR {wanted!r}")
    allocations = value.get("allocations")
    if allocations is not None and not (
        isinstance(allocations, list) and all(a is None or type(a) is int for a in allocations)
    ):
        raise ValidationError("allocations", "must be a list of attribute indexes or nulls")
    unallocated = value.get("unallocated")
    if unallocated is not None and not (isinstance(unallocated, list) and all(type(u) is int for u in unallocated)):
        raise ValidationError("unallocated", "must be a list of ordinals")
    attributes = value.get("attributes")
    if attributes is not None and not (isinstance(attributes, list) and all(isinstance(a, dict) for a in attributes)):
        raise ValidationError("attributes", "must be a list of maps")


def _check_affinity(value: dict[str, Any]) -> None:
    state = value.get("state", "confirmed")
    if state not in _AFFINITY_STATES:
        raise ValidationError("state", f"{state!r} is not one of {', '.join(_AFFINITY_STATES)}")


class ValidationFilter:
    """Decides which values pass; logs each rejected key/revision once and remembers no more than one per key.

    ``skip_kinds``: resource kinds passed without any check, because the consumer validates them itself.
    """

    def __init__(self, syncer: str, skip_kinds: frozenset[str] = frozenset()) -> None:
        self.syncer = syncer
        self.skip_kinds = skip_kinds
        self._logged: dict[str, int] = {}
        self.rejected = 0

    def accepts(self, rtype: ResourceType, key: str, value: Any, revision: int) -> bool:
        """True when the value is valid; otherwise log (once per key/revision) and return False."""
        kind = rtype.kind
        if kind is not None:
            if kind in self.skip_kinds:
                return True
            if fast_accepts(kind, value):
                # The model would accept the value: what is left is _check_resource's key check.
                meta = value["metadata"]
                parent, _, name = key.rpartition("/")
                if meta["name"] == name and (
                        not rtype.namespaced or meta.get("namespace") == parent.rpartition("/")[2]):
                    if self._logged:
                        self._logged.pop(key, None)
                    return True
        try:
            check_value(rtype, key, value)
        except ValidationError as exc:
            self._reject(key, revision, str(exc))
            return False
        except (ValueError, TypeError) as exc:  # a model's own check failing in an unexpected way
            self._reject(key, revision, f"{type(exc).__name__}: {exc}")
            return False
        self._logged.pop(key, None)
        return True

    def forget(self, key: str) -> None:
        """The key is gone: a later bad value at the same revision is logged again."""
        self._logged.pop(key, None)

    def _reject(self, key: str, revision: int, reason: str) -> None:
        self.rejected += 1
        if self._logged.get(key) == revision:
            return
        self._logged[key] = revision
        log.warning("syncer invalid value", syncer=self.syncer, key=key, revision=revision,
                    reason=reason, treated_as="deleted")
