"""Policy kinds: NetworkPolicy, GlobalNetworkPolicy, their staged variants, and Tier.

Defaults follow Calico's client: ``tier`` is ``default``; when ``types`` is
absent it is ``[Ingress]`` if there are no egress rules, ``[Egress]`` if there
are egress rules but no ingress rules, and both otherwise. Since Calico
v3.31 (projectcalico/calico#11232) a policy in a non-default tier no longer
needs a ``<tier>.`` name prefix, so none is required here.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

import pydantic
from pydantic import Field

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import (
    LABEL_FMT,
    SUBDOMAIN_FMT,
    KindBase,
    Loc,
    Name,
    Order,
    Selector,
    SpecModel,
    check_label_name,
    choice,
    raise_problems,
)
from libcalico.resources.rules import (
    GLOBAL_ONLY_IN_NAMESPACE_SELECTOR,
    GLOBAL_SELECTOR,
    Rule,
    rules_direction_problems,
)

DEFAULT_TIER = "default"
DEFAULT_TIER_ORDER = 1_000_000.0
STATIC_TIER_ORDERS = {"default": DEFAULT_TIER_ORDER, "kube-admin": 1_000.0, "kube-baseline": 10_000_000.0}

PolicyType = choice("policy type", "Ingress", "Egress")
PerformanceHint = choice("performance hint", "AssumeNeededOnEveryNode")
StagedAction = choice("stagedAction", "Set", "Delete", "Learn", "Ignore")

_NP_NAME_RE = re.compile(rf"^(({LABEL_FMT})(\.{LABEL_FMT})?|((knp|ossg)\.default\.({SUBDOMAIN_FMT})))$")
_GNP_NAME_RE = re.compile(rf"^({LABEL_FMT}\.)?{LABEL_FMT}$")


def _check_policy_name(name: str, pattern: re.Pattern[str], shape: str) -> None:
    if len(name) > 253:
        raise ValueError(f"name is too long by {len(name) - 253} bytes")
    if not pattern.fullmatch(name):
        raise ValueError(f"name {name!r} must be {shape} of lower case alphanumeric characters or '-', "
                         "each starting and ending with an alphanumeric character")


def default_types(ingress: list[Rule] | None, egress: list[Rule] | None) -> list[str]:
    """Calico's policy types when none are given."""
    if not egress:
        return ["Ingress"]
    if not ingress:
        return ["Egress"]
    return ["Ingress", "Egress"]


class PolicySpecBase(SpecModel):
    """Fields every policy spec shares."""

    GLOBAL: ClassVar[bool] = False

    tier: Name = DEFAULT_TIER
    order: Order | None = None
    ingress: list[Rule] | None = None
    egress: list[Rule] | None = None
    selector: Selector | None = None
    types: list[PolicyType] | None = None  # type: ignore[valid-type]
    serviceAccountSelector: Selector | None = None
    performanceHints: list[PerformanceHint] | None = None  # type: ignore[valid-type]

    def _policy_problems(self) -> list[tuple[Loc, str]]:
        problems: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        for i, t in enumerate(self.types or []):
            if t in seen:
                problems.append((("types", i), f"'{t}' type specified more than once"))
            seen.add(t)
        if self.types is not None and not self.types:
            problems.append((("types",), "must list at least one of Ingress, Egress (or be left out)"))
        hints = self.performanceHints or []
        if len(set(hints)) != len(hints):
            problems.append((("performanceHints",), "performance hints must be unique"))
        for field in ("selector", "serviceAccountSelector", "namespaceSelector"):
            if GLOBAL_SELECTOR in (getattr(self, field, None) or ""):
                problems.append(((field,), GLOBAL_ONLY_IN_NAMESPACE_SELECTOR))
        for field in ("ingress", "egress"):
            if self.GLOBAL and len(getattr(self, field) or []) > 1024:
                problems.append(((field,), "at most 1024 rules are allowed"))
        problems += rules_direction_problems(self.ingress, self.egress, needs_service_namespace=self.GLOBAL)
        return problems

    def _fill_types(self) -> None:
        if self.types is None:
            self.types = default_types(self.ingress, self.egress)


class NetworkPolicySpec(PolicySpecBase):
    """Spec of a namespaced NetworkPolicy."""

    @pydantic.model_validator(mode="after")
    def _checks(self) -> NetworkPolicySpec:
        raise_problems(self._policy_problems())
        self._fill_types()
        return self


class GlobalPolicyFields(PolicySpecBase):
    """The extra fields of a GlobalNetworkPolicy spec."""

    GLOBAL: ClassVar[bool] = True

    doNotTrack: bool | None = None
    preDNAT: bool | None = None
    applyOnForward: bool | None = None
    namespaceSelector: Selector | None = None

    def _global_problems(self) -> list[tuple[Loc, str]]:
        problems = self._policy_problems()
        if self.doNotTrack and self.preDNAT:
            problems.append((("preDNAT",), "preDNAT and doNotTrack cannot both be true"))
        if self.preDNAT and self.egress:
            problems.append((("egress",), "a preDNAT policy cannot have any egress rules"))
        if self.preDNAT and "Egress" in (self.types or []):
            problems.append((("types",), "a preDNAT policy cannot have the Egress type"))
        if not self.applyOnForward and (self.doNotTrack or self.preDNAT):
            problems.append((("applyOnForward",), "applyOnForward must be true if either preDNAT or doNotTrack is true"))
        return problems


class GlobalNetworkPolicySpec(GlobalPolicyFields):
    """Spec of a cluster-wide GlobalNetworkPolicy."""

    @pydantic.model_validator(mode="after")
    def _checks(self) -> GlobalNetworkPolicySpec:
        raise_problems(self._global_problems())
        self._fill_types()
        return self


def _staged_problems(spec: PolicySpecBase, base_problems: list[tuple[Loc, str]]) -> list[tuple[Loc, str]]:
    action = getattr(spec, "stagedAction", None)
    if action != "Delete":
        return base_problems
    filled = [name for name in spec.model_fields_set if name not in ("tier", "stagedAction")
              and getattr(spec, name) not in (None, False, [], "")]
    return [((name,), "must be empty when stagedAction is Delete (only tier may be set)") for name in sorted(filled)]


class StagedNetworkPolicySpec(PolicySpecBase):
    """Spec of a StagedNetworkPolicy: a NetworkPolicy plus the staged action."""

    stagedAction: StagedAction | None = None  # type: ignore[valid-type]

    @pydantic.model_validator(mode="after")
    def _checks(self) -> StagedNetworkPolicySpec:
        raise_problems(_staged_problems(self, self._policy_problems()))
        if self.stagedAction != "Delete":
            self._fill_types()
        return self


class StagedGlobalNetworkPolicySpec(GlobalPolicyFields):
    """Spec of a StagedGlobalNetworkPolicy: a GlobalNetworkPolicy plus the staged action."""

    stagedAction: StagedAction | None = None  # type: ignore[valid-type]

    @pydantic.model_validator(mode="after")
    def _checks(self) -> StagedGlobalNetworkPolicySpec:
        raise_problems(_staged_problems(self, self._global_problems()))
        if self.stagedAction != "Delete":
            self._fill_types()
        return self


@register
class NetworkPolicy(KindBase):
    """A namespaced Calico network policy."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="NetworkPolicy", plural="networkpolicies", namespaced=True,
        aliases=("networkpolicy", "networkpolicies", "policy", "np", "policies", "pol", "pols"),
    )
    kind: Literal["NetworkPolicy"] = "NetworkPolicy"
    spec: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)
    status: dict[str, Any] | None = None

    @classmethod
    def check_name(cls, name: str) -> None:
        """NetworkPolicy names: a label, ``label.label``, or ``knp.default.``/``ossg.default.`` prefixed."""
        _check_policy_name(name, _NP_NAME_RE, "one or two dot-separated labels")


@register
class GlobalNetworkPolicy(KindBase):
    """A cluster-wide Calico network policy."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="GlobalNetworkPolicy", plural="globalnetworkpolicies", namespaced=False,
        aliases=("globalnetworkpolicy", "globalnetworkpolicies", "gnp", "gnps"),
    )
    kind: Literal["GlobalNetworkPolicy"] = "GlobalNetworkPolicy"
    spec: GlobalNetworkPolicySpec = Field(default_factory=GlobalNetworkPolicySpec)

    @classmethod
    def check_name(cls, name: str) -> None:
        """GlobalNetworkPolicy names: a label or ``label.label``."""
        _check_policy_name(name, _GNP_NAME_RE, "one or two dot-separated labels")


@register
class StagedNetworkPolicy(KindBase):
    """A NetworkPolicy staged for preview (not enforced)."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="StagedNetworkPolicy", plural="stagednetworkpolicies", namespaced=True,
        aliases=("stagednetworkpolicy", "stagednetworkpolicies", "stagedpolicy", "snp", "stagedpolicies",
                 "spol", "spols"),
    )
    kind: Literal["StagedNetworkPolicy"] = "StagedNetworkPolicy"
    spec: StagedNetworkPolicySpec = Field(default_factory=StagedNetworkPolicySpec)

    @classmethod
    def check_name(cls, name: str) -> None:
        """Same names as NetworkPolicy."""
        _check_policy_name(name, _NP_NAME_RE, "one or two dot-separated labels")


@register
class StagedGlobalNetworkPolicy(KindBase):
    """A GlobalNetworkPolicy staged for preview (not enforced)."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="StagedGlobalNetworkPolicy", plural="stagedglobalnetworkpolicies", namespaced=False,
        aliases=("stagedglobalnetworkpolicy", "stagedglobalnetworkpolicies", "sgnp", "sgnps"),
    )
    kind: Literal["StagedGlobalNetworkPolicy"] = "StagedGlobalNetworkPolicy"
    spec: StagedGlobalNetworkPolicySpec = Field(default_factory=StagedGlobalNetworkPolicySpec)

    @classmethod
    def check_name(cls, name: str) -> None:
        """Same names as GlobalNetworkPolicy."""
        _check_policy_name(name, _GNP_NAME_RE, "one or two dot-separated labels")


class TierSpec(SpecModel):
    """Spec of a Tier."""

    order: Order | None = None
    defaultAction: choice("defaultAction", "Deny", "Pass") | None = None  # type: ignore[valid-type]


@register
class Tier(KindBase):
    """An ordered group of policies; ``Pass`` jumps to the next tier."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="Tier", plural="tiers", namespaced=False, aliases=("tier", "tiers"))
    kind: Literal["Tier"] = "Tier"
    spec: TierSpec = Field(default_factory=TierSpec)

    @classmethod
    def check_name(cls, name: str) -> None:
        """Tier names are DNS-1123 labels (no dots: they prefix policy names)."""
        check_label_name(name)

    @pydantic.model_validator(mode="after")
    def _static_order(self) -> Tier:
        fixed = STATIC_TIER_ORDERS.get(self.metadata.name)
        if fixed is not None:
            if self.spec.order is None:
                self.spec.order = fixed
            elif self.spec.order != fixed:
                raise_problems([(("spec", "order"), f"{self.metadata.name} tier order must be {int(fixed)}")])
        return self
