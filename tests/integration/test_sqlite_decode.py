"""How the sqlite datastore reads values back: orjson where it gives the json module's answer, the json module
elsewhere, a clear error naming the key for a value that is not a JSON map; and ``list_rows``."""

from __future__ import annotations

import asyncio
import gc
import json
import sqlite3
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.datastore.sqlite import DatastoreFileError, SqliteBackend, _decode, _decode_rows

K = "/calico/resources/v3/projectcalico.org/globalnetworksets/"


def raw_put(path: str, key: str, text: str | bytes, revision: int = 1000, expires: float | None = None) -> None:
    """Write a row behind the backend's back (as another tool, or a corruption, would)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("INSERT OR REPLACE INTO calico_kv(key, value, revision, expires) VALUES (?, ?, ?, ?)",
                     (key, text, revision, expires))
    finally:
        conn.close()


async def test_list_rows_is_list_without_the_objects(sqlite_backend: SqliteBackend) -> None:
    for n in range(700):  # more than one fetch chunk
        await sqlite_backend.create(f"{K}s{n:04d}", {"kind": "GlobalNetworkSet", "metadata": {"name": f"s{n}"},
                                                     "spec": {"nets": [f"10.{n % 256}.0.0/16"]}})
    rows, revision = await sqlite_backend.list_rows(K)
    listing = await sqlite_backend.list(K)
    assert revision == listing.revision == 700
    assert rows == [(kv.key, kv.value, kv.revision) for kv in listing.items]
    assert [r[0] for r in rows] == sorted(f"{K}s{n:04d}" for n in range(700))
    assert rows[5][1] == {"kind": "GlobalNetworkSet", "metadata": {"name": "s5"}, "spec": {"nets": ["10.5.0.0/16"]}}


@pytest.mark.parametrize("number", [2 ** 64, -(2 ** 63) - 1, 10 ** 30, 2 ** 64 - 1])
async def test_big_integers_stay_exact(sqlite_backend: SqliteBackend, number: int) -> None:
    value = {"spec": {"n": number, "f": 0.1, "s": "x" * 30}}
    await sqlite_backend.create(K + "big", value)
    assert (await sqlite_backend.get(K + "big")).value == value
    assert (await sqlite_backend.list(K)).items[0].value == value
    rows, _ = await sqlite_backend.list_rows(K)
    assert rows[0][1] == value and type(rows[0][1]["spec"]["n"]) is int


async def test_values_only_the_json_module_reads_still_load(sqlite_backend: SqliteBackend) -> None:
    await sqlite_backend.current_revision()  # creates the schema
    raw_put(sqlite_backend.path, K + "nan", '{"a": NaN, "b": "\\ud800"}')
    rows, _ = await sqlite_backend.list_rows(K)
    value = rows[0][1]
    assert value["a"] != value["a"] and value["b"] == "\ud800"
    assert json.dumps((await sqlite_backend.get(K + "nan")).value, allow_nan=True) == '{"a": NaN, "b": "\\ud800"}'


@pytest.mark.parametrize("text, reason", [
    ('{"a": ', "is not valid JSON: Expecting value: line 1 column 7 (char 6)"),
    ("[1, 2]", "is not a JSON map but list"),
    ("7", "is not a JSON map but int"),
    (b'{"a": "\xff"}', "is not valid JSON: 'utf-8' codec can't decode byte 0xff"),
])
async def test_a_corrupt_value_is_an_error_naming_the_key(sqlite_backend: SqliteBackend, text: str | bytes,
                                                          reason: str) -> None:
    await sqlite_backend.create(K + "good", {"a": 1})
    raw_put(sqlite_backend.path, K + "bad", text)
    expected = f"{sqlite_backend.path}: the value at {K}bad {reason}"
    for read in (sqlite_backend.list_rows(K), sqlite_backend.list(K), sqlite_backend.get(K + "bad")):
        with pytest.raises(DatastoreFileError) as info:
            await read
        assert str(info.value).startswith(expected)
    with pytest.raises(DatastoreFileError, match="the value at .*bad"):
        await sqlite_backend.delete(K + "bad")  # nothing half-done: the entry is still there
    assert (await sqlite_backend.get(K + "good")).value == {"a": 1}
    assert gc.isenabled()
    await sqlite_backend.update(K + "bad", {"a": 2})  # a corrupt entry is repaired by writing it
    assert [kv.value for kv in (await sqlite_backend.list(K)).items] == [{"a": 2}, {"a": 1}]


async def test_list_rows_skips_expired_entries_and_sweeps_them(sqlite_backend: SqliteBackend) -> None:
    await sqlite_backend.create(K + "live", {"a": 1})
    await sqlite_backend.create(K + "brief", {"a": 2}, ttl=0.05)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rows, _ = await sqlite_backend.list_rows(K)
        if [r[0] for r in rows] == [K + "live"]:
            break
        await asyncio.sleep(0.01)
    assert [r[0] for r in rows] == [K + "live"]
    while time.monotonic() < deadline:  # the read kicked a sweep: the expired row goes, with a DELETE event
        conn = sqlite3.connect(sqlite_backend.path)
        try:
            left = conn.execute("SELECT count(*) FROM calico_kv WHERE key = ?", (K + "brief",)).fetchone()[0]
        finally:
            conn.close()
        if not left:
            break
        await asyncio.sleep(0.01)
    assert not left


async def test_listing_leaves_the_collector_as_it_found_it(sqlite_backend: SqliteBackend) -> None:
    await sqlite_backend.create(K + "a", {"a": 1})
    assert gc.isenabled()
    await sqlite_backend.list_rows(K)
    assert gc.isenabled()
    gc.disable()
    try:
        await sqlite_backend.list_rows(K)
        assert not gc.isenabled()
    finally:
        gc.enable()


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=5), JSON, max_size=5), st.booleans())
def test_values_read_back_exactly_as_the_json_module_reads_them(value: dict[str, object], ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":"))
    decoded = _decode("db", "/k", text.encode())
    assert json.dumps(decoded) == json.dumps(json.loads(text))  # same types too: 1 and 1.0 print differently
    [(key, row_value, revision)] = _decode_rows("db", [("/k", text.encode(), 3)])
    assert (key, revision) == ("/k", 3) and json.dumps(row_value) == json.dumps(decoded)
