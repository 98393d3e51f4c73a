"""``fastview.model_view`` gives what the model gives, for every value the fast path vouches for.

For the manifest corpus, the rich seeds of the fast-path tests and randomized mutants of them
that ``accepts`` says True for: the view's ``model_dump()`` equals the model's (every field,
defaults and normalised values included), and so does the dump the graph's config merger
asks for (``mode="json", exclude_none=True, by_alias=True``); reading fields by attribute
gives the model's attribute values.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from libcalico.resources import parse_resource
from libcalico.syncer.fastpath import accepts
from libcalico.syncer.fastview import VIEW_KINDS, ModelView, model_view, rule_port
from services.felix.calc import dispatcher
from tests.unit import test_syncer_fastpath_config as config_tests
from tests.unit import test_syncer_fastpath_infra as infra_tests
from tests.unit.test_syncer_fastpath_kinds import (
    _GONE,
    REPLACEMENTS,
    Chooser,
    _changed,
    _documents,
    _paths,
    mutate,
)

SEEDS: dict[str, list[dict[str, Any]]] = {
    **{kind: infra_tests.SEEDS[kind] for kind in ("IPPool", "Node", "HostEndpoint")},
    "FelixConfiguration": config_tests.SEEDS,
}


def assert_same(kind: str, doc: dict[str, Any]) -> None:
    """The view and the model agree on one document the fast path accepts."""
    view, model = model_view(kind, doc), parse_resource(copy.deepcopy(doc))
    assert view.model_dump() == model.model_dump(), doc
    wanted = model.spec.model_dump(mode="json", exclude_none=True, by_alias=True)  # type: ignore[attr-defined]
    assert view.spec.model_dump(mode="json", exclude_none=True, by_alias=True) == wanted, doc
    assert_same_attributes(view, model)


def assert_same_attributes(view: Any, model: Any) -> None:
    """Every field read by attribute is what the model's attribute holds (views where the model has models)."""
    for name in type(model).model_fields:
        mine, theirs = getattr(view, name), getattr(model, name)
        if isinstance(mine, ModelView):
            assert_same_attributes(mine, theirs)
        elif isinstance(mine, list) and mine and isinstance(mine[0], ModelView):
            assert len(mine) == len(theirs)
            for a, b in zip(mine, theirs, strict=True):
                assert_same_attributes(a, b)
        else:
            assert mine == theirs and type(mine) is type(theirs), (name, mine, theirs)


def test_view_kinds_are_the_dispatchers() -> None:
    assert VIEW_KINDS == dispatcher.VIEW_KINDS


def test_corpus_views_equal_the_models() -> None:
    seen: dict[str, int] = {}
    for _, doc in _documents("valid"):
        kind = doc.get("kind")
        if kind in VIEW_KINDS and accepts(kind, doc):
            assert_same(kind, doc)
            seen[kind] = seen.get(kind, 0) + 1
    assert set(seen) == VIEW_KINDS, seen


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_seed_views_equal_the_models(kind: str) -> None:
    for doc in SEEDS[kind]:
        assert accepts(kind, doc)
        assert_same(kind, doc)


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_views_of_random_accepted_documents_equal_the_models(kind: str) -> None:
    c = Chooser(rnd=random.Random(f"fastview-{kind}"))
    compared = 0
    for _ in range(1500):
        doc = copy.deepcopy(c.pick(SEEDS[kind]))
        for _ in range(c.int(1, 2)):
            if kind == "FelixConfiguration" and c.int(0, 1):
                config_tests.mutate_field(c, doc)
            else:
                mutate(c, doc)
        if accepts(kind, doc):
            assert_same(kind, doc)
            compared += 1
    assert compared >= 30, compared  # (the mutations are made for policies: most break these kinds)


@pytest.mark.parametrize("kind", sorted(SEEDS))
def test_views_of_every_accepted_single_slot_change_equal_the_models(kind: str) -> None:
    compared = 0
    for seed in SEEDS[kind]:
        for path in _paths(seed):
            for value in [_GONE, *REPLACEMENTS, *infra_tests.EXTRA_REPLACEMENTS]:
                doc = _changed(seed, path, value)
                if accepts(kind, doc):
                    assert_same(kind, doc)
                    compared += 1
    assert compared >= 50, compared


@pytest.mark.parametrize(("port", "kept"), [(80, 80), ("80", 80), ("080", 80), ("80:80", 80), ("08:090", "8:90"),
                                            ("1:65535", "1:65535"), ("http", "http")])
def test_ports_are_kept_as_the_model_keeps_them(port: Any, kept: Any) -> None:
    from libcalico.resources.fields import _rule_port

    assert rule_port(port) == _rule_port(port) == kept


def test_a_view_reads_like_a_model_and_no_more() -> None:
    doc = infra_tests.SEEDS["IPPool"][1]  # v6, empty modes and selector
    view = model_view("IPPool", doc)
    assert (view.spec.cidr, view.spec.vxlanMode, view.spec.ipipMode, view.spec.nodeSelector) == (
        "fd00::/48", "Always", "Never", "all()")
    assert view.metadata.name == "v6" and view.metadata.labels is None
    with pytest.raises(AttributeError, match="no field 'network'"):
        _ = view.spec.network
    assert view == model_view("IPPool", copy.deepcopy(doc)) and view != model_view("IPPool", infra_tests.SEEDS[
        "IPPool"][0])
    with pytest.raises(KeyError):
        model_view("Tier", infra_tests.SEEDS["Tier"][0])
