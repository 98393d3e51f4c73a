"""The manifest corpora: valid manifests load unchanged (plus Calico's defaults); invalid ones fail exactly."""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any

import pytest
import yaml

from libcalico.errors import MultiValidationError, ValidationError
from libcalico.resources import all_kinds, load_documents, parse_resource

MANIFESTS = pathlib.Path(__file__).resolve().parent.parent / "data" / "manifests"
VALID = sorted((MANIFESTS / "valid").iterdir())
INVALID = sorted((MANIFESTS / "invalid").iterdir())

POLICY_KINDS = {"NetworkPolicy", "GlobalNetworkPolicy", "StagedNetworkPolicy", "StagedGlobalNetworkPolicy"}
STATIC_TIER_ORDERS = {"default": 1_000_000, "kube-admin": 1_000, "kube-baseline": 10_000_000}


def raw_documents(path: pathlib.Path) -> list[dict[str, Any]]:
    """The documents of a corpus file as plain data, with ``kind: List`` expanded."""
    text = path.read_text()
    if path.suffix == ".json":
        data = json.loads(text)
        docs = data if isinstance(data, list) else [data]
    else:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    out: list[dict[str, Any]] = []
    for doc in docs:
        out.extend(doc["items"] if doc.get("kind") == "List" else [doc])
    return out


def with_calico_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    """What Calico stores for ``doc``: the input plus the defaults its client fills in."""
    out = copy.deepcopy(doc)
    kind, spec = out["kind"], out.setdefault("spec", {})
    if kind in POLICY_KINDS:
        spec.setdefault("tier", "default")
        if spec.get("stagedAction") != "Delete" and "types" not in spec:
            if not spec.get("egress"):
                spec["types"] = ["Ingress"]
            elif not spec.get("ingress"):
                spec["types"] = ["Egress"]
            else:
                spec["types"] = ["Ingress", "Egress"]
    elif kind == "IPPool":
        v6 = ":" in spec["cidr"]
        for key, value in {"vxlanMode": "Never", "ipipMode": "Never", "natOutgoing": False,
                           "blockSize": 122 if v6 else 26, "nodeSelector": "all()",
                           "allowedUses": ["Workload", "Tunnel"], "assignmentMode": "Automatic"}.items():
            spec.setdefault(key, value)
    elif kind == "Tier" and out["metadata"]["name"] in STATIC_TIER_ORDERS:
        spec.setdefault("order", STATIC_TIER_ORDERS[out["metadata"]["name"]])
    elif kind == "IPAMConfiguration":
        spec.setdefault("strictAffinity", False)
        spec.setdefault("autoAllocateBlocks", True)
    elif kind == "KubeControllersConfiguration":
        spec.setdefault("controllers", {})
    return out


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_valid_manifest_loads_unchanged(path: pathlib.Path) -> None:
    raw = raw_documents(path)
    loaded = load_documents(path.read_text(), path.name)
    assert [r.kind for r in loaded] == [d["kind"] for d in raw]
    for resource, doc in zip(loaded, raw, strict=True):
        assert resource.to_dict() == with_calico_defaults(doc)


@pytest.mark.parametrize("path", VALID, ids=[p.name for p in VALID])
def test_valid_manifest_round_trips_through_wire_form(path: pathlib.Path) -> None:
    for resource in load_documents(path.read_text(), path.name):
        wire = json.loads(json.dumps(resource.to_dict()))
        again = parse_resource(wire)
        assert again == resource
        assert again.to_dict() == wire


def test_valid_corpus_covers_every_kind() -> None:
    seen = {r.kind for p in VALID for r in load_documents(p.read_text(), p.name)}
    assert seen == {cls.KIND.kind for cls in all_kinds()}


def _expectation(path: pathlib.Path) -> tuple[str, str]:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} must start with '# expect: <field>: <reason>'"
    field, sep, reason = first.removeprefix("# expect: ").partition(": ")
    assert sep and reason, f"{path.name}: expectation needs '<field>: <reason>'"
    return field, reason


@pytest.mark.parametrize("path", INVALID, ids=[p.name for p in INVALID])
def test_invalid_manifest_fails_with_exact_error(path: pathlib.Path) -> None:
    field, reason = _expectation(path)
    with pytest.raises(ValidationError) as info:
        load_documents(path.read_text(), path.name)
    err = info.value
    assert not isinstance(err, MultiValidationError), f"expected one error, got:\n{err}"
    assert err.field == field
    assert reason in err.reason
    assert err.source == f"{path.name} document 1"
    assert str(err) == f"{path.name} document 1: {err.field}: {err.reason}"


def test_invalid_corpus_is_large_and_touches_every_kind() -> None:
    kinds = set()
    for path in INVALID:
        kinds.add(yaml.safe_load(path.read_text())["kind"])
    assert len(INVALID) >= 100
    assert {cls.KIND.kind for cls in all_kinds()} <= kinds
