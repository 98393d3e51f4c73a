"""Rendering ``get`` results: yaml, json, ps and wide tables, custom columns and names.

What gets printed mirrors calicoctl: listing a kind prints that kind's list
object (``kind: IPPoolList`` with ``items`` and the listing's
``metadata.resourceVersion``); one named resource prints the resource itself;
several named resources print a ``kind: List`` holding them. YAML keys are
sorted as Go's YAML encoder sorts them. Tables are laid out like Go's
tabwriter with calicoctl's settings (minimum width 5, padding 3), one table
per kind, each followed by an empty line.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from libcalico.resources.base import API_VERSION, Resource
from services.calicoctl.columns import KindColumns, TableContext, columns_for
from services.calicoctl.errors import CalicoctlError

TAB_MIN_WIDTH = 5
TAB_PADDING = 3
FORMATS = ("ps", "wide", "yaml", "yml", "json", "name")


@dataclass
class Listing:
    """Every resource of one kind (a list call), with the revision the list is consistent with."""

    cls: type[Resource]
    items: list[Resource]
    revision: int


Printable = Resource | Listing


@dataclass(frozen=True)
class OutputFormat:
    """A parsed ``-o`` value: its name and, for custom-columns, the headings asked for."""

    name: str
    headings: tuple[str, ...] = field(default=())


def parse_output(value: str) -> OutputFormat:
    """Parse ``-o``; raise CalicoctlError with Calico's wording for an unknown or empty format."""
    if value in FORMATS:
        return OutputFormat("yaml" if value == "yml" else value)
    key, _, rest = value.partition("=")
    if key == "custom-columns":
        if not rest:
            raise CalicoctlError("need to specify at least one column")
        return OutputFormat(key, tuple(rest.split(",")))
    if key in ("go-template", "go-template-file"):
        raise CalicoctlError(f"output format '{key}' is not supported by this calicoctl; use yaml, json, ps or wide")
    raise CalicoctlError(f"unrecognized output format '{value}'")


def wire(res: Resource, export: bool = False) -> dict[str, Any]:
    """A resource's wire form; ``export`` strips what belongs to one cluster."""
    doc = res.to_dict()
    if export:
        meta = doc.get("metadata", {})
        for key in ("namespace", "uid", "resourceVersion", "creationTimestamp", "deletionTimestamp",
                    "deletionGracePeriodSeconds"):
            meta.pop(key, None)
    return doc


def _list_doc(kind: str, items: list[dict[str, Any]], revision: int | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": kind, "items": items}
    doc["metadata"] = {"resourceVersion": str(revision)} if revision is not None else {}
    return doc


def document(results: Sequence[Printable], export: bool = False) -> Any:
    """The object ``-o yaml``/``-o json`` prints for these results."""
    if len(results) == 1:
        only = results[0]
        if isinstance(only, Listing):
            return _list_doc(f"{only.cls.KIND.kind}List", [wire(r, export) for r in only.items], only.revision)
        return wire(only, export)
    items: list[dict[str, Any]] = []
    for entry in results:
        items.extend(wire(r, export) for r in (entry.items if isinstance(entry, Listing) else [entry]))
    return _list_doc("List", items, None)


class _GoStyleDumper(yaml.SafeDumper):
    """Quote strings that need quoting with double quotes, as Go's YAML encoder does."""

    def choose_scalar_style(self) -> str:
        style: str = super().choose_scalar_style()
        return '"' if style == "'" else style


def to_yaml(data: Any) -> str:
    """YAML with keys sorted, block style, as calicoctl prints it."""
    return yaml.dump(data, Dumper=_GoStyleDumper, sort_keys=True, default_flow_style=False, allow_unicode=True,
                     width=1 << 20)


def to_json(data: Any) -> str:
    """Indented JSON followed by a newline."""
    return json.dumps(data, indent=2) + "\n"


def tabulate(rows: list[list[str]]) -> str:
    """Lay out tab-terminated cells as Go's tabwriter does with calicoctl's settings."""
    if not rows:
        return ""
    widths = [TAB_MIN_WIDTH] * max(len(r) for r in rows)
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell) + TAB_PADDING)
    return "".join("".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + "\n" for row in rows)


def _group(results: Sequence[Printable]) -> list[tuple[type[Resource], list[Resource]]]:
    groups: list[tuple[type[Resource], list[Resource]]] = []
    for entry in results:
        cls, items = (entry.cls, entry.items) if isinstance(entry, Listing) else (type(entry), [entry])
        if groups and groups[-1][0] is cls:
            groups[-1][1].extend(items)
        else:
            groups.append((cls, list(items)))
    return groups


def table(
    results: Sequence[Printable],
    fmt: OutputFormat,
    print_namespace: bool,
    ctx: TableContext,
) -> str:
    """The ps, wide or custom-columns tables for these results, one per kind."""
    out = ""
    for cls, items in _group(results):
        cols: KindColumns = columns_for(cls.KIND.kind, cls.KIND.namespaced)
        headings = list(fmt.headings) if fmt.name == "custom-columns" else list(cols.headings(fmt.name == "wide"))
        if print_namespace and "NAMESPACE" in cols.cells and fmt.name != "custom-columns":
            headings.insert(0, "NAMESPACE")
        for heading in headings:
            if heading not in cols.cells:
                raise CalicoctlError(f"Unknown heading {heading}, valid values are: {', '.join(sorted(cols.cells))}")
        rows = [headings]
        for res in items:
            doc = res.to_dict()
            rows.append([cols.cells[h](doc, ctx) for h in headings])
        out += tabulate(rows) + "\n"
    return out


def names(results: Sequence[Printable]) -> str:
    """``-o name``: one ``kind.projectcalico.org/name`` line per resource."""
    lines = []
    for _, items in _group(results):
        for res in items:
            lines.append(f"{res.KIND.kind.lower()}.projectcalico.org/{res.name}\n")
    return "".join(lines)


def needs_as_number(results: Sequence[Printable], fmt: OutputFormat) -> bool:
    """Whether rendering these results shows a Node's default AS number (which needs a lookup)."""
    if fmt.name not in ("wide", "custom-columns"):
        return False
    return any(cls.KIND.kind == "Node" for cls, _ in _group(results))


def render(results: Sequence[Printable], fmt: OutputFormat, print_namespace: bool, export: bool,
           ctx: TableContext) -> str:
    """The text ``get`` prints for these results in this format."""
    if fmt.name == "yaml":
        return to_yaml(document(results, export)) if results else ""
    if fmt.name == "json":
        return to_json(document(results, export)) if results else ""
    if fmt.name == "name":
        return names(results)
    return table(results, fmt, print_namespace, ctx)
