"""Splits selector text into tokens, exactly as Calico's tokenizer does.

Whitespace is only space and tab. A label is a run of ``[A-Za-z0-9_./-]``.
Right after a label the tokenizer looks for a word operator instead of
another label: ``contains``, ``starts with``, ``ends with``, ``not in`` and
``in`` (prefix matches, so ``startswith`` / ``endswith`` / ``notin`` work).
String literals run from a quote to the next identical quote; there are no
escapes. Every token carries its 0-based character position.
"""

from __future__ import annotations

import enum
import re
from typing import NamedTuple

from libcalico.selector.errors import SelectorError

_WHITESPACE = " \t"
_IDENT = re.compile(r"[A-Za-z0-9_./\-]+")
_WORD = re.compile(r"[^ \t(){},'\"=!&|]+")


class Kind(enum.Enum):
    """Token kinds."""

    LABEL = "label"
    STRING = "string"
    LBRACE = "'{'"
    RBRACE = "'}'"
    COMMA = "','"
    EQ = "'=='"
    NE = "'!='"
    IN = "'in'"
    NOT_IN = "'not in'"
    CONTAINS = "'contains'"
    STARTS_WITH = "'starts with'"
    ENDS_WITH = "'ends with'"
    NOT = "'!'"
    ALL = "all()"
    GLOBAL = "global()"
    HAS = "has()"
    LPAREN = "'('"
    RPAREN = "')'"
    AND = "'&&'"
    OR = "'||'"
    EOF = "end of selector"


class Token(NamedTuple):
    """One token: its kind, its value (label name or string), where it starts and its source text."""

    kind: Kind
    value: str
    pos: int
    text: str


_SINGLE = {
    "(": Kind.LPAREN,
    ")": Kind.RPAREN,
    "{": Kind.LBRACE,
    "}": Kind.RBRACE,
    ",": Kind.COMMA,
}
_DOUBLE = {"=": Kind.EQ, "&": Kind.AND, "|": Kind.OR}


def _skip_ws(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i] in _WHITESPACE:
        i += 1
    return i


def _word_at(text: str, i: int) -> str:
    m = _WORD.match(text, i)
    return m.group(0) if m else text[i : i + 1]


def tokenize(text: str) -> list[Token]:
    """Return the tokens of ``text``, ending with an EOF token; raise SelectorError on bad input."""
    tokens: list[Token] = []
    n = len(text)
    i = 0
    while True:
        i = _skip_ws(text, i)
        if i >= n:
            tokens.append(Token(Kind.EOF, "", n, ""))
            return tokens
        c = text[i]
        last = tokens[-1].kind if tokens else None
        if c in _SINGLE:
            tokens.append(Token(_SINGLE[c], c, i, c))
            i += 1
        elif c == '"' or c == "'":
            end = text.find(c, i + 1)
            if end < 0:
                raise SelectorError(text, i, "unterminated string literal", text[i:])
            tokens.append(Token(Kind.STRING, text[i + 1 : end], i, text[i : end + 1]))
            i = end + 1
        elif c in _DOUBLE:
            if text.startswith(c + c, i):
                tokens.append(Token(_DOUBLE[c], c + c, i, c + c))
                i += 2
            else:
                raise SelectorError(text, i, f"expected '{c}{c}'", c)
        elif c == "!":
            if text.startswith("!=", i):
                tokens.append(Token(Kind.NE, "!=", i, "!="))
                i += 2
            else:
                tokens.append(Token(Kind.NOT, "!", i, "!"))
                i += 1
        elif last is Kind.LABEL:
            i = _operator_word(text, i, tokens)
        elif text.startswith("has(", i):
            i = _has(text, i, tokens)
        elif text.startswith("all(", i) or text.startswith("global(", i):
            name = "all" if c == "a" else "global"
            j = _skip_ws(text, i + len(name) + 1)
            if not text.startswith(")", j):
                raise SelectorError(
                    text, j, f"expected ')' after '{name}('", _word_at(text, j) if j < n else ""
                )
            kind = Kind.ALL if name == "all" else Kind.GLOBAL
            tokens.append(Token(kind, "", i, text[i : j + 1]))
            i = j + 1
        else:
            m = _IDENT.match(text, i)
            if m is None:
                raise SelectorError(text, i, "unexpected character", c)
            tokens.append(Token(Kind.LABEL, m.group(0), i, m.group(0)))
            i = m.end()


def _operator_word(text: str, i: int, tokens: list[Token]) -> int:
    """Read the word operator that must follow a label; return the new position."""
    label = tokens[-1].value
    if text.startswith("contains", i):
        tokens.append(Token(Kind.CONTAINS, "contains", i, "contains"))
        return i + len("contains")
    for first, second, kind in (
        ("starts", "with", Kind.STARTS_WITH),
        ("ends", "with", Kind.ENDS_WITH),
        ("not", "in", Kind.NOT_IN),
    ):
        if text.startswith(first, i):
            j = _skip_ws(text, i + len(first))
            if not text.startswith(second, j):
                token = _word_at(text, j) if j < len(text) else ""
                raise SelectorError(text, j, f"expected '{second}' after '{first}'", token)
            tokens.append(Token(kind, f"{first} {second}", i, text[i : j + len(second)]))
            return j + len(second)
    if text.startswith("in", i):
        tokens.append(Token(Kind.IN, "in", i, "in"))
        return i + 2
    raise SelectorError(
        text,
        i,
        f"expected an operator (==, !=, in, not in, contains, starts with, ends with) after label {label!r}",
        _word_at(text, i),
    )


def _has(text: str, i: int, tokens: list[Token]) -> int:
    """Read ``has(label)``; return the new position."""
    j = _skip_ws(text, i + len("has("))
    m = _IDENT.match(text, j)
    if m is None:
        token = _word_at(text, j) if j < len(text) else ""
        raise SelectorError(text, j, "expected a label name in 'has('", token)
    k = _skip_ws(text, m.end())
    if not text.startswith(")", k):
        token = _word_at(text, k) if k < len(text) else ""
        raise SelectorError(text, k, f"expected ')' to close 'has({m.group(0)}'", token)
    tokens.append(Token(Kind.HAS, m.group(0), i, text[i : k + 1]))
    return k + 1
