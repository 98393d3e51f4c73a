"""A flow to explain (what the user asks about) and the packet it resolves to (what rules match on)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from libcalico.oracle.errors import FlowError
from libcalico.resources.endpoint import WorkloadEndpoint

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136}
PROTOCOL_NAMES = {number: name for name, number in PROTOCOL_NUMBERS.items()}
ICMP_PROTOCOLS = frozenset({1, 58})
PORT_PROTOCOLS = frozenset({6, 17, 132})


def protocol_number(value: int | str) -> int:
    """The IP protocol number of a name (``tcp``, ``UDP``, ``icmp``…) or number; raise FlowError."""
    if isinstance(value, bool):
        raise FlowError(f"protocol must be a name or a number, not {value!r}")
    if isinstance(value, str):
        text = value.strip().lower()
        if text in PROTOCOL_NUMBERS:
            return PROTOCOL_NUMBERS[text]
        if not text.isdigit():
            raise FlowError(f"unknown protocol {value!r} (expected tcp, udp, icmp, icmpv6, sctp, udplite "
                            "or a number 1-255)")
        value = int(text)
    if not 1 <= value <= 255:
        raise FlowError(f"protocol number {value} is out of range (1-255)")
    return value


def protocol_text(number: int) -> str:
    """A protocol number as Calico users write it (``tcp``), or the number."""
    return PROTOCOL_NAMES.get(number, str(number))


def _check_range(what: str, value: int | None, low: int, high: int) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FlowError(f"{what} must be an integer {low}-{high}, not {value!r}")


@dataclass(frozen=True)
class Flow:
    """A new connection to explain.

    ``source`` is a WorkloadEndpoint, a reference to one (``"ns/name"``, ``"name"`` in the
    oracle's default namespace; the name is the WorkloadEndpoint's name or its ``spec.pod``),
    or an IP address or CIDR outside any local endpoint. ``destination`` is a WorkloadEndpoint
    or a reference to one. ``port``/``source_port`` and ``icmp_type``/``icmp_code`` may be left
    out; a rule that needs one of them then makes the evaluation raise AmbiguousFlow.
    ``ip_version`` picks the address family when both endpoints are dual-stack (default 4).
    """

    source: WorkloadEndpoint | str
    destination: WorkloadEndpoint | str
    protocol: int | str = "tcp"
    port: int | None = None
    source_port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    ip_version: int | None = None

    def __post_init__(self) -> None:
        protocol_number(self.protocol)
        _check_range("port", self.port, 1, 65535)
        _check_range("source port", self.source_port, 1, 65535)
        _check_range("ICMP type", self.icmp_type, 0, 255)
        _check_range("ICMP code", self.icmp_code, 0, 255)
        if self.icmp_code is not None and self.icmp_type is None:
            raise FlowError("an ICMP code needs an ICMP type")
        if self.ip_version not in (None, 4, 6):
            raise FlowError(f"ip_version must be 4 or 6, not {self.ip_version!r}")

    @property
    def protocol_number(self) -> int:
        """The flow's IP protocol number."""
        return protocol_number(self.protocol)


@dataclass(frozen=True)
class Packet:
    """The first packet of a flow, as the dataplane sees it.

    ``source`` is a single address (a /32 or /128) for an endpoint, or the CIDR the user gave;
    ``destination`` is always one address.
    """

    version: int
    protocol: int
    source: IPNetwork
    destination: IPNetwork
    source_port: int | None
    destination_port: int | None
    icmp_type: int | None
    icmp_code: int | None

    def describe(self) -> str:
        """``tcp/80``, ``icmp type 8 code 0``, ``udp``: the protocol part of a flow, for people."""
        proto = protocol_text(self.protocol)
        if self.protocol in ICMP_PROTOCOLS and self.icmp_type is not None:
            code = f" code {self.icmp_code}" if self.icmp_code is not None else ""
            return f"{proto} type {self.icmp_type}{code}"
        if self.destination_port is not None:
            return f"{proto}/{self.destination_port}"
        return proto


def parse_address(text: str) -> IPNetwork | None:
    """The network an IP address or CIDR names (host bits allowed), or None if ``text`` is neither."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None
