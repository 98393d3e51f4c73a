"""Errors the policy oracle raises: bad flows, and flows whose verdict the inputs do not decide."""

from __future__ import annotations

from libcalico.errors import CalicoError


class OracleError(CalicoError):
    """Base class of every error the oracle raises."""


class FlowError(OracleError, ValueError):
    """The flow cannot be evaluated as given: an unknown or ambiguous endpoint, a bad protocol or port,
    or endpoints without an address of the flow's IP version."""


class AmbiguousFlow(OracleError):
    """The verdict depends on something the flow or the inputs do not pin down.

    ``where`` names the rule that could not be decided (``ingress: default/web (tier default) rule 2``)
    and ``reason`` what is missing (a source port, a CIDR that only partly overlaps a rule's
    networks, a Kubernetes Service match).
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"{where}: cannot decide: {reason}")
        self.where = where
        self.reason = reason
