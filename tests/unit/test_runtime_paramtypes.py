"""Parsing of parameter values the way Calico parses them."""

from __future__ import annotations

import pytest

from libcalico.runtime.paramtypes import (
    Bool,
    Duration,
    Float,
    Int,
    LogSeverity,
    OneOf,
    Port,
    PortList,
    ProtoPort,
    StrList,
    parse_duration,
)


@pytest.mark.parametrize("raw", ["true", "TRUE", "1", "yes", "Y", "t", " True "])
def test_bool_true(raw: str) -> None:
    assert Bool().parse(raw) is True


@pytest.mark.parametrize("raw", ["false", "False", "0", "no", "N", "f"])
def test_bool_false(raw: str) -> None:
    assert Bool().parse(raw) is False


@pytest.mark.parametrize("raw", ["", "2", "on", "enabled", "truthy"])
def test_bool_invalid(raw: str) -> None:
    with pytest.raises(ValueError, match="invalid boolean"):
        Bool().parse(raw)


def test_bool_from_resource_must_be_bool() -> None:
    assert Bool().coerce(True) is True
    assert Bool().coerce("yes") is True
    with pytest.raises(ValueError, match="expected a boolean"):
        Bool().coerce(1)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("9099", 9099), ("0x10", 16), ("0o17", 15), ("017", 15), ("-3", -3), ("1_000", 1000), ("0", 0)],
)
def test_int_go_syntax(raw: str, value: int) -> None:
    assert Int().parse(raw) == value


@pytest.mark.parametrize("raw", ["", "09", "1.5", "abc", "0xZZ"])
def test_int_invalid(raw: str) -> None:
    with pytest.raises(ValueError, match="invalid integer"):
        Int().parse(raw)


def test_int_bounds() -> None:
    kind = Int(1, 10)
    assert kind.parse("10") == 10
    with pytest.raises(ValueError, match="at least 1"):
        kind.parse("0")
    with pytest.raises(ValueError, match="at most 10"):
        kind.parse("11")
    with pytest.raises(ValueError, match="at most 65535"):
        Port().parse("65536")
    with pytest.raises(ValueError, match="expected an integer"):
        Int().coerce(True)


def test_float() -> None:
    assert Float().parse("2.5") == 2.5
    assert Float().coerce(3) == 3.0
    with pytest.raises(ValueError, match="finite"):
        Float().parse("inf")
    with pytest.raises(ValueError, match="invalid number"):
        Float().parse("1,5")


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [("90", 90.0), ("1.5", 1.5), ("90s", 90.0), ("1m30s", 90.0), ("250ms", 0.25), ("1h", 3600.0),
     ("1h2m3.5s", 3723.5), ("500us", 0.0005), ("10ns", 1e-8), ("-5s", -5.0), ("0", 0.0)],
)
def test_duration_go_and_seconds(raw: str, seconds: float) -> None:
    assert parse_duration(raw) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["", "abc", "5x", "1m30", "m", "1.2.3s", "s5"])
def test_duration_invalid(raw: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(raw)


def test_duration_minimum_and_resource_numbers() -> None:
    with pytest.raises(ValueError, match="at least 0s"):
        Duration().parse("-5s")
    assert Duration(minimum=None).parse("-5s") == -5.0
    assert Duration().coerce(30) == 30.0
    assert Duration().coerce("2m") == 120.0


def test_oneof_and_log_severity_canonical() -> None:
    assert OneOf("None", "Kubernetes").parse("kubernetes") == "Kubernetes"
    severity = LogSeverity()
    assert severity.parse("DEBUG") == "Debug"
    assert severity.parse("warning") == "Warning"
    assert severity.parse("critical") == "Fatal"
    with pytest.raises(ValueError, match="expected one of Trace, Debug, Info"):
        severity.parse("verbose")


def test_str_list() -> None:
    assert StrList().parse(" a, b,,c ") == ("a", "b", "c")
    assert StrList().coerce(["x", "y"]) == ("x", "y")
    assert StrList(Int()).parse("1, 0x2") == (1, 2)
    with pytest.raises(ValueError, match=r"item 1 \('x'\): invalid integer"):
        StrList(Int()).parse("1,x")
    with pytest.raises(ValueError, match="expected a list"):
        StrList().coerce(5)


def test_port_list_forms() -> None:
    ports = PortList().parse("22, udp:53,tcp:10.0.0.0/8:6443,tcp:[fd00::/64]:2222,UDP:68")
    assert ports == (
        ProtoPort("tcp", 22),
        ProtoPort("udp", 53),
        ProtoPort("tcp", 6443, "10.0.0.0/8"),
        ProtoPort("tcp", 2222, "fd00::/64"),
        ProtoPort("udp", 68),
    )
    assert PortList().render(ports) == ["tcp:22", "udp:53", "tcp:10.0.0.0/8:6443", "tcp:[fd00::/64]:2222", "udp:68"]
    assert PortList().parse("") == ()


def test_port_list_from_resource() -> None:
    value = [{"protocol": "TCP", "port": 22}, {"protocol": "udp", "port": 53, "net": "10.0.0.1"}]
    assert PortList().coerce(value) == (ProtoPort("tcp", 22), ProtoPort("udp", 53, "10.0.0.1/32"))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("sctp:1", "unknown protocol"), ("tcp:70000", "not in range"), ("a:b:c:d", "should be"),
     ("tcp:x", "not an integer"), ("tcp:10.0.0.300/8:22", "invalid CIDR")],
)
def test_port_list_invalid(raw: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        PortList().parse(raw)
