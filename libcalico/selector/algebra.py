"""What a selector tree says about indexing: drivers, exclusions, keys read, and set algebra over an index.

How it works::

    driver(k == v) = {(k, v)}          driver(k in {v1, v2}) = {(k, v1), (k, v2)}
    driver(has(k)), contains, starts/ends with = {k}
    driver(a && b) = the cheaper of driver(a), driver(b)
    driver(a || b) = driver(a) ∪ driver(b), if both have one

    select(k == v)      = items[(k, v)]            select(k != v)  = all - items[(k, v)]
    select(has(k))      = items[k]                 select(!a)      = all - select(a)
    select(k in {..})   = ∪ items[(k, v)]          select(all())   = all
    select(a && b)      = select(a) ∩ select(b)    select(a || b)  = select(a) ∪ select(b)

``select`` answers a whole selector with C-level set operations over an
inverted index (``(key, value) -> items``, ``key -> items``) instead of
evaluating it item by item. ``contains`` / ``starts with`` / ``ends with``
have no index: under an ``&&`` the other operands still narrow the
candidates (the caller evaluates the selector on them); anywhere else the
tree is not answerable (None).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Set
from typing import TypeVar

from libcalico.selector.ast import All, And, Compare, Global, Has, InSet, Node, Not, Or

I = TypeVar("I", bound=Hashable)  # noqa: E741 - item id type

# An atom is a (key, value) pair or a bare key; a driver is a set of atoms, None for "scan".
Atom = tuple[str, str] | str

# (items, fresh, exact): the items (a new set when ``fresh``, else one the index owns, read-only),
# and whether they are exactly the matches (else a superset to evaluate the selector on).
Selection = tuple[Set[I], bool, bool]


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


def select(
    node: Node,
    universe: Set[I],
    with_value: Callable[[str, str], Set[I]],
    with_key: Callable[[str], Set[I]],
) -> Selection[I] | None:
    """The items ``node`` matches, by set algebra over an index; None when the tree is not answerable.

    ``universe`` is every item; ``with_value(k, v)`` the items whose label ``k``
    is ``v``; ``with_key(k)`` those that have label ``k``. None of them is changed.
    """
    if isinstance(node, Compare):
        op = node.op
        if op == "==":
            return with_value(node.key, node.value), False, True
        if op == "!=":
            return universe - with_value(node.key, node.value), True, True
        if node.value == "":
            return with_key(node.key), False, True  # every present value contains "" (or starts with it)
        return with_key(node.key), False, False  # the key must be present; its value needs a look
    if isinstance(node, Has):
        return with_key(node.key), False, True
    if isinstance(node, InSet):
        values = node.values
        hit: Set[I]
        if len(values) == 1:
            hit = with_value(node.key, values[0])
        else:
            hit = set().union(*(with_value(node.key, v) for v in values))
        if node.negated:
            return universe - hit, True, True
        return hit, len(values) != 1, True
    if isinstance(node, (All, Global)):
        return universe, False, True
    if isinstance(node, Not):
        inner = select(node.operand, universe, with_value, with_key)
        if inner is None or not inner[2]:
            return None
        return universe - inner[0], True, True
    if isinstance(node, And):
        parts: list[Set[I]] = []
        exact, answerable = True, False
        for operand in node.operands:
            found = select(operand, universe, with_value, with_key)
            if found is None:
                exact = False
                continue
            answerable = True
            exact = exact and found[2]
            if found[0] is not universe:  # all() narrows nothing
                parts.append(found[0])
        if not answerable:
            return None
        if not parts:
            return universe, False, exact
        parts.sort(key=len)
        if len(parts) == 1:
            return parts[0], False, exact
        out = set(parts[0])
        for part in parts[1:]:
            if not out:
                break
            out.intersection_update(part)
        return out, True, exact
    if isinstance(node, Or):
        union: list[Set[I]] = []
        exact = True
        for operand in node.operands:
            found = select(operand, universe, with_value, with_key)
            if found is None:
                return None
            union.append(found[0])
            exact = exact and found[2]
        return set().union(*union), True, exact
    return None
