"""CNI errors: the spec's well-known codes (0-99) and Calico-py's own (100+), with ``msg`` and ``details``."""

from __future__ import annotations

INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_NETWORK_CONFIG = 7
TRY_AGAIN_LATER = 11
PLUGIN_NOT_AVAILABLE = 50
PLUGIN_NOT_AVAILABLE_LIMITED = 51

# Calico-py's plugin-specific codes.
INTERNAL = 100
ADDRESSES_EXHAUSTED = 101
DATAPLANE_FAILURE = 102
CHECK_FAILED = 103
DATASTORE_FAILURE = 104


class CniError(Exception):
    """A failure reported to the runtime as the spec's error JSON on stdout and a non-zero exit status."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}: {details}" if details else msg)
        self.code = code
        self.msg = msg
        self.details = details
