"""Field types shared by the resource kinds: selectors, CIDRs, ports, protocols, durations, enums.

Each type validates in one step and fails with one clear reason, so an error
names exactly one field (``spec.ingress[0].destination.ports[1]: port range
90:80 is reversed``) instead of one error per member of a Union.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, ClassVar

import pydantic
from pydantic import AfterValidator, ConfigDict, PlainSerializer, PlainValidator

from libcalico.protocols import PROTOCOL_NAMES, PROTOCOL_NUMBERS, protocol_number  # noqa: F401 - re-exported
from libcalico.resources.base import CalicoModel, Resource, field_error

Loc = tuple[int | str, ...]


class SpecModel(CalicoModel):
    """Base of every spec part: wire names, unknown fields rejected, no type coercion."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)


def errors_at(problems: Iterable[tuple[Loc, str]]) -> pydantic.ValidationError:
    """One pydantic error carrying several (location, reason) problems, for model validators."""
    lines: list[Any] = [
        {"type": "value_error", "loc": loc, "input": None, "ctx": {"error": ValueError(reason)}}
        for loc, reason in problems
    ]
    return pydantic.ValidationError.from_exception_data("CalicoModel", lines)


def raise_problems(problems: list[tuple[Loc, str]]) -> None:
    """Raise every collected problem at once (nothing when the list is empty)."""
    if len(problems) == 1:
        raise field_error(*problems[0])
    if problems:
        raise errors_at(problems)


# ---------------------------------------------------------------- names

LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
SUBDOMAIN_FMT = rf"{LABEL_FMT}(\.{LABEL_FMT})*"
_LABEL_RE = re.compile(rf"^{LABEL_FMT}$")
_SUBDOMAIN_RE = re.compile(rf"^{SUBDOMAIN_FMT}$")
_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def check_label_name(value: str, what: str = "name") -> str:
    """Raise ValueError unless ``value`` is a DNS-1123 label (at most 63 characters)."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > 63:
        raise ValueError(f"{what} {value!r} is longer than 63 characters")
    if not _LABEL_RE.fullmatch(value):
        raise ValueError(f"{what} {value!r} must consist of lower case alphanumeric characters or '-' "
                         "and start and end with an alphanumeric character")
    return value


def check_subdomain(value: str, what: str = "name") -> str:
    """Raise ValueError unless ``value`` is a DNS-1123 subdomain."""
    if not value:
        raise ValueError(f"{what} must not be empty")
    if len(value) > 253:
        raise ValueError(f"{what} {value!r} is longer than 253 characters")
    if not _SUBDOMAIN_RE.fullmatch(value):
        raise ValueError(f"{what} {value!r} must consist of lower case alphanumeric characters, '-' or '.', "
                         "and start and end with an alphanumeric character")
    return value


def qualified_name_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (``prefix/name``), or None when it is."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"key {key!r} has an empty prefix"
        if len(prefix) > 253 or not _SUBDOMAIN_RE.fullmatch(prefix):
            return f"key {key!r} has a prefix that is not a DNS-1123 subdomain"
    if not name:
        return f"key {key!r} has an empty name part"
    if len(name) > 63:
        return f"key {key!r} has a name part longer than 63 characters"
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        return (f"key {key!r} must consist of alphanumeric characters, '-', '_' or '.', "
                "and start and end with an alphanumeric character")
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a valid label value, or None when it is."""
    if len(value) > 63:
        return f"value {value!r} is longer than 63 characters"
    if not _LABEL_VALUE_RE.fullmatch(value):
        return (f"value {value!r} must be empty or consist of alphanumeric characters, '-', '_' or '.', "
                "and start and end with an alphanumeric character")
    return None


def _name(value: str) -> str:
    return check_subdomain(value)


Name = Annotated[str, AfterValidator(_name)]


# ---------------------------------------------------------------- selectors


def check_selector(value: str) -> str:
    """Raise ValueError unless ``value`` parses as a Calico selector."""
    from libcalico.selector import SelectorError, parse

    try:
        parse(value)
    except SelectorError as exc:
        raise ValueError(f"invalid selector {value!r}: {exc}") from None
    return value


Selector = Annotated[str, AfterValidator(check_selector)]


# ---------------------------------------------------------------- enums


def choice(what: str, *values: str) -> Any:
    """A string field limited to ``values``, failing with one reason naming them all."""
    allowed = ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else values[0]

    def check(value: Any) -> str:
        if not isinstance(value, str) or value not in values:
            raise ValueError(f"unknown {what} {value!r} (expected {allowed})")
        return value

    return Annotated[str, PlainValidator(check)]


# ---------------------------------------------------------------- numbers


def _float_out(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _order(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"order must be a number, not {value!r}")
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"order must be a finite number, not {value!r}")
    return f


Order = Annotated[float, PlainValidator(_order), PlainSerializer(_float_out, return_type=Any)]


def int_range(what: str, low: int, high: int) -> Any:
    """An integer field within ``[low, high]``."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{what} must be an integer, not {value!r}")
        if not low <= value <= high:
            raise ValueError(f"{what} {value} is out of range ({low}-{high})")
        return value

    return Annotated[int, PlainValidator(check)]


PortNumber = int_range("port", 1, 65535)


def _as_number(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"AS number must be a number, not {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\d+", value):
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\d+\.\d+", value):
        high, low = (int(p) for p in value.split("."))
        if high > 0xFFFF or low > 0xFFFF:
            raise ValueError(f"AS number {value!r} is not valid asdot notation (each part 0-65535)")
        number = (high << 16) | low
    else:
        raise ValueError(f"AS number {value!r} must be a number or asdot notation (e.g. 64512 or 1.10)")
    if not 0 <= number <= 0xFFFFFFFF:
        raise ValueError(f"AS number {value} is out of range (0-4294967295)")
    return number


ASNumber = Annotated[int, PlainValidator(_as_number)]


# ---------------------------------------------------------------- addresses


def parse_cidr_or_ip(value: Any, what: str = "CIDR") -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a CIDR or bare IP (as a full-length prefix); host bits may be set."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, not {value!r}")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid {what}") from None


def _cidr(value: Any) -> str:
    parse_cidr_or_ip(value)
    return str(value)


def _net(value: Any) -> str:
    net = parse_cidr_or_ip(value)
    address = ipaddress.ip_address(value.split("/", 1)[0])
    if address != net.network_address:
        raise ValueError(f"{value!r} is not a network address: host bits are set (did you mean {net}?)")
    return str(value)


def _ip(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"IP address must be a string, not {value!r}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid IP address") from None
    return value


def _ip_version(version: int) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        _ip(value)
        if ipaddress.ip_address(value).version != version:
            raise ValueError(f"{value!r} is not an IPv{version} address")
        return str(value)

    return check


CIDR = Annotated[str, PlainValidator(_cidr)]
"""A CIDR or IP address; host bits may be set (Calico's ``cidr`` validator)."""
Net = Annotated[str, PlainValidator(_net)]
"""A strictly masked network or an IP address (Calico's ``net`` validator)."""
IPAddress = Annotated[str, PlainValidator(_ip)]
IPv4Address = Annotated[str, PlainValidator(_ip_version(4))]
IPv6Address = Annotated[str, PlainValidator(_ip_version(6))]

_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")


def _mac(value: Any) -> str:
    if not isinstance(value, str) or not _MAC_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid MAC address")
    return value


MAC = Annotated[str, PlainValidator(_mac)]

# ---------------------------------------------------------------- ports and protocols

_PORT_NAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


def _protocol(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError(f"protocol must be a name or a number, not {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= 255:
            raise ValueError(f"protocol number {value} is out of range (1-255)")
        return value
    if isinstance(value, str):
        if value.isdigit():
            if not 1 <= int(value) <= 255:
                raise ValueError(f"protocol number {value} is out of range (1-255)")
            return value
        if value in PROTOCOL_NAMES:
            return value
    raise ValueError(f"unknown protocol {value!r} (expected {', '.join(PROTOCOL_NAMES)} or a number 1-255)")


Protocol = Annotated[int | str, PlainValidator(_protocol)]


def port_name_problem(name: str) -> str | None:
    """Why ``name`` is not a Kubernetes port name (IANA service name), or None."""
    if len(name) > 15:
        return f"port name {name!r} is longer than 15 characters"
    if not _PORT_NAME_RE.fullmatch(name):
        return f"port name {name!r} must consist of lower case alphanumeric characters or '-'"
    if "--" in name:
        return f"port name {name!r} must not contain consecutive '-'"
    if not re.search(r"[a-z]", name):
        return f"port name {name!r} must contain at least one letter"
    return None


def _port_number(text: str, original: Any) -> int:
    if not text.isdigit():
        raise ValueError(f"port {original!r} is not a number, a range 'min:max' or a port name")
    number = int(text)
    if not 1 <= number <= 65535:
        raise ValueError(f"port {number} is out of range (1-65535)")
    return number


def _rule_port(value: Any) -> int | str:
    if isinstance(value, bool):
        raise ValueError(f"port must be a number, a range or a name, not {value!r}")
    if isinstance(value, int):
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is out of range (1-65535)")
        return value
    if not isinstance(value, str) or not value:
        raise ValueError(f"port must be a number, a range or a name, not {value!r}")
    if ":" in value:
        low_text, _, high_text = value.partition(":")
        low, high = _port_number(low_text, value), _port_number(high_text, value)
        if low > high:
            raise ValueError(f"port range {value} is reversed")
        return low if low == high else f"{low}:{high}"
    if value.isdigit():
        return _port_number(value, value)
    problem = port_name_problem(value)
    if problem:
        raise ValueError(problem)
    return value


Port = Annotated[int | str, PlainValidator(_rule_port)]
"""A rule port: a number, a range ``"min:max"`` or a named port (Calico's numorstring.Port)."""


# ---------------------------------------------------------------- durations

_DURATION_RE = re.compile(r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h))+$")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(value: str) -> float:
    """Seconds in a Go duration string (``"90s"``, ``"1m30s"``, ``"100ms"``)."""
    sign = -1.0 if value.startswith("-") else 1.0
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)", value):
        total += float(number) * _UNIT_SECONDS[unit]
    return sign * total


def _duration(value: Any) -> str:
    if not isinstance(value, str) or not (value == "0" or _DURATION_RE.fullmatch(value)):
        raise ValueError(f"{value!r} is not a duration (e.g. \"90s\", \"1m30s\", \"100ms\")")
    return value


Duration = Annotated[str, PlainValidator(_duration)]


def non_negative_duration(value: Any) -> str:
    """A duration that must not be negative."""
    _duration(value)
    if duration_seconds(value) < 0:
        raise ValueError(f"duration {value!r} must not be negative")
    return value


# ---------------------------------------------------------------- resources


class KindBase(Resource):
    """Base of the kinds in this package: Calico's metadata checks (labels, annotations)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)
    ANNOTATION_LIMIT: ClassVar[int] = 256 * 1024

    @pydantic.model_validator(mode="after")
    def _labels_valid(self) -> KindBase:
        problems: list[tuple[Loc, str]] = []
        for key, value in (self.metadata.labels or {}).items():
            reason = qualified_name_problem(key)
            if reason:
                problems.append((("metadata", "labels", key), f"invalid label {reason}"))
            reason = label_value_problem(value)
            if reason:
                problems.append((("metadata", "labels", key), f"invalid label {reason}"))
        size = 0
        for key, value in (self.metadata.annotations or {}).items():
            reason = qualified_name_problem(key.lower())
            if reason:
                problems.append((("metadata", "annotations", key), f"invalid annotation {reason}"))
            size += len(key) + len(value)
        if size > self.ANNOTATION_LIMIT:
            problems.append((("metadata", "annotations"),
                             f"total size of annotations is too large by {size - self.ANNOTATION_LIMIT} bytes"))
        raise_problems(problems)
        return self
