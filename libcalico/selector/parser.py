"""Recursive-descent parser for Calico selectors, with Calico's grammar and tree shapes.

    or-expr   := and-expr ( "||" and-expr )*
    and-expr  := operation ( "&&" operation )*
    operation := "!"* ( has(k) | all() | global() | "(" or-expr ")"
                      | k ("=="|"!="|contains|starts with|ends with) STRING
                      | k ("in"|"not in") "{" [ STRING ("," STRING)* [","] ] "}" )

Leading ``!`` collapse to one negation or none, a single operand is not
wrapped in an ``&&`` / ``||`` node, and parentheses add no node — all as
Calico does, so canonical forms and unique ids agree with Calico's.
"""

from __future__ import annotations

import re

from libcalico.selector.ast import All, And, Compare, Global, Has, InSet, Node, Not, Or
from libcalico.selector.errors import SelectorError
from libcalico.selector.tokenizer import Kind, Token, tokenize

# Python recursion bounds how deeply parentheses may nest; Calico has no such
# limit, but no real selector comes near it.
MAX_DEPTH = 100

_COMPARE_OPS = {
    Kind.EQ: "==",
    Kind.NE: "!=",
    Kind.CONTAINS: "contains",
    Kind.STARTS_WITH: "starts with",
    Kind.ENDS_WITH: "ends with",
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def error(self, token: Token, reason: str) -> SelectorError:
        return SelectorError(self.text, token.pos, reason, token.text)

    def parse(self) -> Node:
        if self.tokens[0].kind is Kind.EOF:
            return All()
        node = self.or_expr(0)
        tok = self.tokens[self.i]
        if tok.kind is not Kind.EOF:
            raise self.error(tok, "unexpected content after the end of the expression")
        return node

    def or_expr(self, depth: int) -> Node:
        operands = [self.and_expr(depth)]
        while self.tokens[self.i].kind is Kind.OR:
            self.i += 1
            operands.append(self.and_expr(depth))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self, depth: int) -> Node:
        operands = [self.operation(depth)]
        while self.tokens[self.i].kind is Kind.AND:
            self.i += 1
            operands.append(self.operation(depth))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def operation(self, depth: int) -> Node:
        tokens = self.tokens
        negated = False
        while tokens[self.i].kind is Kind.NOT:
            negated = not negated
            self.i += 1
        tok = tokens[self.i]
        kind = tok.kind
        node: Node
        if kind is Kind.HAS:
            node = Has(tok.value)
            self.i += 1
        elif kind is Kind.ALL:
            node = All()
            self.i += 1
        elif kind is Kind.GLOBAL:
            node = Global()
            self.i += 1
        elif kind is Kind.LABEL:
            node = self.label_operation(tok)
        elif kind is Kind.LPAREN:
            if depth >= MAX_DEPTH:
                raise self.error(tok, f"parentheses nested more than {MAX_DEPTH} deep")
            self.i += 1
            node = self.or_expr(depth + 1)
            close = tokens[self.i]
            if close.kind is not Kind.RPAREN:
                raise self.error(
                    close, f"expected ')' to close the '(' opened at position {tok.pos}"
                )
            self.i += 1
        elif kind is Kind.EOF:
            raise self.error(tok, "unexpected end of selector, expected an expression")
        else:
            raise self.error(tok, "expected a label, has(), all(), global(), '!' or '('")
        return Not(node) if negated else node

    def label_operation(self, label: Token) -> Node:
        tokens = self.tokens
        op = tokens[self.i + 1]
        if op.kind in _COMPARE_OPS:
            literal = tokens[self.i + 2]
            if literal.kind is not Kind.STRING:
                raise self.error(literal, f"expected a quoted string after {op.kind.value}")
            self.i += 3
            return Compare(label.value, _COMPARE_OPS[op.kind], literal.value)
        if op.kind is Kind.IN or op.kind is Kind.NOT_IN:
            brace = tokens[self.i + 2]
            if brace.kind is not Kind.LBRACE:
                raise self.error(brace, f"expected a set literal '{{...}}' after {op.kind.value}")
            self.i += 3
            values: set[str] = set()
            while tokens[self.i].kind is Kind.STRING:
                values.add(tokens[self.i].value)
                self.i += 1
                if tokens[self.i].kind is not Kind.COMMA:
                    break
                self.i += 1
            close = tokens[self.i]
            if close.kind is not Kind.RBRACE:
                raise self.error(close, "expected a quoted string, ',' or '}' in set literal")
            self.i += 1
            return InSet(label.value, tuple(sorted(values)), op.kind is Kind.NOT_IN)
        raise self.error(
            op,
            f"expected an operator (==, !=, in, not in, contains, starts with, ends with) after label {label.value!r}",
        )


def parse_tree(text: str) -> Node:
    """Parse ``text`` into a syntax tree; raise SelectorError saying where it is malformed."""
    simple = parse_simple(text)
    return simple if simple is not None else _Parser(text).parse()


# The shapes most selectors have, read with regular expressions instead of the tokenizer: one or
# more ``label == "v"``, ``label != "v"`` or ``label in {"v", ...}`` joined by ``&&``. Anything else,
# or anything these do not match exactly, goes to the full parser (and its error messages).
_STRING = r"""(?:"[^"]*"|'[^']*')"""
_SIMPLE = re.compile(
    rf"""[ \t]*([A-Za-z0-9_./\-]+)[ \t]*(?:(==|!=)[ \t]*("[^"]*"|'[^']*')"""
    rf"""|(?<=[ \t])in[ \t]*\{{((?:[ \t]*{_STRING}[ \t]*,)*[ \t]*(?:{_STRING}[ \t]*)?)\}})[ \t]*"""
)
_SET_STRINGS = re.compile(_STRING)


def parse_simple(text: str) -> Node | None:
    """The tree of a selector of the common shapes above, exactly as the parser builds it; None for others."""
    operands: list[Node] = []
    pos, end = 0, len(text)
    match = _SIMPLE.match
    while True:
        m = match(text, pos)
        if m is None:
            return None
        key, op, literal, members = m.groups()
        if op is not None:
            operands.append(Compare(key, "==" if op == "==" else "!=", literal[1:-1]))
        else:
            values = {v[1:-1] for v in _SET_STRINGS.findall(members)}
            operands.append(InSet(key, tuple(sorted(values)), False))
        pos = m.end()
        if pos == end:
            return operands[0] if len(operands) == 1 else And(tuple(operands))
        if not text.startswith("&&", pos):
            return None
        pos += 2
