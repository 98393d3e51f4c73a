"""IP-set membership: which addresses belong in each active IP set, kept up to date incrementally.

How it works (Calico's ``ipset_member_calculator`` / named-port index)::

    items (every WEP, HEP, NetworkSet, GlobalNetworkSet; effective labels, nets, named ports)
        │ update_item / delete_item
        ▼
    LabelIndex[selector uid, item]  ── on_match / on_unmatch ──►  contributions of the item
        ▲                                                          to every active set that
        │ one selector entry per distinct selector                 uses that selector
    active sets (IPSetDef: selector, or selector + protocol + port name)
        │
        ▼
    refcounted members per set ── 0→1 / 1→0 ──► on_added(set_id, member) / on_removed(...)

A plain set's members are the item's nets (``10.0.0.1/32``, network-set CIDRs);
a named-port set's are ``addr,proto:port`` for each address of an item that
has a port of that name and protocol. Two items may give the same member, so
members are counted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from libcalico.selector import Selector, make_unique_id
from libcalico.selector.labelindex import LabelIndex
from services.felix.messages import IPSetType


@dataclass(frozen=True, slots=True)
class NamedPort:
    """A named port of an endpoint: name, protocol ("tcp", "udp", "sctp") and number."""

    name: str
    protocol: str
    port: int


@dataclass(frozen=True, slots=True)
class IPSetDef:
    """What one IP set holds: a selector's addresses, or (with a port name) its named-port members."""

    selector: Selector
    named_port: str = ""
    protocol: str = ""  # "tcp", "udp" or "sctp" for a named-port set
    id: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if bool(self.named_port) != bool(self.protocol):
            raise ValueError("a named-port IP set needs both a port name and a protocol")
        sel_id = self.selector.unique_id()
        uid = sel_id if not self.named_port else make_unique_id(
            "n", f"{sel_id},{self.protocol},{self.named_port}")
        object.__setattr__(self, "id", uid)

    @property
    def type(self) -> IPSetType:
        """The dataplane type of the set."""
        return IPSetType.IP_AND_PORT if self.named_port else IPSetType.NET


def _address(net: str) -> str:
    return net.split("/", 1)[0]


def contributions(defn: IPSetDef, nets: tuple[str, ...], ports: tuple[NamedPort, ...]) -> list[str]:
    """The members one item gives to a set."""
    if not defn.named_port:
        return list(nets)
    out: list[str] = []
    for p in ports:
        if p.name == defn.named_port and p.protocol == defn.protocol:
            out.extend(f"{_address(n)},{p.protocol}:{p.port}" for n in nets)
    return out


class IPSetIndex:
    """The members of every active IP set, over every item in the cluster."""

    def __init__(
        self,
        on_added: Callable[[str, str], None] | None = None,
        on_removed: Callable[[str, str], None] | None = None,
    ) -> None:
        self._on_added = on_added
        self._on_removed = on_removed
        self._index: LabelIndex[str, str] = LabelIndex(self._match, self._unmatch)
        self._data: dict[str, tuple[tuple[str, ...], tuple[NamedPort, ...]]] = {}
        self._sets: dict[str, IPSetDef] = {}
        self._sets_by_selector: dict[str, set[str]] = {}
        self._refs: dict[str, dict[str, int]] = {}

    def listen(self, on_added: Callable[[str, str], None], on_removed: Callable[[str, str], None]) -> None:
        """Report each member joining (0→1) or leaving (1→0) an active set from now on."""
        self._on_added = on_added
        self._on_removed = on_removed

    # ------------------------------------------------------------------ queries

    def members(self, set_id: str) -> frozenset[str]:
        """The current members of an active set (empty when the set is not active)."""
        return frozenset(self._refs.get(set_id, ()))

    def definition(self, set_id: str) -> IPSetDef | None:
        """The definition of an active set, or None."""
        return self._sets.get(set_id)

    def active_ids(self) -> frozenset[str]:
        """The ids of every active set."""
        return frozenset(self._sets)

    def __len__(self) -> int:
        return len(self._sets)

    # -------------------------------------------------------------------- items

    def update_item(self, item_id: str, labels: Mapping[str, str], nets: tuple[str, ...],
                    ports: tuple[NamedPort, ...]) -> None:
        """Add or change an item: its effective labels and what it contributes (nets, named ports)."""
        data = (nets, ports)
        old = self._data.get(item_id)
        if old is not None and old != data:
            # Its addresses changed: withdraw everything it gave, then match it afresh.
            self._index.delete_labels(item_id)
        self._data[item_id] = data
        self._index.update_labels(item_id, labels)

    def delete_item(self, item_id: str) -> None:
        """Remove an item and everything it contributed."""
        if item_id in self._data:
            self._index.delete_labels(item_id)
            del self._data[item_id]

    # --------------------------------------------------------------------- sets

    def activate(self, defn: IPSetDef) -> None:
        """Start computing a set (no-op when it is already active)."""
        if defn.id in self._sets:
            return
        self._sets[defn.id] = defn
        self._refs[defn.id] = {}
        sel_id = defn.selector.unique_id()
        users = self._sets_by_selector.get(sel_id)
        if users is None:
            self._sets_by_selector[sel_id] = {defn.id}
            self._index.update_selector(sel_id, defn.selector)  # reports every match
            return
        users.add(defn.id)
        for item in self._index.items_matching(sel_id):
            nets, ports = self._data[item]
            for member in contributions(defn, nets, ports):
                self._add(defn.id, member)

    def deactivate(self, set_id: str) -> None:
        """Stop computing a set and forget its members (no-op for an inactive set)."""
        defn = self._sets.pop(set_id, None)
        if defn is None:
            return
        del self._refs[set_id]
        sel_id = defn.selector.unique_id()
        users = self._sets_by_selector[sel_id]
        users.discard(set_id)
        if not users:
            del self._sets_by_selector[sel_id]
            self._index.delete_selector(sel_id)

    # ---------------------------------------------------------------- internals

    def _match(self, sel_id: str, item_id: str) -> None:
        nets, ports = self._data[item_id]
        for set_id in self._sets_by_selector.get(sel_id, ()):
            for member in contributions(self._sets[set_id], nets, ports):
                self._add(set_id, member)

    def _unmatch(self, sel_id: str, item_id: str) -> None:
        nets, ports = self._data[item_id]
        for set_id in self._sets_by_selector.get(sel_id, ()):
            for member in contributions(self._sets[set_id], nets, ports):
                self._remove(set_id, member)

    def _add(self, set_id: str, member: str) -> None:
        refs = self._refs[set_id]
        count = refs.get(member, 0)
        refs[member] = count + 1
        if count == 0 and self._on_added is not None:
            self._on_added(set_id, member)

    def _remove(self, set_id: str, member: str) -> None:
        refs = self._refs[set_id]
        count = refs[member]
        if count > 1:
            refs[member] = count - 1
            return
        del refs[member]
        if self._on_removed is not None:
            self._on_removed(set_id, member)
