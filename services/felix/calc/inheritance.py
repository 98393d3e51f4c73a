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

from collections import deque
from collections.abc import Callable, Mapping
from itertools import repeat


class InheritanceIndex:
    """Items with own labels and parent profiles; parents with labels; effective labels on demand."""

    def __init__(self, on_change: Callable[[str, dict[str, str]], None]) -> None:
        self._on_change = on_change
        self._own: dict[str, Mapping[str, str]] = {}
        self._parents: dict[str, tuple[str, ...]] = {}
        self._parent_labels: dict[str, Mapping[str, str]] = {}
        self._children: dict[str, set[str]] = {}

    def effective(self, item_id: str) -> dict[str, str] | None:
        """The item's labels after inheritance, or None for an unknown item."""
        own = self._own.get(item_id)
        if own is None:
            return None
        parents = self._parents[item_id]
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
        old = self._parents.get(item_id)
        if old is not None:
            for parent in set(old) - set(parents):
                self._unlink(parent, item_id)
        for parent in reversed(parents):
            self._children.setdefault(parent, set()).add(item_id)
        self._own[item_id] = labels
        self._parents[item_id] = parents
        effective = self.effective(item_id)
        assert effective is not None
        self._on_change(item_id, effective)
        return effective

    def load(self, ids: list[str], labels: list[Mapping[str, str]],
             parents: list[tuple[str, ...]]) -> dict[str, Mapping[str, str]]:
        """Add many new items at once (parallel lists: ids, own labels, parents); return their effective
        labels (not reported).

        Own labels are kept as given, and are the effective labels too when the
        profiles add none: callers must not change either.
        """
        own, own_parents = self._own, self._parents
        if not own.keys().isdisjoint(ids):
            return {i: self.update_item(i, lab, par) for i, lab, par in zip(ids, labels, parents, strict=True)}
        own.update(zip(ids, labels, strict=True))
        own_parents.update(zip(ids, parents, strict=True))
        # Items with the same profiles (one list per namespace and service account) inherit the same labels.
        groups: dict[tuple[str, ...], tuple[list[str], list[Mapping[str, str]]]] = {}
        for item_id, item_labels, item_parents in zip(ids, labels, parents, strict=True):
            group = groups.get(item_parents)
            if group is None:
                groups[item_parents] = ([item_id], [item_labels])
            else:
                group[0].append(item_id)
                group[1].append(item_labels)
        effective: dict[str, Mapping[str, str]] = {}
        children = self._children
        for group_parents, (members, own_labels) in groups.items():
            base = self._merged(group_parents)
            if base:
                merged = list(map(dict, repeat(base, len(members))))
                deque(map(dict.update, merged, own_labels), maxlen=0)  # each: the profiles' labels, own on top
                effective.update(zip(members, merged, strict=True))
            else:
                effective.update(zip(members, own_labels, strict=True))
            for parent in group_parents:
                kids = children.get(parent)
                if kids is None:
                    children[parent] = set(members)
                else:
                    kids.update(members)
        return effective

    def _merged(self, parents: tuple[str, ...]) -> dict[str, str]:
        """The labels a list of profiles gives (the first profile wins)."""
        merged: dict[str, str] = {}
        for parent in reversed(parents):
            labels = self._parent_labels.get(parent)
            if labels:
                merged.update(labels)
        return merged

    def delete_item(self, item_id: str) -> None:
        """Forget an item."""
        self._own.pop(item_id, None)
        old = self._parents.pop(item_id, None)
        if old is not None:
            for parent in set(old):
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
