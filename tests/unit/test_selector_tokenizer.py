"""The selector tokenizer, with the vectors from Calico's tokenizer tests."""

from __future__ import annotations

import pytest

from libcalico.selector.tokenizer import Kind, tokenize

# Calico's tokenizer_test.go tokenTests: (input, [(kind, value)]).
TOKENS: list[tuple[str, list[tuple[Kind, str]]]] = [
    ('a=="b"', [(Kind.LABEL, "a"), (Kind.EQ, "=="), (Kind.STRING, "b")]),
    ('label == "value"', [(Kind.LABEL, "label"), (Kind.EQ, "=="), (Kind.STRING, "value")]),
    (
        'contains contains "contains"',
        [(Kind.LABEL, "contains"), (Kind.CONTAINS, "contains"), (Kind.STRING, "contains")],
    ),
    (
        "contains contains 'contains'",
        [(Kind.LABEL, "contains"), (Kind.CONTAINS, "contains"), (Kind.STRING, "contains")],
    ),
    (
        'label contains"value"',
        [(Kind.LABEL, "label"), (Kind.CONTAINS, "contains"), (Kind.STRING, "value")],
    ),
    (
        'label startswith "value"',
        [(Kind.LABEL, "label"), (Kind.STARTS_WITH, "starts with"), (Kind.STRING, "value")],
    ),
    (
        'label endswith "value"',
        [(Kind.LABEL, "label"), (Kind.ENDS_WITH, "ends with"), (Kind.STRING, "value")],
    ),
    (
        'startswith starts with "value"',
        [(Kind.LABEL, "startswith"), (Kind.STARTS_WITH, "starts with"), (Kind.STRING, "value")],
    ),
    (
        'endswith ends with "value"',
        [(Kind.LABEL, "endswith"), (Kind.ENDS_WITH, "ends with"), (Kind.STRING, "value")],
    ),
    (
        'label starts  with "value"',
        [(Kind.LABEL, "label"), (Kind.STARTS_WITH, "starts with"), (Kind.STRING, "value")],
    ),
    (
        'label ends  with "value"',
        [(Kind.LABEL, "label"), (Kind.ENDS_WITH, "ends with"), (Kind.STRING, "value")],
    ),
    (
        'a not in "bar" && !has(foo) || b in c',
        [
            (Kind.LABEL, "a"),
            (Kind.NOT_IN, "not in"),
            (Kind.STRING, "bar"),
            (Kind.AND, "&&"),
            (Kind.NOT, "!"),
            (Kind.HAS, "foo"),
            (Kind.OR, "||"),
            (Kind.LABEL, "b"),
            (Kind.IN, "in"),
            (Kind.LABEL, "c"),
        ],
    ),
    ("has(calico/k8s_ns)", [(Kind.HAS, "calico/k8s_ns")]),
    ("has(calico/k8s_NS-.1/role)", [(Kind.HAS, "calico/k8s_NS-.1/role")]),
    (
        'calico/k8s_ns == "kube-system" && k8s-app == "kube-dns"',
        [
            (Kind.LABEL, "calico/k8s_ns"),
            (Kind.EQ, "=="),
            (Kind.STRING, "kube-system"),
            (Kind.AND, "&&"),
            (Kind.LABEL, "k8s-app"),
            (Kind.EQ, "=="),
            (Kind.STRING, "kube-dns"),
        ],
    ),
    (
        'a  not  in  "bar"  &&  ! has( foo )  ||  b  in  c ',
        [
            (Kind.LABEL, "a"),
            (Kind.NOT_IN, "not in"),
            (Kind.STRING, "bar"),
            (Kind.AND, "&&"),
            (Kind.NOT, "!"),
            (Kind.HAS, "foo"),
            (Kind.OR, "||"),
            (Kind.LABEL, "b"),
            (Kind.IN, "in"),
            (Kind.LABEL, "c"),
        ],
    ),
    (
        'a notin"bar"&&!has(foo)||b in"c"',
        [
            (Kind.LABEL, "a"),
            (Kind.NOT_IN, "not in"),
            (Kind.STRING, "bar"),
            (Kind.AND, "&&"),
            (Kind.NOT, "!"),
            (Kind.HAS, "foo"),
            (Kind.OR, "||"),
            (Kind.LABEL, "b"),
            (Kind.IN, "in"),
            (Kind.STRING, "c"),
        ],
    ),
    (
        "a not in {}",
        [(Kind.LABEL, "a"), (Kind.NOT_IN, "not in"), (Kind.LBRACE, "{"), (Kind.RBRACE, "}")],
    ),
    (
        'a not in {"a","B"}',
        [
            (Kind.LABEL, "a"),
            (Kind.NOT_IN, "not in"),
            (Kind.LBRACE, "{"),
            (Kind.STRING, "a"),
            (Kind.COMMA, ","),
            (Kind.STRING, "B"),
            (Kind.RBRACE, "}"),
        ],
    ),
    ("global()", [(Kind.GLOBAL, "")]),
    ("all()", [(Kind.ALL, "")]),
]


@pytest.mark.parametrize(("text", "expected"), TOKENS)
def test_tokenizer(text: str, expected: list[tuple[Kind, str]]) -> None:
    tokens = tokenize(text)
    assert [(t.kind, t.value) for t in tokens] == [*expected, (Kind.EOF, "")]
    for tok in tokens[:-1]:
        assert text[tok.pos : tok.pos + len(tok.text)] == tok.text
