"""The policy oracle: given the datastore's endpoints, profiles, tiers and policies and a flow,
which verdict Calico's dataplane reaches and exactly which tier, policy and rule (or profile, or
default) decides it, per direction.

    >>> oracle = Oracle.from_resources(resources)
    >>> verdict = oracle.evaluate(Flow("default/web-0", "default/db-0", "tcp", port=5432))
    >>> verdict.allowed, str(verdict.ingress)
    (False, 'ingress: default/deny-all (tier default) rule 0 Deny')

Pure: no I/O. Semantics, with their sources in Calico, are in docs/oracle.md.
"""

from libcalico.oracle.errors import AmbiguousFlow, FlowError, OracleError
from libcalico.oracle.flow import Flow, Packet, protocol_number
from libcalico.oracle.oracle import Oracle
from libcalico.oracle.verdict import Decision, FlowSummary, Reason, Verdict

__all__ = [
    "AmbiguousFlow",
    "Decision",
    "Flow",
    "FlowError",
    "FlowSummary",
    "Oracle",
    "OracleError",
    "Packet",
    "Reason",
    "Verdict",
    "protocol_number",
]
