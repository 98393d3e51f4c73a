"""Desired versus programmed nftables state, and the one batch that turns one into the other.

How it works::

    DesiredTable (chains, sets, maps; dirty names)      TableState (what the kernel has:
            │                                            chain → hashes, set → elements)
            └──────────── plan_incremental / plan_replace ───────────┘
                                     │
                               Batch (nft text) ──► nft -f (atomic) ──► commit()

Every rule carries ``comment "cali:<hash>"``, the hash chaining the chain name,
the previous rule's hash and the rule text (Felix does the same for iptables).
Comparing hash lists is comparing rule lists, so the kernel's JSON listing is
enough to find chains changed behind our back. Ordering inside a batch: new
sets/maps/chains, set element removals before additions (interval sets reject
overlaps), rewritten chains (flush + add, atomic in the batch), map entries,
then flush and delete what is no longer wanted.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from services.felix.dataplane.ipsets import MapDef, SetDef
from services.felix.dataplane.names import TABLE_FAMILY, TABLE_NAME

TABLE = f"{TABLE_FAMILY} {TABLE_NAME}"


@dataclass(frozen=True, slots=True)
class BaseSpec:
    """Hook of a base chain."""

    type: str
    hook: str
    priority: int
    policy: str = "accept"

    def declaration(self) -> str:
        """The ``{ type … hook … priority …; policy …; }`` block."""
        return f"{{ type {self.type} hook {self.hook} priority {self.priority}; policy {self.policy}; }}"


@dataclass(frozen=True, slots=True)
class Chain:
    """A chain to program: rule bodies, their hashes, and the hook when it is a base chain."""

    name: str
    rules: tuple[str, ...]
    hashes: tuple[str, ...]
    base: BaseSpec | None = None


def make_chain(name: str, rules: Iterable[str], base: BaseSpec | None = None) -> Chain:
    """A chain whose rule hashes are computed now."""
    bodies = tuple(rules)
    hashes: list[str] = []
    previous = ""
    for body in bodies:
        previous = hashlib.blake2b(f"{name}\0{previous}\0{body}".encode(), digest_size=8).hexdigest()
        hashes.append(previous)
    return Chain(name, bodies, tuple(hashes), base)


@dataclass(slots=True)
class TableState:
    """What one table holds (as programmed by us, or as listed from the kernel)."""

    chains: dict[str, tuple[BaseSpec | None, tuple[str, ...]]] = field(default_factory=dict)
    sets: dict[str, tuple[SetDef, frozenset[str]]] = field(default_factory=dict)
    maps: dict[str, tuple[MapDef, dict[str, str]]] = field(default_factory=dict)


@dataclass(slots=True)
class DesiredTable:
    """What the table should hold; writers mark the names they touch as dirty."""

    chains: dict[str, Chain] = field(default_factory=dict)
    sets: dict[str, tuple[SetDef, frozenset[str]]] = field(default_factory=dict)
    maps: dict[str, tuple[MapDef, dict[str, str]]] = field(default_factory=dict)
    dirty_chains: set[str] = field(default_factory=set)
    dirty_sets: set[str] = field(default_factory=set)
    dirty_maps: set[str] = field(default_factory=set)

    def put_chain(self, chain: Chain) -> None:
        """Want ``chain``."""
        if self.chains.get(chain.name) != chain:
            self.chains[chain.name] = chain
            self.dirty_chains.add(chain.name)

    def drop_chain(self, name: str) -> None:
        """No longer want the chain ``name``."""
        if self.chains.pop(name, None) is not None:
            self.dirty_chains.add(name)

    def put_set(self, setdef: SetDef, elements: frozenset[str]) -> None:
        """Want the set with exactly ``elements``."""
        current = self.sets.get(setdef.name)
        if current is None or current[0] != setdef or current[1] is not elements and current[1] != elements:
            self.sets[setdef.name] = (setdef, elements)
            self.dirty_sets.add(setdef.name)

    def drop_set(self, name: str) -> None:
        """No longer want the set ``name``."""
        if self.sets.pop(name, None) is not None:
            self.dirty_sets.add(name)

    def put_map_entry(self, mapdef: MapDef, key: str, verdict: str | None) -> None:
        """Want ``key : verdict`` in the map (None removes the key)."""
        current = self.maps.setdefault(mapdef.name, (mapdef, {}))[1]
        if verdict is None:
            if current.pop(key, None) is not None:
                self.dirty_maps.add(mapdef.name)
        elif current.get(key) != verdict:
            current[key] = verdict
            self.dirty_maps.add(mapdef.name)

    def ensure_map(self, mapdef: MapDef) -> None:
        """Want the map to exist (possibly empty)."""
        if mapdef.name not in self.maps:
            self.maps[mapdef.name] = (mapdef, {})
            self.dirty_maps.add(mapdef.name)

    def mark_all_dirty(self) -> None:
        """Consider every name changed (after a resync)."""
        self.dirty_chains |= set(self.chains)
        self.dirty_sets |= set(self.sets)
        self.dirty_maps |= set(self.maps)

    def clear_dirty(self) -> tuple[set[str], set[str], set[str]]:
        """Take the dirty names."""
        out = (self.dirty_chains, self.dirty_sets, self.dirty_maps)
        self.dirty_chains, self.dirty_sets, self.dirty_maps = set(), set(), set()
        return out


class NeedsReplace(Exception):
    """The kernel's objects differ in kind (set type, chain hook): only a whole-table replace fixes it."""


@dataclass(slots=True)
class Batch:
    """An nft script, built in sections so the order rules above always hold."""

    create: list[str] = field(default_factory=list)
    elements_out: list[str] = field(default_factory=list)
    elements_in: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    blocks: list[str] = field(default_factory=list)  # chain blocks (see add_chain_block)
    maps: list[str] = field(default_factory=list)
    teardown: list[str] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        """How many lines :meth:`text` has."""
        return 1 + (2 if self.blocks else 0) + sum(len(section) for section in (
            self.create, self.elements_out, self.elements_in, self.rules, self.blocks, self.maps, self.teardown,
            self.deletes))

    @property
    def empty(self) -> bool:
        """True when there is nothing to send."""
        return not any((self.create, self.elements_out, self.elements_in, self.rules, self.blocks, self.maps,
                        self.teardown, self.deletes))

    def text(self) -> str:
        """The script."""
        block = [f"table {TABLE} {{", *self.blocks, "}"] if self.blocks else []
        lines = [f"add table {TABLE}", *self.create, *self.elements_out, *self.elements_in, *self.rules, *block,
                 *self.maps, *self.teardown, *self.deletes]
        return "\n".join(lines) + "\n"

    def add_rules(self, chain: Chain) -> None:
        """Append ``chain``'s rules with their hash comments."""
        prefix = f"add rule {TABLE} {chain.name} "
        self.rules.extend(f'{prefix}{body} comment "cali:{h}"' for body, h in zip(chain.rules, chain.hashes,
                                                                                 strict=True))

    def add_chain_block(self, chain: Chain) -> None:
        """Append ``chain``'s rules, with their hash comments, as a ``chain … { … }`` block in the batch's one
        ``table`` block (after the ``add rule`` lines): the same commands in the form of nft's own listing,
        which nft parses in less time than ``add rule`` lines. One table block per batch: each is a table
        update of its own in the kernel (a block per chain cost more than it saved)."""
        self.blocks.append(f"chain {chain.name} {{")
        self.blocks.extend(f'{body} comment "cali:{h}"' for body, h in zip(chain.rules, chain.hashes, strict=True))
        self.blocks.append("}")


def elements_lines(name: str, elements: Iterable[str], verb: str, chunk: int = 4000, ordered: bool = True
                   ) -> list[str]:
    """``add``/``delete element`` lines for a set, ``chunk`` elements per line (sorted when ``ordered``)."""
    items = sorted(elements) if ordered else list(elements)
    return [f"{verb} element {TABLE} {name} {{ {', '.join(items[i:i + chunk])} }}"
            for i in range(0, len(items), chunk)]


def _map_elements(name: str, entries: dict[str, str], verb: str) -> list[str]:
    if not entries:
        return []
    if verb == "delete":
        body = ", ".join(f'"{k}"' for k in sorted(entries))
    else:
        body = ", ".join(f'"{k}" : {v}' for k, v in sorted(entries.items()))
    return [f"{verb} element {TABLE} {name} {{ {body} }}"]


def plan_incremental(desired: DesiredTable, actual: TableState, chains: Iterable[str], sets: Iterable[str],
                     maps: Iterable[str]) -> Batch:
    """The batch that makes ``actual`` match ``desired`` for the named objects; raise NeedsReplace if it cannot."""
    batch = Batch()
    removed_chains: list[str] = []
    for name in sorted(sets):
        want, have = desired.sets.get(name), actual.sets.get(name)
        if want is None:
            if have is not None:
                batch.deletes.append(f"delete set {TABLE} {name}")
            continue
        setdef, elements = want
        if have is None:
            batch.create.append(f"add set {TABLE} {name} {setdef.declaration()}")
            batch.elements_in.extend(elements_lines(name, elements, "add"))
            continue
        if have[0] != setdef:
            raise NeedsReplace(f"set {name} has type {have[0].type}, want {setdef.type}")
        if have[1] is not elements:
            batch.elements_out.extend(elements_lines(name, have[1] - elements, "delete"))
            batch.elements_in.extend(elements_lines(name, elements - have[1], "add"))
    for name in sorted(chains):
        want_chain, have_chain = desired.chains.get(name), actual.chains.get(name)
        if want_chain is None:
            if have_chain is not None:
                removed_chains.append(name)
            continue
        if have_chain is None:
            decl = f" {want_chain.base.declaration()}" if want_chain.base else ""
            batch.create.append(f"add chain {TABLE} {name}{decl}")
            batch.add_rules(want_chain)
            continue
        if have_chain[0] != want_chain.base:
            raise NeedsReplace(f"chain {name} hook differs")
        if have_chain[1] != want_chain.hashes:
            batch.rules.append(f"flush chain {TABLE} {name}")
            batch.add_rules(want_chain)
    for name in sorted(maps):
        want_map, have_map = desired.maps.get(name), actual.maps.get(name)
        if want_map is None:
            if have_map is not None:
                batch.teardown.append(f"delete map {TABLE} {name}")
            continue
        mapdef, entries = want_map
        if have_map is None:
            batch.create.append(f"add map {TABLE} {name} {mapdef.declaration()}")
            batch.maps.extend(_map_elements(name, entries, "add"))
            continue
        if have_map[0] != mapdef:
            raise NeedsReplace(f"map {name} has a different type")
        old = have_map[1]
        gone = {k: v for k, v in old.items() if entries.get(k) != v}
        new = {k: v for k, v in entries.items() if old.get(k) != v}
        batch.maps.extend(_map_elements(name, gone, "delete"))
        batch.maps.extend(_map_elements(name, new, "add"))
    for name in removed_chains:
        batch.teardown.append(f"flush chain {TABLE} {name}")
    for name in removed_chains:
        batch.deletes.insert(0, f"delete chain {TABLE} {name}")
    return batch


def plan_replace(desired: DesiredTable, kernel: TableState | None) -> Batch:
    """One batch that replaces whatever the table holds with ``desired``, without a moment of emptiness.

    Chains, sets and maps that can stay keep existing (base chains keep their
    hooks); all rules and elements are flushed and re-added inside the same
    transaction, so packets see either the old or the new ruleset.
    """
    kernel = kernel or TableState()
    batch = Batch()
    batch.teardown.append(f"flush table {TABLE}")
    kept_sets: set[str] = set()
    for name, (setdef, _elems) in kernel.sets.items():
        want = desired.sets.get(name)
        batch.teardown.append(f"flush set {TABLE} {name}")
        if want is not None and want[0] == setdef:
            kept_sets.add(name)
        else:
            batch.deletes.append(f"delete set {TABLE} {name}")
    kept_maps: set[str] = set()
    for name, (mapdef, _entries) in kernel.maps.items():
        want_map = desired.maps.get(name)
        batch.teardown.append(f"flush map {TABLE} {name}")
        if want_map is not None and want_map[0] == mapdef:
            kept_maps.add(name)
        else:
            batch.deletes.append(f"delete map {TABLE} {name}")
    kept_chains: set[str] = set()
    for name, (base, _hashes) in kernel.chains.items():
        want_chain = desired.chains.get(name)
        if want_chain is not None and want_chain.base == base:
            kept_chains.add(name)
        else:
            batch.deletes.append(f"delete chain {TABLE} {name}")
    # Sections after the teardown: re-create what was dropped or is new, then fill everything.
    tail = Batch()
    for name, (setdef, elements) in sorted(desired.sets.items()):
        if name not in kept_sets:
            tail.create.append(f"add set {TABLE} {name} {setdef.declaration()}")
        tail.elements_in.extend(elements_lines(name, elements, "add"))
    for name, (mapdef, entries) in sorted(desired.maps.items()):
        if name not in kept_maps:
            tail.create.append(f"add map {TABLE} {name} {mapdef.declaration()}")
        tail.maps.extend(_map_elements(name, entries, "add"))
    for name, chain in sorted(desired.chains.items()):
        if name not in kept_chains:
            decl = f" {chain.base.declaration()}" if chain.base else ""
            tail.create.append(f"add chain {TABLE} {name}{decl}")
        tail.add_rules(chain)
    # Order: teardown (flushes), deletes, then the new content.
    return Batch(create=batch.teardown + batch.deletes + tail.create, elements_in=tail.elements_in,
                 rules=tail.rules, maps=tail.maps)


def snapshot(desired: DesiredTable) -> TableState:
    """The state the kernel has once ``desired`` was applied in full."""
    return TableState(
        chains={name: (c.base, c.hashes) for name, c in desired.chains.items()},
        sets=dict(desired.sets),
        maps={name: (mapdef, dict(entries)) for name, (mapdef, entries) in desired.maps.items()},
    )


def commit(desired: DesiredTable, actual: TableState, chains: Iterable[str], sets: Iterable[str],
           maps: Iterable[str]) -> None:
    """Record that the named objects now hold what ``desired`` says."""
    for name in chains:
        chain = desired.chains.get(name)
        if chain is None:
            actual.chains.pop(name, None)
        else:
            actual.chains[name] = (chain.base, chain.hashes)
    for name in sets:
        want = desired.sets.get(name)
        if want is None:
            actual.sets.pop(name, None)
        else:
            actual.sets[name] = want
    for name in maps:
        want_map = desired.maps.get(name)
        if want_map is None:
            actual.maps.pop(name, None)
        else:
            actual.maps[name] = (want_map[0], dict(want_map[1]))
