"""Incremental index of which label sets match which selectors (Felix's IP-set membership).

How it works::

    label sets ──► items_by_kv[(key, value)], items_by_key[key]          (who has what)
    selectors  ──► a "driver": atoms of which at least one must hold for a match
                     (key, value) : the label has this value  → sels_by_kv
                     key          : the label is present      → sels_by_key
                   or no driver (!=, not in, !has(), ...)      → scan_sels

    driver(k == v) = {(k, v)}          driver(k in {v1, v2}) = {(k, v1), (k, v2)}
    driver(has(k)), contains, starts/ends with = {k}
    driver(a && b) = the cheaper of driver(a), driver(b)
    driver(a || b) = driver(a) ∪ driver(b), if both have one

A new selector is evaluated only against the label sets its driver picks out.
A new label set is evaluated only against the scan selectors and those whose
driver it satisfies. A changed label set is evaluated only against those
candidates that read a label whose value changed; every other selector's
answer cannot have changed (readers[key] lists the selectors that read a key). Matches are kept once, per selector; an item's
matches are found through its candidates. Two shortcuts skip evaluation: an
"exact" selector (==, in, has(), an || of those) matches every item that holds a
driver atom, and a scanned selector that only negates atoms (!=, not in, !has(),
&& of those) matches every item except those holding one. Changes are reported through
``on_match(selector_id, item_id)`` / ``on_unmatch(selector_id, item_id)``.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any, Generic, TypeVar

from libcalico.selector.ast import All, And, Compare, Evaluator, Has, InSet, Node, Not, Or
from libcalico.selector.selector import Selector, parse

S = TypeVar("S", bound=Hashable)
I = TypeVar("I", bound=Hashable)  # noqa: E741 - item id type

# An atom is a (key, value) pair or a bare key; a driver is a set of atoms, None for "scan".
Atom = tuple[str, str] | str
Driver = frozenset[Atom] | None


def driver_options(node: Node) -> list[frozenset[Atom]]:
    """Return alternative drivers for ``node``: sets of atoms one of which holds whenever it matches."""
    if isinstance(node, Compare):
        if node.op == "==":
            return [frozenset({(node.key, node.value)})]
        return [] if node.op == "!=" else [frozenset({node.key})]
    if isinstance(node, InSet):
        return [] if node.negated else [frozenset((node.key, v) for v in node.values)]
    if isinstance(node, Has):
        return [frozenset({node.key})]
    if isinstance(node, Not) and isinstance(node.operand, Not):
        return driver_options(node.operand.operand)
    if isinstance(node, And):
        return [d for operand in node.operands for d in driver_options(operand)]
    if isinstance(node, Or):
        union: set[Atom] = set()
        for operand in node.operands:
            options = driver_options(operand)
            if not options:
                return []
            smallest = options[0]
            for option in options[1:]:
                if len(option) < len(smallest):
                    smallest = option
            union.update(smallest)
        return [frozenset(union)]
    return []


def is_exact(node: Node) -> bool:
    """Return whether ``node`` holds exactly when one atom of its (single) driver option holds."""
    if isinstance(node, Compare):
        return node.op == "=="
    if isinstance(node, InSet):
        return not node.negated
    if isinstance(node, Has):
        return True
    if isinstance(node, Not) and isinstance(node.operand, Not):
        return is_exact(node.operand.operand)
    if isinstance(node, Or):
        return all(is_exact(operand) for operand in node.operands)
    return False


def excluding_atoms(node: Node) -> frozenset[Atom] | None:
    """Return atoms such that ``node`` holds exactly when none of them does, or None if there are none."""
    if isinstance(node, Compare):
        return frozenset({(node.key, node.value)}) if node.op == "!=" else None
    if isinstance(node, InSet):
        return frozenset((node.key, v) for v in node.values) if node.negated else None
    if isinstance(node, Not):
        return driver_options(node.operand)[0] if is_exact(node.operand) else None
    if isinstance(node, And):
        union: set[Atom] = set()
        for operand in node.operands:
            atoms = excluding_atoms(operand)
            if atoms is None:
                return None
            union.update(atoms)
        return frozenset(union)
    return None


def referenced_keys(node: Node) -> frozenset[str]:
    """Return every label key the node reads."""
    if isinstance(node, (Compare, InSet, Has)):
        return frozenset({node.key})
    if isinstance(node, Not):
        return referenced_keys(node.operand)
    if isinstance(node, (And, Or)):
        return frozenset().union(*(referenced_keys(o) for o in node.operands))
    return frozenset()


class _Entry:
    """One selector's state: its evaluator, driver, keys it reads and current matches."""

    __slots__ = ("selector", "evaluate", "driver", "exact", "keys", "members")

    def __init__(self, selector: Selector, driver: Driver, members: set[Any]) -> None:
        self.selector = selector
        self.evaluate: Evaluator = selector.evaluate
        self.driver = driver
        # Holding any driver atom is the whole selector: a driver hit needs no evaluation.
        self.exact = driver is not None and is_exact(selector.root)
        self.keys = referenced_keys(selector.root)
        self.members = members


class LabelIndex(Generic[S, I]):
    """Tracks the matches between selectors (by id) and label sets (by id) as either changes."""

    def __init__(
        self,
        on_match: Callable[[S, I], None] | None = None,
        on_unmatch: Callable[[S, I], None] | None = None,
    ) -> None:
        self._on_match = on_match
        self._on_unmatch = on_unmatch
        self._labels: dict[I, dict[str, str]] = {}
        self._items_by_kv: dict[tuple[str, str], set[I]] = {}
        self._items_by_key: dict[str, set[I]] = {}
        self._entries: dict[S, _Entry] = {}
        self._sels_by_atom: dict[Atom, set[S]] = {}
        self._exact_by_atom: dict[Atom, set[S]] = {}  # the exact selectors of _sels_by_atom
        self._scan_sels: set[S] = set()
        self._readers: dict[str, set[S]] = {}

    # ----------------------------------------------------------------- queries

    def __len__(self) -> int:
        return len(self._labels)

    def selector_ids(self) -> frozenset[S]:
        """Return the ids of every selector in the index."""
        return frozenset(self._entries)

    def item_ids(self) -> frozenset[I]:
        """Return the ids of every label set in the index."""
        return frozenset(self._labels)

    def items_matching(self, selector_id: S) -> frozenset[I]:
        """Return the ids of the label sets that the selector matches (empty if unknown)."""
        entry = self._entries.get(selector_id)
        return frozenset(entry.members) if entry is not None else frozenset()

    def selectors_matching(self, item_id: I) -> frozenset[S]:
        """Return the ids of the selectors that match the label set (empty if unknown)."""
        labels = self._labels.get(item_id)
        if labels is None:
            return frozenset()
        entries = self._entries
        return frozenset(
            s for s in self._candidate_selectors(labels) if item_id in entries[s].members
        )

    def is_match(self, selector_id: S, item_id: I) -> bool:
        """Return whether the selector currently matches the label set."""
        entry = self._entries.get(selector_id)
        return entry is not None and item_id in entry.members

    def labels(self, item_id: I) -> Mapping[str, str] | None:
        """Return the labels stored for an item, or None."""
        return self._labels.get(item_id)

    def selector(self, selector_id: S) -> Selector | None:
        """Return the selector stored under an id, or None."""
        entry = self._entries.get(selector_id)
        return entry.selector if entry is not None else None

    # --------------------------------------------------------------- selectors

    def update_selector(self, selector_id: S, selector: Selector | str) -> None:
        """Add or replace a selector (a Selector or selector text), reporting match changes."""
        sel = parse(selector) if isinstance(selector, str) else selector
        old = self._entries.get(selector_id)
        if old is not None:
            if old.selector == sel:
                return
            self._unindex_selector(selector_id, old)
        driver = self._choose_driver(sel)
        labels = self._labels
        evaluate = sel.evaluate
        candidates = self._candidate_items(driver)
        entry = _Entry(sel, driver, set())
        excluded = excluding_atoms(sel.root) if driver is None else None
        if entry.exact or isinstance(sel.root, All):
            # Every candidate holds one of the atoms, which is the whole selector: no evaluation.
            entry.members = new = set(candidates)
        elif excluded is not None:
            # A negation of atoms (!=, not in, !has(), ...): every item but those holding one.
            new = set(labels)
            for atom in excluded:
                new.difference_update(self._items_with(atom))
            entry.members = new
        else:
            entry.members = new = {item for item in candidates if evaluate(labels[item])}
        self._entries[selector_id] = entry
        if driver is None:
            self._scan_sels.add(selector_id)
        else:
            for atom in driver:
                self._sels_by_atom.setdefault(atom, set()).add(selector_id)
                if entry.exact:
                    self._exact_by_atom.setdefault(atom, set()).add(selector_id)
        for key in self._entries[selector_id].keys:
            self._readers.setdefault(key, set()).add(selector_id)
        if old is None:
            if self._on_match is not None:
                for item in new:
                    self._on_match(selector_id, item)
            return
        if self._on_unmatch is not None:
            for item in old.members - new:
                self._on_unmatch(selector_id, item)
        if self._on_match is not None:
            for item in new - old.members:
                self._on_match(selector_id, item)

    def delete_selector(self, selector_id: S) -> None:
        """Remove a selector, reporting the end of each of its matches; unknown ids are ignored."""
        old = self._entries.pop(selector_id, None)
        if old is None:
            return
        self._unindex_selector(selector_id, old)
        if self._on_unmatch is not None:
            for item in old.members:
                self._on_unmatch(selector_id, item)

    def _atom_cost(self, atom: Atom) -> int:
        if isinstance(atom, tuple):
            return len(self._items_by_kv.get(atom, ()))
        return len(self._items_by_key.get(atom, ()))

    def _choose_driver(self, sel: Selector) -> Driver:
        best: Driver = None
        best_cost = (len(self._labels), 1, 0)
        for option in driver_options(sel.root):
            n_keys = sum(1 for atom in option if isinstance(atom, str))
            cost = (sum(self._atom_cost(a) for a in option), 1 if n_keys else 0, len(option))
            if cost < best_cost:
                best, best_cost = option, cost
        return best

    def _unindex_selector(self, selector_id: S, entry: _Entry) -> None:
        if entry.driver is None:
            self._scan_sels.discard(selector_id)
        else:
            for atom in entry.driver:
                _discard(self._sels_by_atom, atom, selector_id)
                if entry.exact:
                    _discard(self._exact_by_atom, atom, selector_id)
        for key in entry.keys:
            _discard(self._readers, key, selector_id)

    def _items_with(self, atom: Atom) -> Iterable[I]:
        if isinstance(atom, tuple):
            return self._items_by_kv.get(atom, ())
        return self._items_by_key.get(atom, ())

    def _candidate_items(self, driver: Driver) -> Iterable[I]:
        if driver is None:
            return self._labels.keys()
        if len(driver) == 1:
            # One atom: its item set is read, not copied (the caller does not keep it).
            for atom in driver:
                if isinstance(atom, tuple):
                    return self._items_by_kv.get(atom, ())
                return self._items_by_key.get(atom, ())
        out: set[I] = set()
        for atom in driver:
            if isinstance(atom, tuple):
                out.update(self._items_by_kv.get(atom, ()))
            else:
                out.update(self._items_by_key.get(atom, ()))
        return out

    # -------------------------------------------------------------- label sets

    def update_labels(self, item_id: I, labels: Mapping[str, str]) -> None:
        """Add or replace a label set, reporting match changes."""
        old_labels = self._labels.get(item_id)
        new_labels = dict(labels)
        if old_labels == new_labels:
            return
        candidates = self._candidate_selectors(new_labels)
        items_by_kv, items_by_key = self._items_by_kv, self._items_by_key
        sure: set[S] | tuple[()] = ()
        if old_labels is None:
            exact = self._exact_by_atom
            if exact:
                sure = set()
                for kv in new_labels.items():
                    found = exact.get(kv)
                    if found:
                        sure.update(found)
                    found = exact.get(kv[0])
                    if found:
                        sure.update(found)
                candidates -= sure
            for kv in new_labels.items():
                members = items_by_kv.get(kv)
                if members is None:
                    items_by_kv[kv] = {item_id}
                else:
                    members.add(item_id)
                members = items_by_key.get(kv[0])
                if members is None:
                    items_by_key[kv[0]] = {item_id}
                else:
                    members.add(item_id)
        else:
            changed: set[str] = set()
            by_atom = self._sels_by_atom
            for kv in old_labels.items():
                key = kv[0]
                if new_labels.get(key) != kv[1]:
                    changed.add(key)
                    # Selectors that matched the old labels through this pair or key.
                    candidates.update(by_atom.get(kv, ()))
                    _discard(items_by_kv, kv, item_id)
                    if key not in new_labels:
                        candidates.update(by_atom.get(key, ()))
                        _discard(items_by_key, key, item_id)
            for kv in new_labels.items():
                key = kv[0]
                if old_labels.get(key) != kv[1]:
                    changed.add(key)
                    items_by_kv.setdefault(kv, set()).add(item_id)
                    if key not in old_labels:
                        items_by_key.setdefault(key, set()).add(item_id)
            # A selector that reads no changed label keeps its answer: skip it.
            readers = self._readers
            if len(changed) == 1:
                candidates &= readers.get(next(iter(changed)), set())
            else:
                candidates &= set().union(*(readers.get(k, ()) for k in changed))
        self._labels[item_id] = new_labels
        entries = self._entries
        matched: list[S] = []
        unmatched: list[S] = []
        for sel_id in sure:  # a new item holding an exact selector's atom: a match
            entries[sel_id].members.add(item_id)
            matched.append(sel_id)
        for sel_id in candidates:
            entry = entries[sel_id]
            if entry.evaluate(new_labels):
                if item_id not in entry.members:
                    entry.members.add(item_id)
                    matched.append(sel_id)
            elif item_id in entry.members:
                entry.members.discard(item_id)
                unmatched.append(sel_id)
        if self._on_unmatch is not None:
            for sel_id in unmatched:
                self._on_unmatch(sel_id, item_id)
        if self._on_match is not None:
            for sel_id in matched:
                self._on_match(sel_id, item_id)

    def delete_labels(self, item_id: I) -> None:
        """Remove a label set, reporting the end of each of its matches; unknown ids are ignored."""
        old_labels = self._labels.get(item_id)
        if old_labels is None:
            return
        entries = self._entries
        old = [s for s in self._candidate_selectors(old_labels) if item_id in entries[s].members]
        del self._labels[item_id]
        self._unindex_item(item_id, old_labels)
        for sel_id in old:
            entries[sel_id].members.discard(item_id)
        if self._on_unmatch is not None:
            for sel_id in old:
                self._on_unmatch(sel_id, item_id)

    def _unindex_item(self, item_id: I, labels: Mapping[str, str]) -> None:
        for kv in labels.items():
            _discard(self._items_by_kv, kv, item_id)
            _discard(self._items_by_key, kv[0], item_id)

    def _candidate_selectors(self, labels: Mapping[str, str]) -> set[S]:
        """Every selector that could match ``labels``: scan selectors plus those whose driver they meet."""
        out = set(self._scan_sels)
        by_atom = self._sels_by_atom
        if not by_atom:
            return out
        for kv in labels.items():
            found = by_atom.get(kv)
            if found:
                out.update(found)
            found = by_atom.get(kv[0])
            if found:
                out.update(found)
        return out


K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)


def _discard(index: dict[K, set[V]], key: K, member: V) -> None:
    """Remove ``member`` from ``index[key]``, dropping the key when its set empties."""
    members = index.get(key)
    if members is not None:
        members.discard(member)
        if not members:
            del index[key]
