"""Values in and out of the sqlite datastore: compact JSON text in, exactly the json module's reading out.

Values are written by the json module (compact, ASCII, no NaN) and read back as bytes decoded
with orjson (several times faster than the json module), falling back to the json module
wherever the two could differ (integers beyond 64 bits, NaN, anything orjson refuses: see
:mod:`libcalico.datastore.jsonexact`), so the values and the errors are exactly the json
module's. A stored value that is not a JSON map raises :class:`DatastoreFileError` naming
the key.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from libcalico.datastore.backend import JSONMap
from libcalico.datastore.jsonexact import LONG_DIGIT_RUN, ZERO_DIGITS
from libcalico.datastore.sqlite_file import DatastoreFileError
from libcalico.errors import ValidationError

Row = tuple[str, JSONMap, int]  # key, value, revision
Rows = list[Row]


def encode(key: str, value: JSONMap) -> str:
    """The stored text of ``value`` at ``key``; ValidationError when it is not a JSON-serialisable map."""
    if not isinstance(key, str) or not key:
        raise ValidationError("key", f"must be a non-empty string, not {key!r}")
    if not isinstance(value, dict):
        raise ValidationError("value", f"{key}: must be a JSON map, not {type(value).__name__}")
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValidationError("value", f"{key}: not JSON-serialisable: {exc}") from None


def _decode_slow(path: str, key: str, data: bytes | str) -> JSONMap:
    """The json module's reading of a value; DatastoreFileError (with its message) when it is not a JSON map."""
    try:
        value = json.loads(data if isinstance(data, str) else data.decode())
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DatastoreFileError(f"{path}: the value at {key} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise DatastoreFileError(f"{path}: the value at {key} is not a JSON map but {type(value).__name__}")
    return value


def decode(path: str, key: str, data: bytes | str) -> JSONMap:
    """One stored value, as the json module reads it; raise DatastoreFileError when it is not a JSON map."""
    return decode_rows(path, [(key, data, 0)])[0][1]


def decode_rows(path: str, rows: list[tuple[str, bytes | str, int]]) -> Rows:
    """Decode ``(key, stored value, revision)`` rows: orjson for bytes it reads as the json module would."""
    loads, zero, run, decode_error = orjson.loads, ZERO_DIGITS, LONG_DIGIT_RUN, orjson.JSONDecodeError
    out: Rows = []
    append = out.append
    for key, data, revision in rows:
        value = None
        if data.__class__ is bytes and data.translate(zero).find(run) < 0:
            try:
                value = loads(data)
            except decode_error:
                value = None
        if value.__class__ is not dict:
            value = _decode_slow(path, key, data)
        append((key, value, revision))
    return out


def prefix_clause(prefix: str) -> tuple[str, tuple[Any, ...]]:
    """SQL (and parameters) selecting keys that start with ``prefix``, using the key index when possible."""
    if not prefix:
        return "1", ()
    last = ord(prefix[-1])
    if last < 0xD7FF or 0xE000 <= last < 0x10FFFF:
        return "key >= ? AND key < ?", (prefix, prefix[:-1] + chr(last + 1))
    return "substr(key, 1, ?) = ?", (len(prefix), prefix)
