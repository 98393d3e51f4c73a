"""Manifests: the resources named by ``-f FILE|DIR|-``, all validated before any is used.

A manifest is multi-document YAML or JSON. A document may be one resource, a
``kind: List`` (or a typed list such as ``kind: IPPoolList``, as ``get -o yaml``
prints) or a top-level sequence of resources. A directory means every
``.yaml``, ``.yml`` and ``.json`` file in it, in sorted order (``-R`` descends
into subdirectories). Every problem in every document is collected, each
naming its file, document (and list item), field and reason; if there is any,
:class:`ManifestError` is raised and the caller writes nothing.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from libcalico.errors import MultiValidationError, ValidationError
from libcalico.resources.base import Resource, all_kinds, decode_documents, parse_resource
from services.calicoctl.errors import EmptyManifest, ManifestError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


@dataclass(frozen=True)
class Document:
    """One resource read from a manifest, and where it was found."""

    resource: Resource
    source: str


def manifest_files(path: str, recursive: bool = False) -> list[str]:
    """The files ``-f path`` stands for: the path itself, or the manifests in a directory, sorted."""
    if path == STDIN or not os.path.isdir(path):
        return [path]
    found: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        if not recursive:
            dirs.clear()
        for name in sorted(files):
            if name.lower().endswith(MANIFEST_SUFFIXES):
                found.append(os.path.join(root, name))
    return sorted(found) if not recursive else found


def _read(path: str) -> str:
    if path == STDIN:
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise ManifestError(f"open {path}: no such file or directory") from None
    except OSError as exc:
        raise ManifestError(f"open {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def _list_kinds() -> set[str]:
    return {"List"} | {f"{cls.KIND.kind}List" for cls in all_kinds()}


def _items(doc: Any, where: str, problems: list[ValidationError]) -> list[tuple[str, Any]]:
    if isinstance(doc, list):
        return [(f"{where} item {i}", item) for i, item in enumerate(doc, start=1)]
    if isinstance(doc, dict) and doc.get("kind") in _list_kinds():
        raw = doc.get("items")
        if raw is None:
            return []
        if not isinstance(raw, list):
            problems.append(ValidationError("items", f"a {doc['kind']} must have a list of items", source=where))
            return []
        return [(f"{where} item {i}", item) for i, item in enumerate(raw, start=1)]
    return [(where, doc)]


def parse_text(text: str, source: str) -> tuple[list[Document], list[ValidationError]]:
    """Parse one manifest's text into documents, and every problem found (each naming its place)."""
    problems: list[ValidationError] = []
    docs: list[Document] = []
    try:
        decoded = decode_documents(text, source)
    except ValidationError as exc:
        return [], [exc]
    # decode_documents flattens a top-level JSON array; count those as items of document 1.
    json_array = text.lstrip().startswith("[")
    for index, doc in enumerate(decoded, start=1):
        where = f"{source} item {index}" if json_array else f"{source} document {index}"
        for item_where, item in _items(doc, where, problems):
            try:
                docs.append(Document(parse_resource(item), item_where))
            except MultiValidationError as exc:
                problems.extend(e.with_source(item_where) for e in exc.errors)
            except ValidationError as exc:
                problems.append(exc.with_source(item_where))
    return docs, problems


def load(path: str, recursive: bool = False, skip_empty: bool = False) -> list[Document]:
    """Every resource ``-f path`` names, validated; raise ManifestError (nothing usable) or EmptyManifest."""
    files = manifest_files(path, recursive)
    docs: list[Document] = []
    problems: list[ValidationError] = []
    for file in files:
        source = "stdin" if file == STDIN else file
        text = _read(file)
        found, bad = parse_text(text, source)
        problems.extend(bad)
        if not found and not bad and not skip_empty:
            raise EmptyManifest(f"No resources specified in file {source}")
        docs.extend(found)
    if problems:
        raise ManifestError("\n".join(str(p) for p in problems))
    if not docs and not skip_empty:
        raise EmptyManifest(f"No resources specified in directory {path}")
    return docs

