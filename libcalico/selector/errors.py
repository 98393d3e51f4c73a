"""The error a malformed selector raises."""

from __future__ import annotations

from libcalico.errors import CalicoError


class SelectorError(CalicoError, ValueError):
    """A selector could not be parsed.

    ``position`` is the 0-based character offset into ``selector`` where the
    problem was found, ``token`` the offending text there (empty at the end of
    the input) and ``reason`` what was wrong.
    """

    def __init__(self, selector: str, position: int, reason: str, token: str = "") -> None:
        self.selector = selector
        self.position = position
        self.reason = reason
        self.token = token
        found = repr(token) if token else "end of selector"
        super().__init__(
            f"invalid selector {selector!r}: at position {position} (found {found}): {reason}"
        )
