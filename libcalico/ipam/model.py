"""IPAM values in Calico's JSON shapes: blocks, affinities, handles and the IPAM configuration.

A :class:`Block` is a working copy of one ``AllocationBlock``: decode it, change
it with the pure methods here (allocate, assign, release), encode it, and write
it back with a compare-and-swap on the revision it was read at. Nothing here
touches a datastore.

Block layout (Calico's ``model.AllocationBlock``)::

    allocations[ordinal]  -> index into attributes, or None when free
    unallocated           -> free ordinals, first to be handed out first (FIFO)
    attributes[i]         -> {"handle_id": ..., "secondary": {...}}
    sequenceNumber        -> bumped on every write
    sequenceNumberForAllocation[str(ordinal)] -> sequenceNumber when that ordinal was handed out
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from libcalico.ipam.errors import CorruptIPAMData
from libcalico.ipam.keys import IPAddress, IPNetwork

AFFINITY_PREFIX = "host:"


@dataclass(frozen=True, slots=True)
class Attribute:
    """Who an allocation belongs to: its handle and free-form secondary attributes (pod, namespace, node...)."""

    handle: str | None
    secondary: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, handle: str | None, secondary: Mapping[str, str] | None) -> Attribute:
        """An attribute from a handle and a secondary map (order-independent)."""
        return cls(handle, tuple(sorted((secondary or {}).items())))

    @property
    def attrs(self) -> dict[str, str]:
        """The secondary attributes as a dict."""
        return dict(self.secondary)

    def to_value(self) -> dict[str, Any]:
        """Calico's JSON form."""
        return {"handle_id": self.handle, "secondary": dict(self.secondary) if self.secondary else None}


def _ordinal_list(key: str, name: str, raw: Any) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise CorruptIPAMData(key, f"{name} must be a list")
    return raw


class Block:
    """One allocation block, decoded; mutate with the methods below, then :meth:`to_value`."""

    __slots__ = ("cidr", "affinity", "allocations", "unallocated", "attributes", "sequence",
                 "sequence_for", "deleted", "extra")

    def __init__(self, cidr: IPNetwork, affinity: str | None) -> None:
        self.cidr = cidr
        self.affinity = affinity
        size = cidr.num_addresses
        self.allocations: list[int | None] = [None] * size
        self.unallocated: list[int] = list(range(size))
        self.attributes: list[Attribute] = []
        self.sequence = 0
        self.sequence_for: dict[str, int] = {}
        self.deleted = False
        self.extra: dict[str, Any] = {}

    # ------------------------------------------------------------ codec

    @classmethod
    def for_host(cls, cidr: IPNetwork, host: str | None) -> Block:
        """A new, empty block, affine to ``host`` (or to nobody)."""
        return cls(cidr, f"{AFFINITY_PREFIX}{host}" if host else None)

    @classmethod
    def from_value(cls, key: str, value: Mapping[str, Any]) -> Block:
        """Decode a stored block; raise CorruptIPAMData when it is not Calico's shape."""
        try:
            cidr = ipaddress.ip_network(str(value["cidr"]))
        except (KeyError, ValueError) as exc:
            raise CorruptIPAMData(key, f"bad or missing cidr: {exc}") from None
        affinity = value.get("affinity")
        if affinity is None and value.get("hostAffinity"):
            affinity = f"{AFFINITY_PREFIX}{value['hostAffinity']}"
        block = cls(cidr, affinity if isinstance(affinity, str) else None)
        size = cidr.num_addresses
        allocations = _ordinal_list(key, "allocations", value.get("allocations"))
        if allocations and len(allocations) != size:
            raise CorruptIPAMData(key, f"allocations has {len(allocations)} entries for {size} addresses")
        if allocations:
            block.allocations = [a if isinstance(a, int) else None for a in allocations]
        block.unallocated = [int(o) for o in _ordinal_list(key, "unallocated", value.get("unallocated"))]
        if not allocations and not block.unallocated and "unallocated" not in value:
            block.unallocated = list(range(size))
        attrs = []
        for raw in _ordinal_list(key, "attributes", value.get("attributes")):
            if not isinstance(raw, Mapping):
                raise CorruptIPAMData(key, "attributes entries must be maps")
            secondary = raw.get("secondary") or {}
            attrs.append(Attribute.of(raw.get("handle_id"), {str(k): str(v) for k, v in secondary.items()}))
        block.attributes = attrs
        for ordinal, index in enumerate(block.allocations):
            if index is not None and not 0 <= index < len(attrs):
                raise CorruptIPAMData(key, f"allocation {ordinal} points at missing attribute {index}")
        block.sequence = int(value.get("sequenceNumber") or 0)
        block.sequence_for = {str(k): int(v) for k, v in (value.get("sequenceNumberForAllocation") or {}).items()}
        block.deleted = bool(value.get("deleted", False))
        known = {"cidr", "affinity", "hostAffinity", "allocations", "unallocated", "attributes",
                 "sequenceNumber", "sequenceNumberForAllocation", "deleted", "strictAffinity"}
        block.extra = {k: v for k, v in value.items() if k not in known}
        return block

    def to_value(self) -> dict[str, Any]:
        """Calico's JSON form of the block."""
        value: dict[str, Any] = {
            "cidr": str(self.cidr),
            "affinity": self.affinity,
            "strictAffinity": False,
            "allocations": list(self.allocations),
            "unallocated": list(self.unallocated),
            "attributes": [a.to_value() for a in self.attributes],
            "sequenceNumber": self.sequence,
            "sequenceNumberForAllocation": dict(self.sequence_for),
            "deleted": self.deleted,
        }
        value.update(self.extra)
        return value

    def copy(self) -> Block:
        """An independent copy."""
        other = Block(self.cidr, self.affinity)
        other.allocations = list(self.allocations)
        other.unallocated = list(self.unallocated)
        other.attributes = list(self.attributes)
        other.sequence = self.sequence
        other.sequence_for = dict(self.sequence_for)
        other.deleted = self.deleted
        other.extra = dict(self.extra)
        return other

    # ------------------------------------------------------------ reading

    @property
    def host(self) -> str | None:
        """The node this block is affine to, if any."""
        if self.affinity and self.affinity.startswith(AFFINITY_PREFIX):
            return self.affinity[len(AFFINITY_PREFIX):]
        return None

    @property
    def size(self) -> int:
        return len(self.allocations)

    def ip(self, ordinal: int) -> IPAddress:
        """The address at an ordinal."""
        return self.cidr.network_address + ordinal

    def ordinal(self, ip: IPAddress) -> int:
        """The ordinal of an address; raise ValueError when it is outside the block."""
        if ip not in self.cidr:
            raise ValueError(f"{ip} is not in block {self.cidr}")
        return int(ip) - int(self.cidr.network_address)

    def in_use(self) -> int:
        """How many addresses are allocated."""
        return sum(1 for a in self.allocations if a is not None)

    def is_empty(self) -> bool:
        """True when nothing is allocated."""
        return all(a is None for a in self.allocations)

    def attribute_of(self, ordinal: int) -> Attribute | None:
        """The attribute of an allocated ordinal, or None when it is free."""
        index = self.allocations[ordinal]
        return None if index is None else self.attributes[index]

    def allocated(self) -> Iterable[tuple[int, Attribute]]:
        """Every allocated ordinal with its attribute."""
        for ordinal, index in enumerate(self.allocations):
            if index is not None:
                yield ordinal, self.attributes[index]

    def ordinals_of_handle(self, handle: str) -> list[int]:
        """The ordinals allocated to a handle."""
        return [o for o, a in self.allocated() if a.handle == handle]

    def sequence_of(self, ordinal: int) -> int:
        """The block sequence number at the time the ordinal was handed out (0 when unknown)."""
        return self.sequence_for.get(str(ordinal), 0)

    # ------------------------------------------------------------ changing

    def _attribute_index(self, attribute: Attribute) -> int:
        for i, existing in enumerate(self.attributes):
            if existing == attribute:
                return i
        self.attributes.append(attribute)
        return len(self.attributes) - 1

    def allocate(self, count: int, attribute: Attribute, skip: Callable[[int], bool] | None = None) -> list[int]:
        """Hand out up to ``count`` free ordinals, oldest-freed first, passing over those ``skip`` refuses."""
        chosen: list[int] = []
        kept: list[int] = []
        for ordinal in self.unallocated:
            if len(chosen) < count and self.allocations[ordinal] is None and not (skip and skip(ordinal)):
                chosen.append(ordinal)
            else:
                kept.append(ordinal)
        if not chosen:
            return []
        index = self._attribute_index(attribute)
        for ordinal in chosen:
            self.allocations[ordinal] = index
            self.sequence_for[str(ordinal)] = self.sequence
        self.unallocated = kept
        return chosen

    def assign(self, ordinal: int, attribute: Attribute) -> bool:
        """Hand out one specific ordinal; False when it is already allocated."""
        if self.allocations[ordinal] is not None:
            return False
        self.allocations[ordinal] = self._attribute_index(attribute)
        self.sequence_for[str(ordinal)] = self.sequence
        self.unallocated = [o for o in self.unallocated if o != ordinal]
        return True

    def release(self, ordinals: Iterable[int]) -> dict[int, str | None]:
        """Free the given ordinals (those allocated); return each freed ordinal's handle."""
        freed: dict[int, str | None] = {}
        for ordinal in ordinals:
            index = self.allocations[ordinal]
            if index is None or ordinal in freed:
                continue
            freed[ordinal] = self.attributes[index].handle
            self.allocations[ordinal] = None
            self.unallocated.append(ordinal)
            self.sequence_for.pop(str(ordinal), None)
        if freed:
            self._prune_attributes()
        return freed

    def _prune_attributes(self) -> None:
        used = sorted({a for a in self.allocations if a is not None})
        if len(used) == len(self.attributes):
            return
        remap = {old: new for new, old in enumerate(used)}
        self.attributes = [self.attributes[old] for old in used]
        self.allocations = [None if a is None else remap[a] for a in self.allocations]

    def bump(self) -> None:
        """Advance the sequence number; call once before each write."""
        self.sequence += 1


class AffinityState(enum.StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    PENDING_DELETION = "pendingDeletion"


@dataclass(frozen=True, slots=True)
class Affinity:
    """One host's claim on one block."""

    host: str
    cidr: IPNetwork
    state: AffinityState

    def to_value(self) -> dict[str, Any]:
        """Calico's JSON form."""
        return {"state": self.state.value, "deleted": False}

    @staticmethod
    def state_of(key: str, value: Mapping[str, Any]) -> AffinityState:
        """The state a stored affinity value holds (Calico treats a missing state as confirmed)."""
        raw = value.get("state") or AffinityState.CONFIRMED.value
        try:
            return AffinityState(raw)
        except ValueError:
            raise CorruptIPAMData(key, f"unknown affinity state {raw!r}") from None


@dataclass
class Handle:
    """How many addresses one handle holds in each block."""

    handle: str
    blocks: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_value(cls, key: str, handle: str, value: Mapping[str, Any]) -> Handle:
        """Decode a stored handle; raise CorruptIPAMData when it is not Calico's shape."""
        raw = value.get("block") or {}
        if not isinstance(raw, Mapping):
            raise CorruptIPAMData(key, "block must be a map of block CIDR to count")
        try:
            return cls(handle, {str(k): int(v) for k, v in raw.items()})
        except (TypeError, ValueError):
            raise CorruptIPAMData(key, "block counts must be integers") from None

    def to_value(self) -> dict[str, Any]:
        """Calico's JSON form."""
        return {"block": dict(self.blocks), "deleted": False}


@dataclass(frozen=True, slots=True)
class IPAMSettings:
    """The cluster-wide IPAM configuration, with Calico's defaults."""

    strict_affinity: bool = False
    auto_allocate_blocks: bool = True
    max_blocks_per_host: int = 0

    DEFAULT_MAX_BLOCKS = 20

    @property
    def block_limit(self) -> int:
        """The most blocks one host may claim (``maxBlocksPerHost``, 20 when 0 or unset)."""
        return self.max_blocks_per_host or self.DEFAULT_MAX_BLOCKS

    @classmethod
    def from_v2(cls, value: Mapping[str, Any]) -> IPAMSettings:
        """Decode ``/calico/ipam/v2/config`` (Calico writes ``strict_affinity``; camelCase is accepted too)."""
        def flag(snake: str, camel: str, default: bool) -> bool:
            raw = value.get(snake, value.get(camel, default))
            return raw if isinstance(raw, bool) else str(raw).lower() == "true"

        return cls(
            strict_affinity=flag("strict_affinity", "strictAffinity", False),
            auto_allocate_blocks=flag("auto_allocate_blocks", "autoAllocateBlocks", False),
            max_blocks_per_host=int(value.get("maxBlocksPerHost") or 0),
        )

    def to_v2(self) -> dict[str, Any]:
        """Calico's JSON form of ``/calico/ipam/v2/config``."""
        return {"strict_affinity": self.strict_affinity, "auto_allocate_blocks": self.auto_allocate_blocks,
                "maxBlocksPerHost": self.max_blocks_per_host}
