"""Policy ordering: tiers by order then name, policies in a tier by order then name, per endpoint.

How it works (Calico's ``PolicySorter`` / ``PolicyResolver``)::

    policies matching an endpoint ──► grouped by tier
        tiers sorted by (order, name)     a tier without a Tier resource sorts last
        policies sorted by (order, name/namespace/kind)  no order = +inf
    ──► TierInfo(name, ingress policy names, egress policy names, default action)

Staged policies never get here. For a workload only ordinary policies count;
a host endpoint also gets its doNotTrack, preDNAT and applyOnForward lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from services.felix.calc.policies import DEFAULT_TIER, STATIC_TIER_ORDERS, PolicyRecord
from services.felix.messages import TierInfo

if TYPE_CHECKING:
    from libcalico.resources import Tier

# What the graph keeps of a Tier: its order (None: last) and its default action ("deny" or "pass").
TierRecord = tuple[float | None, str]


def tier_record(key: str, tier: Tier) -> TierRecord:
    """The record of a validated Tier model."""
    return (tier.spec.order, (tier.spec.defaultAction or "Deny").lower())


def tier_from_stored(key: str, value: Mapping[str, Any]) -> TierRecord:
    """The record of a stored Tier map that is known to be valid: the model's fixed orders filled in."""
    spec = value.get("spec") or {}
    order = spec.get("order")
    if order is None:
        order = STATIC_TIER_ORDERS.get(value["metadata"]["name"])
    return (None if order is None else float(order), (spec.get("defaultAction") or "Deny").lower())

_SORT_KEY = attrgetter("sort_key")

# Built-in tiers that Calico's API server creates; used when no Tier resource is seen.
BUILTIN_DEFAULT_ACTIONS = {DEFAULT_TIER: "deny", "kube-admin": "pass", "kube-baseline": "pass"}


@dataclass(frozen=True, slots=True)
class TierLists:
    """An endpoint's tiers: ordinary ones, and the host-endpoint-only lists."""

    normal: tuple[TierInfo, ...] = ()
    untracked: tuple[TierInfo, ...] = ()
    pre_dnat: tuple[TierInfo, ...] = ()
    forward: tuple[TierInfo, ...] = ()


class PolicySorter:
    """Knows the tiers; sorts an endpoint's matching policies into TierInfo lists."""

    def __init__(self) -> None:
        self._tiers: dict[str, TierRecord] = {}

    def update_tier(self, name: str, tier: TierRecord | None) -> bool:
        """A Tier changed (None: deleted); return whether its order or default action changed."""
        old = self._tiers.get(name)
        if tier is None:
            self._tiers.pop(name, None)
            return old is not None
        self._tiers[name] = tier
        return tier != old

    def tier_key(self, name: str) -> tuple[int, float, str]:
        """How a tier sorts: known tiers by order (none = last), then unknown ones, then by name."""
        known = self._tiers.get(name)
        if known is not None:
            order = known[0]
            return (0, math.inf if order is None else order, name)
        builtin = STATIC_TIER_ORDERS.get(name)
        if builtin is not None:
            return (0, builtin, name)
        return (1, math.inf, name)

    def default_action(self, name: str) -> str:
        """A tier's action for traffic that no policy in it decided: "deny" or "pass"."""
        known = self._tiers.get(name)
        if known is not None:
            return known[1]
        return BUILTIN_DEFAULT_ACTIONS.get(name, "deny")

    def _tiers_of(self, policies: Iterable[PolicyRecord]) -> tuple[TierInfo, ...]:
        by_tier: dict[str, list[PolicyRecord]] = {}
        for record in policies:
            group = by_tier.get(record.id.tier)
            if group is None:
                by_tier[record.id.tier] = [record]
            else:
                group.append(record)
        out = []
        for tier in sorted(by_tier, key=self.tier_key) if len(by_tier) > 1 else by_tier:
            ordered = sorted(by_tier[tier], key=_SORT_KEY)
            out.append(TierInfo(tier, tuple([r.id.name for r in ordered if r.ingress]),
                                tuple([r.id.name for r in ordered if r.egress]), self.default_action(tier)))
        return tuple(out)

    def workload_tiers(self, policies: Iterable[PolicyRecord]) -> tuple[TierInfo, ...]:
        """A workload's tiers: ordinary (tracked, post-DNAT) policies only."""
        return self._tiers_of(r for r in policies if not r.untracked and not r.pre_dnat)

    def host_tiers(self, policies: Iterable[PolicyRecord]) -> TierLists:
        """A host endpoint's four tier lists."""
        records = list(policies)
        normal = [r for r in records if not r.untracked and not r.pre_dnat]
        return TierLists(
            normal=self._tiers_of(normal),
            untracked=self._tiers_of(r for r in records if r.untracked),
            pre_dnat=self._tiers_of(r for r in records if r.pre_dnat),
            forward=self._tiers_of(r for r in normal if r.apply_on_forward),
        )
