"""The ``-o ps`` and ``-o wide`` columns of each kind, as calicoctl's resourcemgr defines them.

Each kind has its ps headings, its wide headings and one cell function per
heading (also usable with ``-o custom-columns=A,B``). Cells render values the
way Go's text/template does for calicoctl: booleans ``true``/``false``, unset
pointers ``<nil>``, lists joined with commas. Namespaced kinds also have a
``NAMESPACE`` cell, put first when ``-n`` or ``-A`` is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Doc = Mapping[str, Any]

DEFAULT_AS_NUMBER = "64512"


@dataclass
class TableContext:
    """Cluster facts some cells need (the default AS number for Node's ASN column)."""

    as_number: str = DEFAULT_AS_NUMBER


Cell = Callable[[Doc, TableContext], str]


@dataclass(frozen=True)
class KindColumns:
    """The ps and wide headings of a kind and how to render each heading's cell."""

    ps: tuple[str, ...]
    wide: tuple[str, ...]
    cells: Mapping[str, Cell] = field(default_factory=dict)

    def headings(self, wide: bool) -> tuple[str, ...]:
        """The default headings for ``-o wide`` (True) or ``-o ps`` (False)."""
        return self.wide if wide else self.ps


# ---------------------------------------------------------------- Go-style values


def go_value(value: Any, unset: str) -> str:
    """Render one scalar as Go's template would; ``unset`` is what a missing field shows."""
    if value is None:
        return unset
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value(v, '')}" for k, v in sorted(value.items())) + "]"
    return str(value)


def join_and_truncate(items: Any, sep: str, max_len: int = 0) -> str:
    """calicoctl's joinAndTruncate: maps become sorted ``k=v``; past ``max_len`` the text ends in ``...``."""
    if items is None:
        return ""
    if isinstance(items, dict):
        items = sorted(f"{k}={go_value(v, '')}" for k, v in items.items())
    if not isinstance(items, list):
        items = [items]
    out = ""
    for i, item in enumerate(items):
        if i:
            out += sep
        out += go_struct(item)
        if 0 < max_len < len(out):
            return out[: max_len - 3] + "..."
    return out


def go_struct(value: Any) -> str:
    """Render a list element; a struct prints as ``{field field}`` like Go's %v."""
    if isinstance(value, dict):
        return "{" + " ".join(go_value(v, "") for v in value.values()) + "}"
    return go_value(value, "")


def _get(doc: Doc, path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def text(path: str) -> Cell:
    """A string field (unset shows empty)."""
    return lambda doc, ctx: go_value(_get(doc, path), "")


def flag(path: str) -> Cell:
    """A bool field (unset shows false)."""
    return lambda doc, ctx: go_value(_get(doc, path), "false")


def number(path: str) -> Cell:
    """An integer field (unset shows 0)."""
    return lambda doc, ctx: go_value(_get(doc, path), "0")


def pointer(path: str, unset: str = "<nil>") -> Cell:
    """An optional (pointer) field: unset shows ``<nil>`` or the given placeholder."""
    return lambda doc, ctx: go_value(_get(doc, path), unset)


def or_default(path: str, default: str) -> Cell:
    """``{{if .X}}{{.X}}{{else}}default{{end}}``."""
    return lambda doc, ctx: go_value(_get(doc, path), default) if _get(doc, path) else default


def joined(path: str, max_len: int = 0) -> Cell:
    """A list (or map) field joined with commas, truncated past ``max_len`` when given."""
    return lambda doc, ctx: join_and_truncate(_get(doc, path), ",", max_len)


def count(*paths: str) -> Cell:
    """How many elements the list fields hold together."""
    return lambda doc, ctx: str(sum(len(_get(doc, p) or []) for p in paths))


NAME = text("metadata.name")
NAMESPACE = text("metadata.namespace")


def _peer_node(doc: Doc, ctx: TableContext) -> str:
    node = _get(doc, "spec.node") or ""
    if node:
        return str(node)
    selector = _get(doc, "spec.nodeSelector") or ""
    return str(selector) if selector else "(global)"


def _node_asn(doc: Doc, ctx: TableContext) -> str:
    bgp = _get(doc, "spec.bgp")
    if not bgp:
        return ""
    asn = bgp.get("asNumber")
    return go_value(asn, "") if asn else f"({ctx.as_number})"


def _node_address(key: str) -> Cell:
    def cell(doc: Doc, ctx: TableContext) -> str:
        bgp = _get(doc, "spec.bgp") or {}
        return go_value(bgp.get(key), "") if bgp.get(key) else ""

    return cell


def _workload(doc: Doc, ctx: TableContext) -> str:
    workload = _get(doc, "spec.workload")
    return go_value(workload, "") if workload else go_value(_get(doc, "spec.pod"), "")


_POLICY_CELLS: dict[str, Cell] = {
    "NAME": NAME, "NAMESPACE": NAMESPACE, "TIER": text("spec.tier"),
    "ORDER": pointer("spec.order"), "SELECTOR": text("spec.selector"),
}

COLUMNS: dict[str, KindColumns] = {
    "NetworkPolicy": KindColumns(("NAME", "TIER"), ("NAME", "TIER", "ORDER", "SELECTOR"), _POLICY_CELLS),
    "StagedNetworkPolicy": KindColumns(("NAME", "TIER"), ("NAME", "TIER", "ORDER", "SELECTOR"), _POLICY_CELLS),
    "GlobalNetworkPolicy": KindColumns(
        ("NAME",), ("NAME", "ORDER", "SELECTOR"),
        {"NAME": NAME, "ORDER": pointer("spec.order"), "SELECTOR": text("spec.selector")},
    ),
    "StagedGlobalNetworkPolicy": KindColumns(
        ("NAME", "TIER"), ("NAME", "TIER", "ORDER", "SELECTOR"),
        {"NAME": NAME, "TIER": text("spec.tier"), "ORDER": pointer("spec.order"), "SELECTOR": text("spec.selector")},
    ),
    "StagedKubernetesNetworkPolicy": KindColumns(
        ("NAME",), ("NAME", "PODSELECTOR"),
        {"NAME": NAME, "NAMESPACE": NAMESPACE, "PODSELECTOR": pointer("spec.podSelector", "{[] []}")},
    ),
    "Tier": KindColumns(("NAME", "ORDER"), ("NAME", "ORDER"), {"NAME": NAME, "ORDER": pointer("spec.order")}),
    "IPPool": KindColumns(
        ("NAME", "CIDR", "SELECTOR"),
        ("NAME", "CIDR", "NAT", "IPIPMODE", "VXLANMODE", "DISABLED", "DISABLEBGPEXPORT", "SELECTOR"),
        {
            "NAME": NAME, "CIDR": text("spec.cidr"), "NAT": flag("spec.natOutgoing"),
            "IPIPMODE": or_default("spec.ipipMode", "Never"), "VXLANMODE": or_default("spec.vxlanMode", "Never"),
            "DISABLED": flag("spec.disabled"), "DISABLEBGPEXPORT": flag("spec.disableBGPExport"),
            "SELECTOR": text("spec.nodeSelector"),
        },
    ),
    "IPReservation": KindColumns(
        ("NAME",), ("NAME", "CIDRS"), {"NAME": NAME, "CIDRS": joined("spec.reservedCIDRs", 80)},
    ),
    "BGPConfiguration": KindColumns(
        ("NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"),
        ("NAME", "LOGSEVERITY", "MESHENABLED", "ASNUMBER"),
        {
            "NAME": NAME, "LOGSEVERITY": text("spec.logSeverityScreen"),
            "MESHENABLED": pointer("spec.nodeToNodeMeshEnabled", "-"), "ASNUMBER": pointer("spec.asNumber", "-"),
        },
    ),
    "BGPPeer": KindColumns(
        ("NAME", "PEERIP", "NODE", "ASN"), ("NAME", "PEERIP", "NODE", "ASN"),
        {"NAME": NAME, "PEERIP": text("spec.peerIP"), "NODE": _peer_node, "ASN": number("spec.asNumber")},
    ),
    "BGPFilter": KindColumns(
        ("NAME", "NUMEXPORT", "NUMIMPORT"), ("NAME", "NUMEXPORT", "NUMIMPORT"),
        {"NAME": NAME, "NUMEXPORT": count("spec.exportV4", "spec.exportV6"),
         "NUMIMPORT": count("spec.importV4", "spec.importV6")},
    ),
    "ClusterInformation": KindColumns(
        ("NAME", "CLUSTERGUID", "CLUSTERTYPE", "CALICOVERSION", "DATASTOREREADY"),
        ("NAME", "CLUSTERGUID", "CLUSTERTYPE", "CALICOVERSION", "DATASTOREREADY"),
        {
            "NAME": NAME, "CLUSTERGUID": text("spec.clusterGUID"), "CLUSTERTYPE": text("spec.clusterType"),
            "CALICOVERSION": text("spec.calicoVersion"), "DATASTOREREADY": pointer("spec.datastoreReady"),
        },
    ),
    "FelixConfiguration": KindColumns(("NAME",), ("NAME",), {"NAME": NAME}),
    "KubeControllersConfiguration": KindColumns(("NAME",), ("NAME",), {"NAME": NAME}),
    "GlobalNetworkSet": KindColumns(("NAME",), ("NAME", "NETS"), {"NAME": NAME, "NETS": joined("spec.nets", 80)}),
    "NetworkSet": KindColumns(
        ("NAME",), ("NAME", "NETS"), {"NAME": NAME, "NAMESPACE": NAMESPACE, "NETS": joined("spec.nets", 80)},
    ),
    "HostEndpoint": KindColumns(
        ("NAME", "NODE"), ("NAME", "NODE", "INTERFACE", "IPS", "PROFILES"),
        {
            "NAME": NAME, "NODE": text("spec.node"), "INTERFACE": text("spec.interfaceName"),
            "IPS": joined("spec.expectedIPs"), "PROFILES": joined("spec.profiles"),
        },
    ),
    "Node": KindColumns(
        ("NAME",), ("NAME", "ASN", "IPV4", "IPV6"),
        {"NAME": NAME, "ASN": _node_asn, "IPV4": _node_address("ipv4Address"), "IPV6": _node_address("ipv6Address")},
    ),
    "Profile": KindColumns(("NAME",), ("NAME", "LABELS"), {"NAME": NAME, "LABELS": joined("spec.labelsToApply")}),
    "WorkloadEndpoint": KindColumns(
        ("WORKLOAD", "NODE", "NETWORKS", "INTERFACE"),
        ("NAME", "WORKLOAD", "NODE", "NETWORKS", "INTERFACE", "PROFILES", "NATS"),
        {
            "NAME": NAME, "NAMESPACE": NAMESPACE, "NODE": text("spec.node"),
            "ORCHESTRATOR": text("spec.orchestrator"), "WORKLOAD": _workload,
            "NETWORKS": joined("spec.ipNetworks"), "NATS": joined("spec.ipNATs"),
            "PROFILES": joined("spec.profiles"), "INTERFACE": text("spec.interfaceName"),
        },
    ),
    "IPAMConfiguration": KindColumns(
        ("NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS"),
        ("NAME", "STRICTAFFINITY", "AUTOALLOCATEBLOCKS", "MAXBLOCKSPERHOST"),
        {
            "NAME": NAME, "STRICTAFFINITY": flag("spec.strictAffinity"),
            "AUTOALLOCATEBLOCKS": flag("spec.autoAllocateBlocks"), "MAXBLOCKSPERHOST": number("spec.maxBlocksPerHost"),
        },
    ),
    "CalicoNodeStatus": KindColumns(
        ("NAME", "NODE"), ("NAME", "NODE", "CLASSES"),
        {"NAME": NAME, "NODE": text("spec.node"), "CLASSES": joined("spec.classes")},
    ),
}


def columns_for(kind: str, namespaced: bool) -> KindColumns:
    """The columns of a kind; a kind calicoctl has no table for shows its name (and namespace)."""
    known = COLUMNS.get(kind)
    if known is not None:
        return known
    cells: dict[str, Cell] = {"NAME": NAME}
    if namespaced:
        cells["NAMESPACE"] = NAMESPACE
    return KindColumns(("NAME",), ("NAME",), cells)
