"""The Profile kind: rules and labels shared by the endpoints that reference it.

Kubernetes-derived profiles are named ``kns.<namespace>`` and
``ksa.<namespace>.<serviceaccount>``; both are valid DNS-1123 subdomains.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic
from pydantic import Field

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import (
    KindBase,
    Loc,
    SpecModel,
    label_value_problem,
    qualified_name_problem,
    raise_problems,
)
from libcalico.resources.rules import Rule, rules_direction_problems


class ProfileSpec(SpecModel):
    """Spec of a Profile."""

    ingress: list[Rule] | None = None
    egress: list[Rule] | None = None
    labelsToApply: dict[str, str] | None = None

    @pydantic.model_validator(mode="after")
    def _checks(self) -> ProfileSpec:
        problems: list[tuple[Loc, str]] = []
        for field in ("ingress", "egress"):
            if len(getattr(self, field) or []) > 1024:
                problems.append(((field,), "at most 1024 rules are allowed"))
        for key, value in (self.labelsToApply or {}).items():
            reason = qualified_name_problem(key) or label_value_problem(value)
            if reason:
                problems.append((("labelsToApply", key), f"invalid label {reason}"))
        problems += rules_direction_problems(self.ingress, self.egress)
        raise_problems(problems)
        return self


@register
class Profile(KindBase):
    """A security profile."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="Profile", plural="profiles", namespaced=False,
                                        aliases=("profile", "profiles", "pro", "pros"))
    kind: Literal["Profile"] = "Profile"
    spec: ProfileSpec = Field(default_factory=ProfileSpec)
