"""Policy and profile records: what the graph keeps of a NetworkPolicy, GlobalNetworkPolicy or Profile.

How it works::

    stored map ──accepts(kind, map)?──yes──► record_from_map(map)       (no model: the fast path)
        │ no / no fast check                      ▲
        ▼                                         │ the same map, normalised
    parse_resource(map) ──► model ──► model.spec.model_dump()

Both ways read one camelCase map with the same function, so they cannot
drift apart: the model's dump only adds what the model fills in (``tier``,
``types``) or normalises (ports ``"80"`` → ``80``), and the reader fills in
and reads them the same way. Rules stay maps until a policy becomes active
and :mod:`.rules` compiles them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from libcalico.selector import Selector
from services.felix.calc.scoping import policy_selector
from services.felix.messages import PolicyID

if TYPE_CHECKING:
    from libcalico.resources import GlobalNetworkPolicy, NetworkPolicy, Profile

NETWORK_POLICY = "NetworkPolicy"
# Calico's defaults, as the policy models have them (libcalico.resources.policy; a test keeps them equal):
# these modules do not import the models, which start-up would pay for even when the fast path decodes all.
DEFAULT_TIER = "default"
STATIC_TIER_ORDERS = {"default": 1_000_000.0, "kube-admin": 1_000.0, "kube-baseline": 10_000_000.0}
GLOBAL_NETWORK_POLICY = "GlobalNetworkPolicy"

RuleMaps = tuple[Mapping[str, Any], ...]


@dataclass(frozen=True, slots=True)
class PolicyRecord:
    """What the graph keeps of one enforced policy."""

    key: str
    id: PolicyID
    namespace: str | None
    selector: Selector
    order: float
    ingress: bool
    egress: bool
    untracked: bool
    pre_dnat: bool
    apply_on_forward: bool
    kind: str
    name: str  # metadata.name
    inbound_rules: RuleMaps
    outbound_rules: RuleMaps
    # Order within a tier: Felix's PolKVLess, order then ``<name>/<namespace>/<kind>`` (made once: every
    # flush sorts each endpoint's policies by it).
    sort_key: tuple[float, str] = field(compare=False)


class ProfileRecord(NamedTuple):
    """What the graph keeps of one Profile: the labels it gives and its rules."""

    labels: Mapping[str, str] | None
    inbound_rules: RuleMaps
    outbound_rules: RuleMaps


def default_types(ingress: Sequence[Any] | None, egress: Sequence[Any] | None) -> list[str]:
    """Calico's policy types when none are given."""
    if not egress:
        return ["Ingress"]
    if not ingress:
        return ["Egress"]
    return ["Ingress", "Egress"]


def _rules(value: Sequence[Mapping[str, Any]] | None) -> RuleMaps:
    return tuple(value) if value else ()


def policy_from_map(key: str, kind: str, name: str, namespace: str | None, spec: Mapping[str, Any]) -> PolicyRecord:
    """The record of a policy from its (valid) spec map, with its scoped selector."""
    ingress, egress = spec.get("ingress"), spec.get("egress")
    types = spec.get("types")
    if types is None:
        types = default_types(ingress, egress)
    if kind == NETWORK_POLICY:
        namespace = namespace or "default"
        selector = policy_selector(spec.get("selector"), namespace, None, spec.get("serviceAccountSelector"))
        full_name = f"{namespace}/{name}"
        untracked = pre_dnat = False
        forward = True
    else:
        namespace = None
        selector = policy_selector(spec.get("selector"), None, spec.get("namespaceSelector"),
                                   spec.get("serviceAccountSelector"))
        full_name = name
        untracked, pre_dnat = bool(spec.get("doNotTrack")), bool(spec.get("preDNAT"))
        forward = bool(spec.get("applyOnForward"))
    order = spec.get("order")
    order = math.inf if order is None else float(order)
    return PolicyRecord(
        key=key,
        id=PolicyID(spec.get("tier") or DEFAULT_TIER, full_name),
        namespace=namespace,
        selector=selector,
        order=order,
        ingress="Ingress" in types,
        egress="Egress" in types,
        untracked=untracked,
        pre_dnat=pre_dnat,
        apply_on_forward=forward,
        kind=kind,
        name=name,
        inbound_rules=_rules(ingress),
        outbound_rules=_rules(egress),
        sort_key=(order, f"{name}/{namespace or ''}/{kind}"),
    )


def policy_from_stored(key: str, value: Mapping[str, Any]) -> PolicyRecord:
    """The record of a stored policy map that is known to be valid (the fast path)."""
    meta = value["metadata"]
    return policy_from_map(key, value["kind"], meta["name"], meta.get("namespace"), value.get("spec") or {})


def policy_record(key: str, policy: NetworkPolicy | GlobalNetworkPolicy) -> PolicyRecord:
    """The record of a validated NetworkPolicy or GlobalNetworkPolicy model."""
    meta = policy.metadata
    return policy_from_map(key, policy.kind, meta.name, meta.namespace, policy.spec.model_dump())


def profile_from_stored(key: str, value: Mapping[str, Any]) -> ProfileRecord:
    """The record of a stored Profile map that is known to be valid (the fast path)."""
    return _profile(value.get("spec") or {})


def profile_record(key: str, profile: Profile) -> ProfileRecord:
    """The record of a validated Profile model."""
    return _profile(profile.spec.model_dump())


def _profile(spec: Mapping[str, Any]) -> ProfileRecord:
    return ProfileRecord(spec.get("labelsToApply"), _rules(spec.get("ingress")), _rules(spec.get("egress")))
