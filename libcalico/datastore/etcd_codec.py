"""How Calico's entries look in etcd: key checks, JSON values, key ranges and lease TTLs."""

from __future__ import annotations

import gc
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import structlog

from libcalico.datastore.backend import KV, JSONMap
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


def decode_value(key: str, data: bytes) -> JSONMap | None:
    """The JSON object stored at ``key``, or None (and a warning) if it is not one."""
    try:
        value = json.loads(data)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        log.warning("etcd value not a json object", key=key, size=len(data))
        return None
    return value


class ListingDecoder:
    """Decodes the values of one listing, sharing equal keys and short strings between them.

    A listing of many similar resources repeats the same field names and label
    values; sharing one string object for each roughly halves the memory the
    decoded listing holds. The memo lives only as long as the listing is decoded.
    """

    SHARED_MAX_LEN = 24

    def __init__(self) -> None:
        memo: dict[str, str] = {}
        share = memo.setdefault
        limit = self.SHARED_MAX_LEN

        def hook(obj: dict[str, Any]) -> dict[str, Any]:
            return {
                share(k, k): (share(v, v) if v.__class__ is str and len(v) < limit else v)
                for k, v in obj.items()
            }

        self._decoder = json.JSONDecoder(object_hook=hook)

    def decode_page(self, kvs: Iterable[Any]) -> list[KV]:
        """Decode one page of Range results, skipping values that are not JSON objects.

        The cyclic garbage collector is paused while the page is decoded (no await
        happens meanwhile): decoding allocates tens of thousands of containers that
        all survive, and collecting them generation by generation costs more than
        the decoding itself.
        """
        paused = gc.isenabled()
        if paused:
            gc.disable()
        try:
            out = []
            for kv in kvs:
                key = kv.key.decode()
                value = self.decode(key, kv.value)
                if value is not None:
                    out.append(KV(key, value, kv.mod_revision))
            return out
        finally:
            if paused:
                gc.enable()

    def decode(self, key: str, data: bytes) -> JSONMap | None:
        """The JSON object stored at ``key``, or None (and a warning) if it is not one."""
        try:
            value = self._decoder.decode(data.decode())
        except ValueError:  # includes UnicodeDecodeError
            value = None
        if not isinstance(value, dict):
            log.warning("etcd value not a json object", key=key, size=len(data))
            return None
        return value


def lease_seconds(key: str, ttl: float) -> int:
    """etcd lease TTLs are whole seconds: round up; raise ValidationError for a bad TTL."""
    if not isinstance(ttl, int | float) or not math.isfinite(ttl) or ttl <= 0:
        raise ValidationError("ttl", f"{key}: must be a positive number of seconds, not {ttl!r}")
    return max(1, math.ceil(ttl))
