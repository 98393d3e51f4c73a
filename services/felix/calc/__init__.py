"""Felix's calculation graph: from the felix syncer's updates to the dataplane's messages.

Pure and synchronous, as Calico's ``felix/calc``: no I/O, no clock, no asyncio.
Importing it does not import the resource models (pydantic): values the
syncer's fast path vouches for are read as stored maps, and the models are
imported only when a value needs them.
:class:`CalcGraph` is the entry point; :mod:`services.felix.messages` is what
comes out. The nodes, each in its own module:

- :mod:`.dispatcher` — routes updates by key type, decoding each (stored map or model);
- :mod:`.endpoints` — endpoint and network-set records, the local-endpoint filter;
- :mod:`.policies` — policy and profile records, from the stored map or the model alike;
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
