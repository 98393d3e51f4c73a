"""How Calico's entries look in etcd: key checks, JSON values, key ranges and lease TTLs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import structlog

from libcalico.collector import collector_paused
from libcalico.datastore.backend import KV, JSONMap
from libcalico.datastore.jsonexact import orjson_exact
from libcalico.errors import ValidationError

log = structlog.get_logger(__name__)


def range_end(prefix: bytes) -> bytes:
    """The first key after every key that starts with ``prefix`` (``\\0`` = to the end)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return b"\x00"
    return stripped[:-1] + bytes([stripped[-1] + 1])


def check_key(key: str) -> bytes:
    """The key as etcd stores it; raise ValidationError unless it is an absolute entry path."""
    if not isinstance(key, str) or not key.startswith("/") or key.endswith("/"):
        raise ValidationError("key", f"{key!r}: must be an absolute path to an entry")
    return key.encode()


def encode_value(key: str, value: JSONMap) -> bytes:
    """The stored form of a value; raise ValidationError if it is not a JSON object."""
    check_key(key)
    if not isinstance(value, Mapping):
        raise ValidationError("value", f"{key}: must be a JSON object, not {type(value).__name__}")
    try:
        return json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        ).encode()
    except (TypeError, ValueError) as exc:
        raise ValidationError("value", f"{key}: not representable as JSON: {exc}") from exc


def load_json(data: bytes) -> Any:
    """Parse JSON exactly as the json module would, through orjson when that gives the same result."""
    if orjson_exact(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # the json module accepts a little more (NaN, lone surrogates, a BOM): ask it
    try:
        return json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


class RejectLog:
    """Remembers which key/revision was already reported as not a JSON object, so each is logged once."""

    LIMIT = 100_000

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def report(self, key: str, revision: int, size: int) -> None:
        """Log a value that is not a JSON object, unless this key/revision was already logged."""
        if self._seen.get(key) == revision:
            return
        if len(self._seen) >= self.LIMIT:
            self._seen.clear()
        self._seen[key] = revision
        log.warning("etcd value not a json object", key=key, revision=revision, size=size,
                    treated_as="deleted")


def decode_value(key: str, data: bytes, revision: int = 0, rejects: RejectLog | None = None) -> JSONMap | None:
    """The JSON object stored at ``key``, or None (and a warning, once per key/revision) if it is not one."""
    value = load_json(data)
    if value.__class__ is not dict:
        if rejects is None:
            log.warning("etcd value not a json object", key=key, revision=revision, size=len(data),
                        treated_as="deleted")
        else:
            rejects.report(key, revision, len(data))
        return None
    return value


def decode_page(kvs: Iterable[Any], rejects: RejectLog | None = None) -> list[KV]:
    """Decode one page of Range results, skipping (and logging once) values that are not JSON objects.

    The cyclic garbage collector is paused while the page is decoded (no await
    happens meanwhile): decoding allocates thousands of containers that all
    survive, and collecting them generation by generation costs more than the
    decoding itself.
    """
    with collector_paused():
        out: list[KV] = []
        append = out.append
        for kv in kvs:
            data = kv.value
            value = load_json(data)
            if value.__class__ is dict:
                append(KV(kv.key.decode(), value, kv.mod_revision))
            else:
                key = kv.key.decode()
                if rejects is None:
                    log.warning("etcd value not a json object", key=key, revision=kv.mod_revision,
                                size=len(data), treated_as="deleted")
                else:
                    rejects.report(key, kv.mod_revision, len(data))
        return out


def lease_seconds(key: str, ttl: float) -> int:
    """etcd lease TTLs are whole seconds: round up; raise ValidationError for a bad TTL."""
    if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise ValidationError("ttl", f"{key}: must be a positive number of seconds, not {ttl!r}")
    return max(1, math.ceil(ttl))
