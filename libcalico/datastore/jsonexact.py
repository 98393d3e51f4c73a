"""Reading stored JSON through orjson only where it gives exactly what the json module gives.

orjson turns integers beyond 64 bits into floats where the json module keeps them exact. Such a
number is a run of at least 19 digits (-9223372036854775809 has 19), found cheaply by mapping
every digit to "0"; a longer run anywhere (in a string too) only means the json module reads that
value. The json module also accepts a little more than orjson (NaN, lone surrogates, a BOM).
"""

from __future__ import annotations

ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
LONG_DIGIT_RUN = b"0" * 19


def orjson_exact(data: bytes) -> bool:
    """Whether orjson's reading of ``data`` (if it reads it at all) equals the json module's."""
    return data.translate(ZERO_DIGITS).find(LONG_DIGIT_RUN) < 0
