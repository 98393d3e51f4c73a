"""The IP protocols Calico's rules name, and their numbers (no models imported: Felix's cold path uses this)."""

from __future__ import annotations

PROTOCOL_NAMES = ("TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite")
PROTOCOL_NUMBERS = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPv6": 58, "SCTP": 132, "UDPLite": 136}


def protocol_number(value: int | str | None) -> int | None:
    """The IP protocol number of a validated protocol value (None stays None)."""
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if value.isdigit():
        return int(value)
    return PROTOCOL_NUMBERS[value]
