"""Errors the IPAM library raises; each says what failed and for which address, pool, block or host."""

from __future__ import annotations

from libcalico.errors import CalicoError, Unavailable


class IPAMError(CalicoError):
    """Base class of IPAM failures."""


class NoQualifiedPool(IPAMError):
    """No IP pool may be used for this request (none enabled, none selects the node or namespace, wrong use)."""


class NoFreeAddresses(IPAMError):
    """The qualifying pools have too few free addresses for this request (nothing was kept allocated)."""

    def __init__(self, wanted: int, found: int, version: int, detail: str = "") -> None:
        tail = f": {detail}" if detail else ""
        super().__init__(f"cannot assign {wanted} IPv{version} address(es): only {found} available{tail}")
        self.wanted = wanted
        self.found = found
        self.version = version


class AddressInUse(IPAMError):
    """A specific address was asked for but is already assigned."""

    def __init__(self, address: str, handle: str | None) -> None:
        owner = f" (handle {handle})" if handle else ""
        super().__init__(f"address {address} is already in use{owner}")
        self.address = address
        self.handle = handle


class AddressNotInPool(IPAMError):
    """A specific address was asked for outside every enabled pool, or in a pool that refuses its use."""


class AddressReserved(IPAMError):
    """A specific address was asked for that an IPReservation holds back."""


class BlockNotEmpty(IPAMError):
    """An affinity release that required an empty block found allocations in it."""

    def __init__(self, cidr: str) -> None:
        super().__init__(f"block {cidr} is not empty")
        self.cidr = cidr


class InvalidIPAMConfig(IPAMError):
    """The IPAM configuration asked for is not allowed."""


class ContentionExceeded(IPAMError, Unavailable):
    """A compare-and-swap kept conflicting beyond the retry budget; the operation may be retried."""

    def __init__(self, what: str, attempts: int) -> None:
        super().__init__(f"{what}: gave up after {attempts} conflicting attempts")
        self.what = what
        self.attempts = attempts


class CorruptIPAMData(IPAMError):
    """A stored IPAM value does not have the shape Calico writes."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason
