"""What the oracle answers: per direction, the decision and exactly what made it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class Reason(enum.Enum):
    """What kind of thing decided a direction."""

    RULE = "rule"                        # a policy rule's Allow or Deny
    END_OF_TIER = "end-of-tier"          # policies of a tier applied, none decided: the tier's Deny default
    PROFILE_RULE = "profile-rule"        # a profile rule's Allow or Deny
    PROFILE_MISSING = "profile-missing"  # the endpoint names a profile that does not exist: Felix denies
    DEFAULT_DENY = "default-deny"        # no policy decided and no profile allowed
    SAME_ENDPOINT = "same-endpoint"      # traffic from a pod to itself never reaches Felix


@dataclass(frozen=True)
class Decision:
    """The decision for one direction of a flow, and what made it.

    ``trail`` lists what was passed on the way (Pass rules, tiers whose default is Pass,
    Log rules that matched), one line each.
    """

    direction: str
    endpoint: str
    allowed: bool
    reason: Reason
    tier: str | None = None
    policy: str | None = None
    policy_kind: str | None = None
    rule_index: int | None = None
    profile: str | None = None
    policies_applied: bool = False
    trail: tuple[str, ...] = ()

    @property
    def action(self) -> str:
        """``Allow`` or ``Deny``."""
        return "Allow" if self.allowed else "Deny"

    def __str__(self) -> str:
        d = self.direction
        if self.reason is Reason.RULE:
            return f"{d}: {self.policy} (tier {self.tier}) rule {self.rule_index} {self.action}"
        if self.reason is Reason.END_OF_TIER:
            return (f"{d}: end of tier '{self.tier}' (default action Deny): no policy in tier matched "
                    "→ deny at end of tier")
        why = "all applicable tiers passed" if self.policies_applied else "no policy applies"
        if self.reason is Reason.PROFILE_RULE:
            return f"{d}: profile {self.profile} rule {self.rule_index} {self.action} ({why})"
        if self.reason is Reason.PROFILE_MISSING:
            return f"{d}: profile {self.profile} does not exist → Deny (Felix fails closed) ({why})"
        if self.reason is Reason.SAME_ENDPOINT:
            return f"{d}: source and destination are the same endpoint: the traffic never leaves it → Allow"
        if self.policies_applied:
            return f"{d}: all applicable tiers passed and no profile allowed → default deny"
        return f"{d}: no policies and no profile allowed → default deny"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (``explanation`` holds the one-line text)."""
        out: dict[str, Any] = {
            "direction": self.direction, "endpoint": self.endpoint, "action": self.action,
            "reason": self.reason.value, "explanation": str(self),
        }
        for key in ("tier", "policy", "policy_kind", "rule_index", "profile"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        out["policies_applied"] = self.policies_applied
        out["trail"] = list(self.trail)
        return out


@dataclass(frozen=True)
class FlowSummary:
    """The resolved flow: who talks to whom, at which addresses, with what."""

    source: str
    source_address: str
    destination: str
    destination_address: str
    protocol: str
    description: str

    def __str__(self) -> str:
        src = self.source if self.source == self.source_address else f"{self.source} ({self.source_address})"
        return f"{src} → {self.destination} ({self.destination_address}) {self.description}"


@dataclass(frozen=True)
class Verdict:
    """Allowed only if the source's egress (when the source is a local endpoint) and the destination's ingress allow."""

    flow: FlowSummary
    allowed: bool
    egress: Decision | None
    ingress: Decision
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        lines = [f"{'allowed' if self.allowed else 'denied'}: {self.flow}"]
        if self.egress is not None:
            lines.append(f"  {self.egress}")
            lines.extend(f"    passed: {t}" for t in self.egress.trail)
        else:
            lines.append("  egress: source is not a local endpoint: no egress policy")
        lines.append(f"  {self.ingress}")
        lines.extend(f"    passed: {t}" for t in self.ingress.trail)
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form."""
        return {
            "allowed": self.allowed,
            "flow": {
                "source": self.flow.source, "sourceAddress": self.flow.source_address,
                "destination": self.flow.destination, "destinationAddress": self.flow.destination_address,
                "protocol": self.flow.protocol, "description": self.flow.description,
            },
            "egress": self.egress.to_dict() if self.egress is not None else None,
            "ingress": self.ingress.to_dict(),
            "notes": list(self.notes),
        }
