"""Felix's calculation graph: from the felix syncer's updates to the dataplane's messages.

Pure and synchronous, as Calico's ``felix/calc``: no I/O, no clock, no asyncio.
:class:`CalcGraph` is the entry point; :mod:`services.felix.messages` is what
comes out. The nodes, each in its own module:

- :mod:`.dispatcher` — routes updates by key type;
- :mod:`.endpoints` — endpoint and network-set records, the local-endpoint filter;
- :mod:`.inheritance` — labels inherited from profiles;
- :mod:`.active_rules` — which policies and profiles apply to which local endpoint;
- :mod:`.scoping`, :mod:`.rules`, :mod:`.rule_scanner` — rules compiled to IP-set ids;
- :mod:`.ipsets` — IP-set membership over every endpoint and network set;
- :mod:`.policy_sorter` — tiers and policy order;
- :mod:`.routes` — routes, VXLAN tunnel endpoints, IP pools;
- :mod:`.config` — FelixConfiguration merged for this node;
- :mod:`.sequencer` — what to send, in which order.
"""

from services.felix.calc.graph import CalcGraph, GraphStats

__all__ = ["CalcGraph", "GraphStats"]
