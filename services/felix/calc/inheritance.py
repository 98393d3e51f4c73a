"""Label inheritance: an item's effective labels are its own over those of its profiles.

How it works (Calico's ``InheritIndex``)::

    item labels  {a: ep}          profiles (in the item's order)  kns.ns1 {pcns.name: ns1, a: p}
         └──────────── effective = own ∪ first profile's ∪ second's ... (earlier wins) ────┘
                                   = {a: ep, pcns.name: ns1}

A profile's ``labelsToApply`` changing re-computes every item that names it;
an item naming a profile that does not exist simply inherits nothing from it.
Changes are reported through ``on_change(item_id, effective_labels)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


class InheritanceIndex:
    """Items with own labels and parent profiles; parents with labels; effective labels on demand."""

    def __init__(self, on_change: Callable[[str, dict[str, str]], None]) -> None:
        self._on_change = on_change
        self._items: dict[str, tuple[Mapping[str, str], tuple[str, ...]]] = {}
        self._parent_labels: dict[str, Mapping[str, str]] = {}
        self._children: dict[str, set[str]] = {}

    def effective(self, item_id: str) -> dict[str, str] | None:
        """The item's labels after inheritance, or None for an unknown item."""
        entry = self._items.get(item_id)
        if entry is None:
            return None
        own, parents = entry
        if not parents:
            return dict(own)
        merged: dict[str, str] = {}
        for parent in reversed(parents):
            labels = self._parent_labels.get(parent)
            if labels:
                merged.update(labels)
        merged.update(own)
        return merged

    def update_item(self, item_id: str, labels: Mapping[str, str], parents: tuple[str, ...]) -> dict[str, str]:
        """Add or change an item; return (and report) its effective labels."""
        old = self._items.get(item_id)
        if old is not None:
            for parent in set(old[1]) - set(parents):
                self._unlink(parent, item_id)
        for parent in reversed(parents):
            self._children.setdefault(parent, set()).add(item_id)
        self._items[item_id] = (labels, parents)
        effective = self.effective(item_id)
        assert effective is not None
        self._on_change(item_id, effective)
        return effective

    def delete_item(self, item_id: str) -> None:
        """Forget an item."""
        old = self._items.pop(item_id, None)
        if old is not None:
            for parent in set(old[1]):
                self._unlink(parent, item_id)

    def update_parent(self, parent_id: str, labels: Mapping[str, str] | None) -> None:
        """A profile's labels changed (None: it was deleted); re-report each item that names it."""
        old = self._parent_labels.get(parent_id)
        if labels:
            self._parent_labels[parent_id] = dict(labels)
        else:
            self._parent_labels.pop(parent_id, None)
        if (old or {}) == (labels or {}):
            return
        for item_id in sorted(self._children.get(parent_id, ())):
            effective = self.effective(item_id)
            assert effective is not None
            self._on_change(item_id, effective)

    def children(self, parent_id: str) -> frozenset[str]:
        """The items that name a profile."""
        return frozenset(self._children.get(parent_id, ()))

    def _unlink(self, parent: str, item_id: str) -> None:
        kids = self._children.get(parent)
        if kids is not None:
            kids.discard(item_id)
            if not kids:
                del self._children[parent]
