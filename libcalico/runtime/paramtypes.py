"""Parameter kinds: how a raw setting (a string, or a value from a config resource) becomes typed.

Each kind parses text the way Calico's ``config/param_types.go`` does: booleans
``true/false/1/0/yes/no/y/n/t/f`` in any case, integers with Go's base prefixes
(``0x1f``, ``0o17``, ``017``), durations as seconds (``1.5``) or Go durations
(``90s``, ``1m30s``), comma-separated lists, and Calico's port lists
(``22,udp:53,tcp:10.0.0.0/8:6443``). ``parse`` and ``coerce`` raise ValueError
with the reason only; the settings loader adds the parameter and the source.
"""

from __future__ import annotations

import abc
import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class Kind(abc.ABC):
    """The type of one parameter."""

    #: The value ``none`` selects (Calico: "turn the feature off").
    zero: Any = None
    #: Short name used in help and errors.
    label: str = "value"

    @abc.abstractmethod
    def parse(self, raw: str) -> Any:
        """Turn text into a typed value; raise ValueError saying why not."""

    def coerce(self, value: Any) -> Any:
        """Accept a value from a config resource: text is parsed, typed values are checked."""
        if isinstance(value, str):
            return self.parse(value)
        return self.check(value)

    def check(self, value: Any) -> Any:
        """Validate an already-typed value (a default or a resource field)."""
        return self.parse(str(value))

    def render(self, value: Any) -> Any:
        """A JSON-friendly form of a value, for start-up logs."""
        return value


_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})


class Bool(Kind):
    """true/false, 1/0, yes/no, y/n, t/f in any case."""

    zero = False
    label = "boolean"

    def parse(self, raw: str) -> bool:
        text = raw.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ValueError("invalid boolean; expected true/false, 1/0 or yes/no")

    def check(self, value: Any) -> bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected a boolean, got {type(value).__name__}")


_GO_OCTAL = re.compile(r"^[+-]?0[0-9]+$")


def parse_go_int(raw: str) -> int:
    """Parse an integer as Go's ``strconv.ParseInt(raw, 0, 64)``: 0x / 0o / 0b / leading-0 octal."""
    text = raw.strip()
    if not text:
        raise ValueError("invalid integer: empty")
    try:
        if _GO_OCTAL.match(text):
            sign = -1 if text.startswith("-") else 1
            return sign * int(text.lstrip("+-")[1:], 8)
        return int(text, 0)
    except ValueError:
        raise ValueError("invalid integer") from None


class Int(Kind):
    """An integer, optionally bounded (inclusive)."""

    zero = 0
    label = "integer"

    def __init__(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, raw: str) -> int:
        return self.check(parse_go_int(raw))

    def check(self, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"expected an integer, got {value!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"value must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"value must be at most {self.maximum}")
        return value


class Port(Int):
    """A TCP/UDP port number, 0-65535 (0 asks the kernel for a free one)."""

    label = "port"

    def __init__(self) -> None:
        super().__init__(0, 65535)


class Float(Kind):
    """A finite floating-point number, optionally bounded."""

    zero = 0.0
    label = "number"

    def __init__(self, minimum: float | None = None, maximum: float | None = None) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def parse(self, raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("invalid number") from None
        return self.check(value)

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError("number must be finite")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"value must be at least {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"value must be at most {self.maximum:g}")
        return value


_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(raw: str) -> float:
    """Seconds from ``"2.5"`` (plain seconds, Calico's ``*Secs`` params) or a Go duration ``"1m30s"``."""
    text = raw.strip()
    if not text:
        raise ValueError("invalid duration: empty")
    try:
        return float(text)
    except ValueError:
        pass
    sign = 1.0
    body = text
    if body[0] in "+-":
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _GO_PART.match(body, pos)
        if match is None:
            raise ValueError("invalid duration; expected seconds (\"90\") or a Go duration (\"1m30s\")")
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise ValueError("invalid duration")
    return sign * total


class Duration(Kind):
    """A duration in seconds (float): plain seconds or a Go duration string."""

    zero = 0.0
    label = "duration"

    def __init__(self, minimum: float | None = 0.0) -> None:
        self.minimum = minimum

    def parse(self, raw: str) -> float:
        return self.check(parse_duration(raw))

    def check(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"expected a duration, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError("duration must be finite")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"duration must be at least {self.minimum:g}s")
        return value


class Str(Kind):
    """Any text, optionally matched against a regular expression."""

    zero = ""
    label = "string"

    def __init__(self, pattern: str | None = None, message: str = "invalid value") -> None:
        self.pattern = re.compile(pattern) if pattern else None
        self.message = message

    def parse(self, raw: str) -> str:
        if self.pattern is not None and not self.pattern.fullmatch(raw):
            raise ValueError(self.message)
        return raw

    def check(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {value!r}")
        return self.parse(value)


class OneOf(Kind):
    """One of fixed options, matched case-insensitively and returned in canonical spelling."""

    zero = ""
    label = "option"

    def __init__(self, *options: str, aliases: dict[str, str] | None = None) -> None:
        self.options = options
        self._lookup = {o.lower(): o for o in options}
        for alias, target in (aliases or {}).items():
            self._lookup[alias.lower()] = target

    def parse(self, raw: str) -> str:
        try:
            return self._lookup[raw.strip().lower()]
        except KeyError:
            raise ValueError(f"unknown option; expected one of {', '.join(self.options)}") from None


class LogSeverity(OneOf):
    """Calico's log level names (``logSeverityScreen``): Debug, Info, Warning, Error, Fatal."""

    label = "log severity"

    def __init__(self) -> None:
        super().__init__(
            "Trace", "Debug", "Info", "Warning", "Error", "Fatal", "Panic",
            aliases={"critical": "Fatal", "warn": "Warning"},
        )


def _split(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


class StrList(Kind):
    """Comma-separated text items, blanks dropped; a tuple."""

    zero: tuple[str, ...] = ()
    label = "list"

    def __init__(self, item: Kind | None = None) -> None:
        self.item = item

    def parse(self, raw: str) -> tuple[Any, ...]:
        return self._items(_split(raw), parse=True)

    def check(self, value: Any) -> tuple[Any, ...]:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ValueError(f"expected a list, got {value!r}")
        return self._items(list(value), parse=False)

    def _items(self, items: list[Any], *, parse: bool) -> tuple[Any, ...]:
        if self.item is None:
            for item in items:
                if not isinstance(item, str):
                    raise ValueError(f"list item {item!r} is not a string")
            return tuple(items)
        out = []
        for index, item in enumerate(items):
            try:
                out.append(self.item.parse(item) if parse else self.item.coerce(item))
            except ValueError as exc:
                raise ValueError(f"item {index} ({item!r}): {exc}") from None
        return tuple(out)

    def render(self, value: Any) -> Any:
        if self.item is None:
            return list(value)
        return [self.item.render(v) for v in value]


@dataclass(frozen=True, slots=True)
class ProtoPort:
    """One entry of a Calico port list: protocol, port and an optional CIDR."""

    protocol: str
    port: int
    net: str | None = None

    def __str__(self) -> str:
        if self.net is None:
            return f"{self.protocol}:{self.port}"
        net = f"[{self.net}]" if ":" in self.net else self.net
        return f"{self.protocol}:{net}:{self.port}"


def _proto_port(protocol: str, port: Any, net: str | None) -> ProtoPort:
    protocol = protocol.lower()
    if protocol not in ("tcp", "udp"):
        raise ValueError(f"unknown protocol {protocol!r}; expected tcp or udp")
    if isinstance(port, str):
        if not port.strip().isdigit():
            raise ValueError(f"port {port!r} is not an integer")
        port = int(port)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port {port!r} is not in range 0-65535")
    if net is not None:
        try:
            net = str(ipaddress.ip_network(net, strict=False))
        except ValueError:
            raise ValueError(f"invalid CIDR or IP {net!r}") from None
    return ProtoPort(protocol, port, net)


class PortList(Kind):
    """Calico's port list: ``22``, ``udp:53``, ``tcp:10.0.0.0/8:6443``, ``tcp:[fd00::/64]:22``."""

    zero: tuple[ProtoPort, ...] = ()
    label = "port list"

    def parse(self, raw: str) -> tuple[ProtoPort, ...]:
        return tuple(self._entry(entry) for entry in _split(raw))

    def _entry(self, entry: str) -> ProtoPort:
        net: str | None = None
        if "[" in entry:
            match = re.fullmatch(r"(?:(\w+):)?\[([^\]]+)\]:(.+)", entry)
            if match is None:
                raise ValueError(f"malformed port {entry!r}")
            return _proto_port(match.group(1) or "tcp", match.group(3), match.group(2))
        parts = entry.split(":")
        if len(parts) == 1:
            return _proto_port("tcp", parts[0], None)
        if len(parts) == 2:
            return _proto_port(parts[0], parts[1], None)
        if len(parts) == 3:
            net = parts[1]
            return _proto_port(parts[0], parts[2], net)
        raise ValueError(f"port {entry!r} should be <protocol>:<net>:<number>, <protocol>:<number> or <number>")

    def check(self, value: Any) -> tuple[ProtoPort, ...]:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise ValueError(f"expected a list of ports, got {value!r}")
        out = []
        for item in value:
            if isinstance(item, ProtoPort):
                out.append(item)
            elif isinstance(item, dict):
                out.append(_proto_port(str(item.get("protocol", "tcp")), item.get("port"), item.get("net")))
            elif isinstance(item, int | str):
                out.append(self._entry(str(item)))
            else:
                raise ValueError(f"malformed port {item!r}")
        return tuple(out)

    def render(self, value: Any) -> Any:
        return [str(v) for v in value]
