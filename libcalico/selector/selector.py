"""The parsed selector: evaluation, canonical text and unique id, behind an LRU parse cache."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache

from libcalico.selector.ast import All, Evaluator, Global, Labels, Node, Restrictions, compile_node
from libcalico.selector.parser import parse_tree

PARSE_CACHE_SIZE = 16384


def make_unique_id(prefix: str, content: str) -> str:
    """Return Calico's ``hash.MakeUniqueID``: prefix + ":" + unpadded base64url SHA-224 of "prefix:content"."""
    digest = hashlib.sha224(f"{prefix}:{content}".encode()).digest()
    return prefix + ":" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class Selector:
    """A parsed, immutable selector.

    ``sel.evaluate(labels)`` returns whether the label mapping matches; it is a
    compiled function stored on the instance so that a call costs no tree walk.
    It is compiled on first use: a selector that is only ever answered by the
    label index's set algebra never pays for compilation.
    ``str(sel)`` is Calico's canonical form; two selectors are equal when their
    canonical forms are.
    """

    __slots__ = ("root", "evaluate", "_text", "_uid")

    root: Node
    evaluate: Evaluator

    def __init__(self, root: Node, text: str | None = None) -> None:
        """``text``: the canonical form of ``root`` when the caller composed it from its parts' (it is
        printed from the tree otherwise)."""
        self.root = root
        self._text = str(root) if text is None else text
        self._uid: str | None = None

    def __getattr__(self, name: str) -> Evaluator:
        # Only reached while the ``evaluate`` slot is still empty: compile it now, once.
        if name != "evaluate":
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        evaluate = self.evaluate = compile_node(self.root)
        return evaluate

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Selector({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)

    def unique_id(self) -> str:
        """Return Calico's UniqueID of this selector ("s:" + base64url SHA-224, unpadded)."""
        if self._uid is None:
            self._uid = make_unique_id("s", self._text)
        return self._uid

    def label_restrictions(self) -> Restrictions:
        """Return what each label must be for this selector to match (Calico's LabelRestrictions)."""
        return self.root.restrictions()

    @property
    def is_all(self) -> bool:
        """Whether this is ``all()`` (or the empty selector)."""
        return isinstance(self.root, All)

    @property
    def is_global(self) -> bool:
        """Whether this is exactly ``global()``."""
        return isinstance(self.root, Global)

    def matches(self, labels: Labels) -> bool:
        """Return whether ``labels`` match (same as ``evaluate``)."""
        return self.evaluate(labels)


@lru_cache(maxsize=PARSE_CACHE_SIZE)
def _parse_cached(text: str) -> Selector:
    return Selector(parse_tree(text))


def parse(text: str) -> Selector:
    """Parse a selector; raise SelectorError (a ValueError) saying where the text is malformed."""
    if not isinstance(text, str):
        raise TypeError(f"selector must be a str, not {type(text).__name__}")
    return _parse_cached(text)


def parse_cache_info() -> object:
    """Return the parse cache's hit/miss statistics."""
    return _parse_cached.cache_info()


def clear_parse_cache() -> None:
    """Empty the parse cache (benchmarks use it to measure cold parsing)."""
    _parse_cached.cache_clear()
