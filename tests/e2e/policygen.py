"""Random but valid Calico policy sets for the differential test, and shrinking a failing one.

A set holds 0-2 extra tiers (order, default action) and 1-4 policies (global or namespaced,
in any tier, with an order or none, Ingress/Egress types) whose rules mix Allow, Deny and
Pass with protocols, ports (numbers and ranges, negated too), ICMP types, selectors,
notSelectors and nets, against the lab's labels ``pod`` and ``host``. Nothing in it needs
what a flow between two pods cannot say (no source ports, named ports or services).
"""

from __future__ import annotations

import copy
import random
from typing import Any

import yaml

Doc = dict[str, Any]
BUILTIN_TIERS = ("default", "kube-admin", "kube-baseline")


class PolicyGen:
    """Generates policy sets for a lab with these pods (named ``<host>-pod<j>``)."""

    def __init__(self, rng: random.Random, pods: list[str]) -> None:
        self.rng = rng
        self.pods = pods
        self.hosts = sorted({p.rsplit("-", 1)[0] for p in pods})

    def selector(self) -> str:
        r, p, h = self.rng, self.rng.choice(self.pods), self.rng.choice(self.hosts)
        q = r.choice(self.pods)
        return r.choice([
            "all()", "has(pod)", f"pod == '{p}'", f"pod != '{p}'", f"host == '{h}'", f"host != '{h}'",
            f"pod in {{'{p}', '{q}'}}", f"pod not in {{'{p}'}}", "has(nothing)",
            f"host == '{h}' && pod != '{p}'", f"host == '{h}' || pod == '{p}'",
        ])

    def rule(self, direction: str) -> Doc:
        r = self.rng
        rule: Doc = {"action": r.choice(["Allow", "Allow", "Deny", "Deny", "Pass"])}
        proto = r.choice([None, None, "TCP", "UDP", "ICMP"])
        peer = "source" if direction == "ingress" else "destination"
        local = "destination" if direction == "ingress" else "source"
        if proto is not None:
            rule["protocol"] = proto
        if proto in ("TCP", "UDP") and r.random() < 0.6:
            ports = r.choice([[8080], [9090], ["8000:8100"], [8080, 9090], ["9000:9999"]])
            rule.setdefault("destination", {})["notPorts" if r.random() < 0.25 else "ports"] = ports
        if proto == "ICMP" and r.random() < 0.4:
            rule["notICMP" if r.random() < 0.3 else "icmp"] = {"type": r.choice([8, 0])}
        x = r.random()
        if x < 0.5:
            rule.setdefault(peer, {})["selector"] = self.selector()
        elif x < 0.65:
            rule.setdefault(peer, {})["notSelector"] = self.selector()
        elif x < 0.8:
            key = "notNets" if r.random() < 0.3 else "nets"
            rule.setdefault(peer, {})[key] = [r.choice(["10.244.0.0/16", "192.0.2.0/24", "10.0.0.0/8"])]
        if r.random() < 0.15:
            rule.setdefault(local, {})["selector"] = self.selector()
        return rule

    def policy(self, index: int, tiers: list[str]) -> Doc:
        r = self.rng
        namespaced = r.random() < 0.5
        tier = r.choice(["default", "default", *tiers])
        types = r.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        spec: Doc = {"selector": self.selector(), "types": types}
        if tier != "default":
            spec["tier"] = tier
        order = r.choice([None, 1, 10, 100, 500])
        if order is not None:
            spec["order"] = order
        for t in types:
            direction = t.lower()
            rules = [self.rule(direction) for _ in range(r.randint(0, 3))]
            if rules:
                spec[direction] = rules
        meta: Doc = {"name": f"p{index}"}
        if namespaced:
            meta["namespace"] = "default"
        kind = "NetworkPolicy" if namespaced else "GlobalNetworkPolicy"
        return {"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta, "spec": spec}

    def policy_set(self) -> list[Doc]:
        """Tiers first, then policies."""
        r = self.rng
        tiers = [f"t{i}" for i in range(r.randint(0, 2))]
        docs: list[Doc] = []
        for name in tiers:
            spec: Doc = {"order": r.choice([10, 100, 300, 2000])}
            action = r.choice([None, "Deny", "Pass"])
            if action:
                spec["defaultAction"] = action
            docs.append({"apiVersion": "projectcalico.org/v3", "kind": "Tier", "metadata": {"name": name},
                         "spec": spec})
        docs += [self.policy(i, tiers) for i in range(r.randint(1, 4))]
        return docs


def to_yaml(docs: list[Doc]) -> str:
    """The set as one multi-document manifest."""
    return yaml.safe_dump_all(docs, sort_keys=False)


def smaller_sets(docs: list[Doc]) -> list[list[Doc]]:
    """Every set one step smaller: one policy, one unused tier, or one rule fewer."""
    out: list[list[Doc]] = []
    used_tiers = {d["spec"].get("tier", "default") for d in docs if d["kind"] != "Tier"}
    for i, d in enumerate(docs):
        if d["kind"] == "Tier" and d["metadata"]["name"] in used_tiers:
            continue
        out.append(docs[:i] + docs[i + 1:])
    for i, d in enumerate(docs):
        for direction in ("ingress", "egress"):
            for j in range(len(d["spec"].get(direction, []))):
                smaller = copy.deepcopy(docs)
                del smaller[i]["spec"][direction][j]
                if not smaller[i]["spec"][direction]:
                    del smaller[i]["spec"][direction]
                out.append(smaller)
    return out
