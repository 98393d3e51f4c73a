"""Rule scanning: which IP sets the active policies and profiles reference, counted per owner.

How it works (Calico's ``RuleScanner``)::

    owner (active policy / profile) ──► its IP-set definitions
        first owner of a set  ──► IPSetIndex.activate   (+ on_active)
        last owner gone       ──► IPSetIndex.deactivate (+ on_inactive)

Only sets referenced by an active rule are ever computed or sent.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from services.felix.calc.ipsets import IPSetDef, IPSetIndex


class RuleScanner:
    """Counts the owners of each IP set and (de)activates sets in the membership index."""

    def __init__(
        self,
        index: IPSetIndex,
        on_active: Callable[[str], None] | None = None,
        on_inactive: Callable[[str], None] | None = None,
    ) -> None:
        self._index = index
        self._on_active = on_active
        self._on_inactive = on_inactive
        self._sets_of: dict[Hashable, frozenset[str]] = {}
        self._owners_of: dict[str, set[Hashable]] = {}
        self._held: list[tuple[Hashable, tuple[IPSetDef, ...]]] | None = None

    def listen(self, on_active: Callable[[str], None], on_inactive: Callable[[str], None]) -> None:
        """Report each set becoming active or inactive from now on."""
        self._on_active = on_active
        self._on_inactive = on_inactive

    def hold(self) -> None:
        """Hold owners' updates until :meth:`release` (a bulk load).

        The same end state as applying each at once; but the IP-set index learns
        every label key the new sets' selectors read first, and indexes them in
        one pass over all items rather than one pass per key.
        """
        if self._held is None:
            self._held = []

    def release(self) -> None:
        """Apply the held updates in order and stop holding."""
        held, self._held = self._held, None
        if held:
            self._index.prepare(d for _, defs in held for d in defs)
            for owner, defs in held:
                self.update_owner(owner, defs)

    def update_owner(self, owner: Hashable, defs: Iterable[IPSetDef]) -> None:
        """Record the sets an owner's rules reference now, activating new ones and releasing dropped ones."""
        if self._held is not None:
            self._held.append((owner, tuple(defs)))
            return
        by_id = {d.id: d for d in defs}
        new = frozenset(by_id)
        old = self._sets_of.get(owner, frozenset())
        if new:
            self._sets_of[owner] = new
        else:
            self._sets_of.pop(owner, None)
        for set_id in sorted(new - old):
            owners = self._owners_of.get(set_id)
            if owners is None:
                self._owners_of[set_id] = {owner}
                self._index.activate(by_id[set_id])
                if self._on_active is not None:
                    self._on_active(set_id)
            else:
                owners.add(owner)
        self._release_sets(owner, old - new)

    def remove_owner(self, owner: Hashable) -> None:
        """The owner is no longer active: release every set it referenced."""
        if self._held is not None:  # apply what is held first, in order, and hold on
            self.release()
            self._held = []
        self._release_sets(owner, self._sets_of.pop(owner, frozenset()))

    def owners(self, set_id: str) -> frozenset[Hashable]:
        """The owners that reference a set (not counting updates held meanwhile)."""
        return frozenset(self._owners_of.get(set_id, ()))

    def _release_sets(self, owner: Hashable, set_ids: Iterable[str]) -> None:
        for set_id in sorted(set_ids):
            owners = self._owners_of[set_id]
            owners.discard(owner)
            if not owners:
                del self._owners_of[set_id]
                self._index.deactivate(set_id)
                if self._on_inactive is not None:
                    self._on_inactive(set_id)
