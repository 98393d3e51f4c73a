"""Selector parsing, evaluation, canonical form and unique ids, with vectors from Calico's own tests."""

from __future__ import annotations

import pytest

from libcalico.selector import Selector, SelectorError, make_unique_id, parse
from libcalico.selector.ast import LabelRestriction

# (selector, label sets that match, label sets that do not) -- Calico's parser_test.go selectorTests.
MATCH_TABLE: list[tuple[str, list[dict[str, str]], list[dict[str, str]]]] = [
    ('a == "b"', [{"a": "b"}, {"a": "b", "c": "d"}], [{}, {"a": "c"}, {"c": "d"}]),
    (
        'a == "b" && c == "d"',
        [{"a": "b", "c": "d"}],
        [{}, {"a": "b", "c": "e"}, {"a": "c", "c": "d"}, {"c": "d"}, {"a": "b"}],
    ),
    (
        'a == "b" || c == "d"',
        [{"a": "b", "c": "d"}, {"a": "b"}, {"c": "d"}],
        [{}, {"a": "e", "c": "e"}, {"c": "e"}, {"a": "e"}],
    ),
    ('a in {"\'", \'"\', "c"}', [{"a": "c"}, {"a": '"'}, {"a": "'"}], [{}, {"a": "e"}]),
    ('a not in {"\'", \'"\', "c"}', [{}, {"a": "e"}], [{"a": "c"}, {"a": '"'}, {"a": "'"}]),
    ("a == 'a'", [{"a": "a"}], [{"a": "b"}, {}]),
    ('a == "a"', [{"a": "a"}], []),
    ('a != "b"', [{"a": "a"}], []),
    ('a != "a"', [{}], [{"a": "a"}]),
    ("a != 'a'", [], [{"a": "a"}]),
    (
        'a contains "a"',
        [{"a": "a"}, {"a": "bab"}, {"a": "aaa", "b": "c"}],
        [{}, {"a": "b"}, {"b": "aaa"}],
    ),
    (
        'a starts with "a"',
        [{"a": "a"}, {"a": "abb"}, {"a": "aaa", "b": "c"}],
        [{}, {"a": "b"}, {"a": "baa"}, {"b": "aaa"}],
    ),
    (
        'a ends with "a"',
        [{"a": "a"}, {"a": "bba"}, {"a": "aaa", "b": "c"}],
        [{}, {"a": "b"}, {"a": "aab"}, {"b": "aaa"}],
    ),
    ('a in {"a"}', [{"a": "a"}], [{"a": "b"}]),
    ('!a in {"a"}', [{"a": "b"}], []),
    ('a in {"a", "b"}', [{"a": "a"}, {"a": "b"}], [{"a": "c"}]),
    ('a not in {"d", "e"}', [{"a": "a"}], []),
    ('a not in {"a"}', [], [{"a": "a"}]),
    ("has(a)", [{"a": "b"}], []),
    ("has(b)", [], [{"a": "b"}]),
    ("!has(a)", [{"b": "b"}], [{"a": "b"}]),
    ("!!has(b)", [], [{"a": "b"}]),
    ("! has(a)", [], [{"a": "b"}]),
    ("!!! has(a)", [], [{"a": "b"}]),
    ("!!!has(a)", [], [{"a": "b"}]),
    ("!! ! has(a)", [], [{"a": "b"}]),
    ("! !!has(a)", [], [{"a": "b"}]),
    ("", [{}, {"a": "b"}], []),
    (" ", [{}], []),
    ("all()", [{}], []),
    (" all()", [{}, {"a": "b"}], []),
    ("global()", [{}], []),
    (" global()", [{}, {"a": "b"}], []),
    ("a == 'a1' && b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a == 'a1' && b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("a != 'a1' && !b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("!a == 'a1' && b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("has(a) && !has(b)", [{"a": "a"}], []),
    ("!has(b) && has(a)", [{"a": "a"}], []),
    ("!(!has(a) || has(b))", [{"a": "a"}], []),
    ("!(has(b) || !has(a))", [{"a": "a"}], []),
    ("a == 'a1' || b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a == 'a1' || b != 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a != 'a1' || b == 'b1'", [{"a": "a1", "b": "b1"}], []),
    ("a != 'a1' || b != 'b1'", [], [{"a": "a1", "b": "b1"}]),
    ("! a == 'a1' || ! b == 'b1'", [], [{"a": "a1", "b": "b1"}]),
    # Ours: prefixed keys, precedence, empty strings and empty sets.
    (
        'projectcalico.org/orchestrator == "k8s" && projectcalico.org/namespace in {"a", "b"}',
        [{"projectcalico.org/orchestrator": "k8s", "projectcalico.org/namespace": "b"}],
        [{"projectcalico.org/orchestrator": "k8s"}, {"projectcalico.org/namespace": "a"}],
    ),
    (
        "a == 'x' || b == 'y' && c == 'z'",
        [{"a": "x"}, {"b": "y", "c": "z"}],
        [{"b": "y"}, {"c": "z"}],
    ),
    ("(a == 'x' || b == 'y') && c == 'z'", [{"a": "x", "c": "z"}], [{"a": "x"}, {"b": "y"}]),
    ("a == ''", [{"a": ""}], [{}, {"a": "x"}]),
    ("a != ''", [{}, {"a": "x"}], [{"a": ""}]),
    ("a contains ''", [{"a": ""}, {"a": "x"}], [{}]),
    ("a starts with ''", [{"a": ""}], [{}]),
    ("a ends with ''", [{"a": "q"}], [{}]),
    ("a in {}", [], [{}, {"a": ""}]),
    ("a not in {}", [{}, {"a": ""}], []),
    ('a in {"x",}', [{"a": "x"}], [{"a": ""}]),
    ("a notin {'x'}", [{"a": "y"}, {}], [{"a": "x"}]),
    (
        "k8s-app starts with 'kube-' && tier ends with 'end' && name contains 'api'",
        [{"k8s-app": "kube-dns", "tier": "backend", "name": "myapi1"}],
        [
            {"k8s-app": "kube-dns", "tier": "backend", "name": "web"},
            {"k8s-app": "dns", "tier": "end", "name": "api"},
        ],
    ),
    ("!(a == 'x')", [{}, {"a": "y"}], [{"a": "x"}]),
    ("!(a in {'x'} && has(b))", [{"a": "x"}, {"b": "1"}], [{"a": "x", "b": "1"}]),
    ("has(a) && all()", [{"a": "1"}], [{}]),
    ("!all()", [], [{}, {"a": "b"}]),
    ("\ta\t==\t'b'\t", [{"a": "b"}], []),
]


@pytest.mark.parametrize(("text", "matches", "non_matches"), MATCH_TABLE)
def test_evaluate(
    text: str, matches: list[dict[str, str]], non_matches: list[dict[str, str]]
) -> None:
    sel = parse(text)
    canon = parse(str(sel))
    for labels in matches:
        assert sel.evaluate(labels) is True, labels
        assert canon.evaluate(labels) is True, labels
        assert sel.root.closure()(labels) is True, labels
    for labels in non_matches:
        assert sel.evaluate(labels) is False, labels
        assert canon.evaluate(labels) is False, labels
        assert sel.root.closure()(labels) is False, labels


# Calico's canonicalisationTests, its visitor tests' canonical forms (unprefixed) and ours.
CANONICAL: list[tuple[str, str]] = [
    ("", "all()"),
    (" all() ", "all()"),
    (" (all() )", "all()"),
    ("! (has( b)||! has(a ))", "!(has(b) || !has(a))"),
    ('! (a == "b"&&! c != "d")', '!(a == "b" && !c != "d")'),
    ('a == "\'"', 'a == "\'"'),
    ("a == '\"'", "a == '\"'"),
    ("a contains '\"'", "a contains '\"'"),
    ('a contains "\'"', 'a contains "\'"'),
    ("a startswith '\"'", "a starts with '\"'"),
    ('a endswith "\'"', 'a ends with "\'"'),
    ("a!='\"'", "a != '\"'"),
    ('a in {"d"}', 'a in {"d"}'),
    ('a in {"a", "b"}', 'a in {"a", "b"}'),
    ('a in {"d", "a", "b"}', 'a in {"a", "b", "d"}'),
    ('a in {"z", "x", "y", "a"}', 'a in {"a", "x", "y", "z"}'),
    ('a in {"z", "z", "x", "y", "x", "a"}', 'a in {"a", "x", "y", "z"}'),
    ("k == 'v'", 'k == "v"'),
    ("k starts with 'v'", 'k starts with "v"'),
    ("k == 'v' && x == 'y'", '(k == "v" && x == "y")'),
    ("k == 'v' || has(x)", '(k == "v" || has(x))'),
    ("!(k == 'v')", '!k == "v"'),
    ("k not in {'v'}", 'k not in {"v"}'),
    (
        "!(!(k == 'v' && has(t) || all()) && (a in {'b', 'c'}))",
        '!(!((k == "v" && has(t)) || all()) && a in {"b", "c"})',
    ),
    ("a in {'x', \"y'\", '\"z'}", 'a in {\'"z\', "x", "y\'"}'),
    ("a in {}", "a in {}"),
    ("a not in {'x',}", 'a not in {"x"}'),
    ("a notin {'x'}", 'a not in {"x"}'),
    ("global()", "global()"),
    ("(a == 'x' && b == 'y') && c == 'z'", '((a == "x" && b == "y") && c == "z")'),
    ("a == 'x' && (b == 'y' && c == 'z')", '(a == "x" && (b == "y" && c == "z"))'),
    ("a == 'x' || b == 'y' && c == 'z'", '(a == "x" || (b == "y" && c == "z"))'),
    ("((((has(a)))))", "has(a)"),
    ("!!has(a)", "has(a)"),
    ("!!!has(a)", "!has(a)"),
]


@pytest.mark.parametrize(("text", "expected"), CANONICAL)
def test_canonical_form(text: str, expected: str) -> None:
    sel = parse(text)
    assert str(sel) == expected
    again = parse(expected)
    assert str(again) == expected
    assert again.unique_id() == sel.unique_id()
    assert again == sel and hash(again) == hash(sel)


def test_double_negation_through_parentheses_prints_as_calico_does() -> None:
    # Calico keeps the inner "!" node, prints "!!", and "!!" then parses away.
    first = parse("!(!has(a))")
    assert str(first) == "!!has(a)"
    assert str(parse(str(first))) == "has(a)"


# Calico's canonicalisationTests with their expected UIDs.
UNIQUE_IDS = [
    ("", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" all() ", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    (" (all() )", "s:5y5I3VdRZfDU01O--xXAPx2yxCQQqMf0M6IWug"),
    ("! (has( b)||! has(a ))", "s:Iss0uCleLYv1GSv_pNm7hAO58kE9jAx1NKyG3Q"),
    ('! (a == "b"&&! c != "d")', "s:lh3haoY1ikTRkd4UZu0nWSaIBknYLPJLX16d-w"),
]


@pytest.mark.parametrize(("text", "uid"), UNIQUE_IDS)
def test_unique_id_matches_calico(text: str, uid: str) -> None:
    sel = parse(text)
    assert sel.unique_id() == uid
    assert sel.unique_id() == sel.unique_id()


def test_unique_id_shape() -> None:
    uid = parse("a == 'b'").unique_id()
    assert uid.startswith("s:") and len(uid) == 2 + 38
    assert "=" not in uid and "+" not in uid and "/" not in uid
    assert make_unique_id("test", "content").startswith("test:")
    assert parse("a == 'b'").unique_id() != parse("a == 'c'").unique_id()


# Calico's badSelectors (parser_test.go) and failing tokenizer inputs, with where each fails.
BAD: list[tuple[str, int, str]] = [
    ("b == b", 5, "b"),
    ("b contains b", 11, "b"),
    ("b starts with b", 14, "b"),
    ("b ends with b", 12, "b"),
    ("'b1' == b", 0, "'b1'"),
    ("b", 1, ""),
    ("a b", 2, "b"),
    ("!", 1, ""),
    ('foo == "bar" &', 13, "&"),
    ('foo == "bar" |', 13, "|"),
    ("foo != ||", 7, "||"),
    ('foo in {"", ||', 12, "||"),
    ('foo in ""', 7, '""'),
    ('"FOO', 0, '"FOO'),
    ("\"FOO'", 0, "\"FOO'"),
    ("'FOO", 0, "'FOO"),
    ("(", 1, ""),
    ('(a == "foo"', 11, ""),
    (")", 0, ")"),
    ("()", 1, ")"),
    ("%", 0, "%"),
    ('a == "b" && %', 12, "%"),
    ('a == "b" || %', 12, "%"),
    ("a ", 2, ""),
    ("has(foo) &&", 11, ""),
    ('label starts foo "value"', 13, "foo"),
    ('label ends foo "value"', 11, "foo"),
    ('label squiggles "value"', 6, "squiggles"),
    ('a not in "bar"', 9, '"bar"'),
    ("b in c", 5, "c"),
    # Ours.
    ("a = 'b'", 2, "="),
    ("a == 'b'\n", 8, "\n"),
    ("has (a)", 4, "("),
    ("has(a", 5, ""),
    ("has()", 4, ")"),
    ("has(a b)", 6, "b"),
    ("all(x)", 4, "x"),
    ("global(", 7, ""),
    ("a in {,}", 6, ","),
    ("a in {'x' 'y'}", 10, "'y'"),
    ("a in {'x'", 9, ""),
    ("has(a) has(b)", 7, "has(b)"),
    ("a == 'b' && (c == 'd'", 21, ""),
    ("a == 'b')", 8, ")"),
    ("a == 'é' && ü == 'x'", 12, "ü"),
    ("a == 'b' &&& c == 'd'", 11, "&"),
]


@pytest.mark.parametrize(("text", "position", "token"), BAD)
def test_rejects_bad_selector_saying_where(text: str, position: int, token: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert err.selector == text
    assert err.position == position
    assert err.token == token
    assert f"at position {position}" in str(err)
    assert (repr(token) if token else "end of selector") in str(err)


def test_error_message_names_the_problem() -> None:
    with pytest.raises(SelectorError, match=r"expected a quoted string after '=='"):
        parse("b == b")
    with pytest.raises(SelectorError, match=r"unterminated string literal"):
        parse("a == 'b")
    with pytest.raises(
        SelectorError, match=r"expected '\)' to close the '\(' opened at position 0"
    ):
        parse("(a == 'b'")
    with pytest.raises(SelectorError, match=r"after label 'b'"):
        parse("b")


def test_deep_nesting_is_a_selector_error() -> None:
    text = "(" * 500 + "has(a)" + ")" * 500
    with pytest.raises(SelectorError, match="nested more than"):
        parse(text)
    assert parse("(" * 50 + "has(a)" + ")" * 50).evaluate({"a": ""})


def test_long_flat_selectors_compile_and_evaluate() -> None:
    text = " || ".join(f"k{i} == 'v{i}'" for i in range(2000))
    sel = parse(text)
    assert sel.evaluate({"k1999": "v1999"})
    assert not sel.evaluate({"k1999": "v0"})


def test_non_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]


def test_parse_is_cached() -> None:
    text = "cache-test == 'x' && has(y)"
    first = parse(text)
    assert parse(text) is first
    assert isinstance(first, Selector)


def test_global_and_all_flags() -> None:
    assert parse("").is_all and parse("all()").is_all and not parse("global()").is_all
    assert parse("global()").is_global and not parse("has(a)").is_global


def test_evaluate_accepts_any_mapping() -> None:
    from types import MappingProxyType

    assert parse("a == 'b' && has(c)").evaluate(MappingProxyType({"a": "b", "c": ""}))


# Calico's label_restriction_test.go: selector -> {key: (present, absent, values or None)}.
RESTRICTIONS: list[tuple[str, dict[str, tuple[bool, bool, frozenset[str] | None]]]] = [
    ("", {}),
    ("all()", {}),
    ("global()", {}),
    ("a == 'value'", {"a": (True, False, frozenset({"value"}))}),
    ("has(a)", {"a": (True, False, None)}),
    ("a in {'v1','v2'}", {"a": (True, False, frozenset({"v1", "v2"}))}),
    ("a not in {'v1','v2'}", {}),
    ("a contains 'foo'", {"a": (True, False, None)}),
    ("a ends with 'foo'", {"a": (True, False, None)}),
    ("a starts with 'foo'", {"a": (True, False, None)}),
    ("a != 'value'", {}),
    ("a == 'v1' && a == 'v1'", {"a": (True, False, frozenset({"v1"}))}),
    ("a == 'v1' && a == 'v2'", {"a": (True, False, frozenset())}),
    ("a == 'v1' && has(a)", {"a": (True, False, frozenset({"v1"}))}),
    ("a in {'v1','v2'} && a in {'v2','v3'} ", {"a": (True, False, frozenset({"v2"}))}),
    ("a in {'v1','v2', 'v3'} && a in {'v2','v3'} ", {"a": (True, False, frozenset({"v2", "v3"}))}),
    ("has(a) && a == 'v1'", {"a": (True, False, frozenset({"v1"}))}),
    ("has(a) && !has(a)", {"a": (True, True, None)}),
    (
        "a == 'v1' && b == 'v2'",
        {"a": (True, False, frozenset({"v1"})), "b": (True, False, frozenset({"v2"}))},
    ),
    ("a == 'v1' && all()", {"a": (True, False, frozenset({"v1"}))}),
    ("all() && a == 'v1'", {"a": (True, False, frozenset({"v1"}))}),
    ("a == 'v1' || a == 'v2'", {"a": (True, False, frozenset({"v1", "v2"}))}),
    ("has(a) || a == 'v2'", {"a": (True, False, None)}),
    ("a=='v2' || has(a)", {"a": (True, False, None)}),
    ("a=='v2' || has(b)", {}),
    ("a=='v2' || (has(b) && has(a))", {"a": (True, False, None)}),
    ("a == 'v1' || b == 'v2'", {}),
    ("a == 'v1' || all()", {}),
    ("all() || b == 'v2'", {}),
    ("!(a == 'value')", {}),
    ("!has(a)", {"a": (False, True, None)}),
    ("!!has(a)", {"a": (True, False, None)}),
]


@pytest.mark.parametrize(("text", "expected"), RESTRICTIONS)
def test_label_restrictions(
    text: str, expected: dict[str, tuple[bool, bool, frozenset[str] | None]]
) -> None:
    want = {k: LabelRestriction(*v) for k, v in expected.items()}
    assert parse(text).label_restrictions() == want
    if text:
        assert parse(f"all() && ({text})").label_restrictions() == want
