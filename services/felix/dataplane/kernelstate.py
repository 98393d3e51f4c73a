"""Reading the ``inet calico`` table back from the kernel (``nft -j list table``) as a :class:`TableState`.

Rules are identified by their ``cali:<hash>`` comments; a rule without one
(added by someone else) reads as an empty hash, so its chain never matches
what we programmed and is rewritten.
"""

from __future__ import annotations

from typing import Any

from services.felix.dataplane.ipsets import MapDef, SetDef, normalize_element, normalize_verdict
from services.felix.dataplane.ruleset import BaseSpec, TableState


def parse_table(listing: dict[str, Any] | None) -> TableState | None:
    """The table's state from nft JSON, or None when the table does not exist."""
    if listing is None:
        return None
    state = TableState()
    hashes: dict[str, list[str]] = {}
    for item in listing.get("nftables", []):
        if "chain" in item:
            chain = item["chain"]
            base = None
            if "hook" in chain:
                base = BaseSpec(chain.get("type", "filter"), chain["hook"], int(chain.get("prio", 0)),
                                chain.get("policy", "accept"))
            state.chains[chain["name"]] = (base, ())
            hashes.setdefault(chain["name"], [])
        elif "rule" in item:
            rule = item["rule"]
            comment = rule.get("comment", "")
            hashes.setdefault(rule["chain"], []).append(comment[5:] if comment.startswith("cali:") else "")
        elif "set" in item:
            data = item["set"]
            setdef = SetDef(data["name"], _type_text(data.get("type")), "interval" in data.get("flags", []))
            elems = frozenset(normalize_element(e) for e in data.get("elem", []))
            state.sets[data["name"]] = (setdef, elems)
        elif "map" in item:
            data = item["map"]
            mapdef = MapDef(data["name"], f"{_type_text(data.get('type'))} : {data.get('map', '')}")
            entries = {normalize_element(key): normalize_verdict(value) for key, value in data.get("elem", [])}
            state.maps[data["name"]] = (mapdef, entries)
    for name, (base, _empty) in list(state.chains.items()):
        state.chains[name] = (base, tuple(hashes.get(name, [])))
    return state


def _type_text(value: Any) -> str:
    if isinstance(value, list):
        return " . ".join(str(v) for v in value)
    return str(value)
