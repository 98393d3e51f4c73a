"""Policies and tiers in the order Felix evaluates them (``felix/calc/policy_sorter.go``).

Tiers run in ``spec.order`` (lowest first); a tier without an order comes after every ordered
tier; equal orders go by name. A tier that policies name but that has no Tier resource still
runs, after every existing tier, with the Deny default. Calico always creates ``default``
(order 1,000,000, Deny), ``kube-admin`` (1,000, Pass) and ``kube-baseline`` (10,000,000, Pass),
so those exist even when the datastore holds no Tier resource for them.

Within a tier, policies run by ``order`` (no order = last), ties broken by the string
``<name>/<namespace>/<kind>``. Staged policies are never enforced; ``doNotTrack`` and
``preDNAT`` policies apply only to host endpoints, never to workloads.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from libcalico.oracle.rules import CompiledRule
from libcalico.oracle.scoping import policy_selector
from libcalico.resources.policy import DEFAULT_TIER, GlobalNetworkPolicy, NetworkPolicy, Tier
from libcalico.selector import Selector

BUILTIN_TIERS: dict[str, tuple[float, str]] = {
    "default": (1_000_000.0, "Deny"),
    "kube-admin": (1_000.0, "Pass"),
    "kube-baseline": (10_000_000.0, "Pass"),
}


@dataclass(frozen=True)
class TierInfo:
    """A tier's name, order (None = last), default action and whether a Tier resource exists."""

    name: str
    order: float | None
    default_action: str
    exists: bool

    def sort_key(self) -> tuple[bool, bool, float, str]:
        """Felix's TierLess: existing tiers first, then by order (None last), then by name."""
        return (not self.exists, self.order is None, self.order if self.order is not None else 0.0, self.name)


@dataclass(frozen=True)
class CompiledPolicy:
    """A policy as Felix applies it: its scoped selector, types and compiled rules."""

    kind: str
    name: str
    namespace: str
    tier: str
    order: float | None
    selector: Selector
    ingress_type: bool
    egress_type: bool
    ingress: tuple[CompiledRule, ...]
    egress: tuple[CompiledRule, ...]

    @property
    def display(self) -> str:
        """``namespace/name`` for a NetworkPolicy, ``name`` for a GlobalNetworkPolicy."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def sort_key(self) -> tuple[float, str]:
        """Felix's PolKVLess: order (None = +inf), then ``name/namespace/kind``."""
        order = math.inf if self.order is None else self.order
        return (order, f"{self.name}/{self.namespace}/{self.kind}")

    def governs(self, direction: str) -> bool:
        """Whether the policy's types include ``ingress`` or ``egress``."""
        return self.ingress_type if direction == "ingress" else self.egress_type

    def rules(self, direction: str) -> tuple[CompiledRule, ...]:
        """The rules of one direction."""
        return self.ingress if direction == "ingress" else self.egress


def compile_policy(policy: NetworkPolicy | GlobalNetworkPolicy) -> CompiledPolicy | None:
    """Compile a policy; None when it never applies to workloads (doNotTrack / preDNAT)."""
    spec = policy.spec
    if isinstance(policy, GlobalNetworkPolicy) and (spec.doNotTrack or spec.preDNAT):  # type: ignore[union-attr]
        return None
    namespace = (policy.metadata.namespace or "default") if isinstance(policy, NetworkPolicy) else ""
    types = spec.types or []
    if not types:  # Felix: no types means both.
        types = ["Ingress", "Egress"]
    return CompiledPolicy(
        kind=policy.KIND.kind, name=policy.metadata.name, namespace=namespace, tier=spec.tier or DEFAULT_TIER,
        order=spec.order, selector=policy_selector(policy),
        ingress_type="Ingress" in types, egress_type="Egress" in types,
        ingress=tuple(CompiledRule.compile(r, i, namespace) for i, r in enumerate(spec.ingress or ())),
        egress=tuple(CompiledRule.compile(r, i, namespace) for i, r in enumerate(spec.egress or ())),
    )


def ordered_tiers(tiers: Iterable[Tier], policies: Iterable[CompiledPolicy]) -> list[tuple[TierInfo, list[CompiledPolicy]]]:
    """Every tier that exists or holds a policy, in evaluation order, each with its policies in order."""
    infos: dict[str, TierInfo] = {name: TierInfo(name, order, action, True)
                                  for name, (order, action) in BUILTIN_TIERS.items()}
    for tier in tiers:
        infos[tier.metadata.name] = TierInfo(tier.metadata.name, tier.spec.order,
                                             tier.spec.defaultAction or "Deny", True)
    by_tier: dict[str, list[CompiledPolicy]] = {name: [] for name in infos}
    for policy in policies:
        if policy.tier not in infos:
            infos[policy.tier] = TierInfo(policy.tier, None, "Deny", False)
            by_tier[policy.tier] = []
        by_tier[policy.tier].append(policy)
    ordered = sorted(infos.values(), key=TierInfo.sort_key)
    return [(info, sorted(by_tier[info.name], key=CompiledPolicy.sort_key)) for info in ordered]
