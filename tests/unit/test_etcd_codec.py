"""The etcd value codec reads stored JSON exactly as the json module does, big integers included."""

from __future__ import annotations

import json

import pytest

from libcalico.datastore.etcd_codec import load_json


@pytest.mark.parametrize("number", ["-9223372036854775809", "-9223372036854775808", "18446744073709551615",
                                    "18446744073709551616", "123456789012345678901234567890", "1.5e300"])
def test_numbers_at_the_64_bit_edges_keep_the_json_module_reading(number: str) -> None:
    data = f'{{"spec": {{"n": {number}}}}}'.encode()
    got = load_json(data)
    want = json.loads(data)
    assert got == want
    assert type(got["spec"]["n"]) is type(want["spec"]["n"])


def test_json_module_extensions_still_read_and_garbage_is_none() -> None:
    assert load_json(b'{"a": NaN}')["a"] != load_json(b'{"a": NaN}')["a"]  # NaN, as json reads it
    assert load_json(b'{"a": ') is None
