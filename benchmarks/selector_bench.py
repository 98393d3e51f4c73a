"""Selector benchmark: 1,000 selectors against 10,000 label sets, brute force and label index.

Run:  .venv/bin/python benchmarks/selector_bench.py [--selectors N] [--labels N] [--seed S]

Fixed seed, bounded run time (about 30 s on 2 cores at the default size), prints a table.
The index's match sets are checked against brute force, so the numbers are for correct work.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from libcalico.selector import parse
from libcalico.selector.labelindex import LabelIndex
from libcalico.selector.selector import clear_parse_cache

NAMESPACES = [f"ns-{i}" for i in range(50)]
APPS = [f"app-{i}" for i in range(200)]
TIERS = ["frontend", "backend", "db", "cache"]
ENVS = ["prod", "staging", "dev"]
TEAMS = [f"team-{i}" for i in range(30)]
VERSIONS = [f"v{i}" for i in range(1, 6)]
ZONES = ["zone-a", "zone-b", "zone-c"]


def make_labels(rnd: random.Random) -> dict[str, str]:
    """One pod-like label set."""
    labels = {
        "projectcalico.org/orchestrator": "k8s",
        "projectcalico.org/namespace": rnd.choice(NAMESPACES),
        "app": rnd.choice(APPS),
        "tier": rnd.choice(TIERS),
        "env": rnd.choice(ENVS),
        "pod-template-hash": f"{rnd.getrandbits(40):010x}",
    }
    if rnd.random() < 0.8:
        labels["team"] = rnd.choice(TEAMS)
    if rnd.random() < 0.6:
        labels["version"] = rnd.choice(VERSIONS)
    if rnd.random() < 0.3:
        labels["zone"] = rnd.choice(ZONES)
    return labels


def q(value: str) -> str:
    return '"' + value + '"'


def make_selector(rnd: random.Random) -> str:
    """One selector from a realistic mix of shapes."""
    r = rnd.random()
    app, ns, team = rnd.choice(APPS), rnd.choice(NAMESPACES), rnd.choice(TEAMS)
    if r < 0.30:
        return f"app == {q(app)}"
    if r < 0.45:
        tiers = ", ".join(q(t) for t in rnd.sample(TIERS, 2))
        return f"tier in {{{tiers}}} && env == {q(rnd.choice(ENVS))}"
    if r < 0.55:
        return f"has({rnd.choice(['zone', 'version', 'team'])})"
    if r < 0.70:
        return (
            f"projectcalico.org/namespace == {q(ns)} && app in {{{q(app)}, {q(rnd.choice(APPS))}}}"
        )
    if r < 0.78:
        return f"app == {q(app)} || app == {q(rnd.choice(APPS))} || team == {q(team)}"
    if r < 0.86:
        return f"env not in {{{q('dev')}}} && team == {q(team)}"
    if r < 0.90:
        return f"env not in {{{q(rnd.choice(ENVS))}}}"
    if r < 0.94:
        return f"tier != {q(rnd.choice(TIERS))} && !has(zone)"
    if r < 0.97:
        return f"app starts with {q('app-1')} && version in {{{q('v1')}, {q('v2')}}}"
    return (
        f"projectcalico.org/orchestrator == {q('k8s')} && (has(version) || zone == {q('zone-a')})"
    )


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    """Run ``fn`` once; return (seconds, its result)."""
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def each(fn: Callable[..., None], args: list[tuple[Any, ...]]) -> Callable[[], None]:
    """A thunk that calls ``fn(*a)`` for every ``a`` in ``args``."""

    def run() -> None:
        for a in args:
            fn(*a)

    return run


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table; exit 1 if the index disagrees with brute force."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--selectors", type=int, default=1000)
    ap.add_argument("--labels", type=int, default=10000)
    ap.add_argument("--updates", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=20240601)
    args = ap.parse_args(argv)
    rnd = random.Random(args.seed)
    label_sets = [make_labels(rnd) for _ in range(args.labels)]
    texts = [make_selector(rnd) for _ in range(args.selectors)]
    rows: list[tuple[str, str, str]] = []

    clear_parse_cache()
    t, sels = timed(lambda: [parse(s) for s in texts])
    rows.append(("parse (cold cache)", f"{t * 1e3:.1f} ms", f"{len(texts) / t:,.0f} selectors/s"))
    t, _ = timed(lambda: [parse(s) for _ in range(10) for s in texts])
    rows.append(
        (
            "parse (cached)",
            f"{t * 1e3:.1f} ms / 10 rounds",
            f"{10 * len(texts) / t:,.0f} selectors/s",
        )
    )
    selectors = list(sels)  # type: ignore[call-overload]

    def brute() -> list[set[int]]:
        out = []
        for sel in selectors:
            ev = sel.evaluate
            out.append({i for i, lab in enumerate(label_sets) if ev(lab)})
        return out

    t, result = timed(brute)
    expected: list[set[int]] = result  # type: ignore[assignment]
    n_eval = len(selectors) * len(label_sets)
    total = sum(len(m) for m in expected)
    rows.append(
        (
            "brute force, compiled",
            f"{t:.2f} s",
            f"{n_eval / t:,.0f} evaluations/s ({total:,} matches)",
        )
    )

    sample = label_sets[: max(1, len(label_sets) // 10)]
    closures = [sel.root.closure() for sel in selectors]
    t_tree, _ = timed(lambda: [[f(lab) for lab in sample] for f in closures])
    t_comp, _ = timed(lambda: [[sel.evaluate(lab) for lab in sample] for sel in selectors])
    n = len(selectors) * len(sample)
    rows.append(
        (
            "  same, tree of closures",
            f"{n / t_tree:,.0f} eval/s",
            f"compiled is {t_tree / t_comp:.1f}x faster",
        )
    )

    events = [0]

    def count(_s: int, _i: int) -> None:
        events[0] += 1

    index: LabelIndex[int, int] = LabelIndex(count, count)
    t_labels, _ = timed(each(index.update_labels, list(enumerate(label_sets))))
    t_sels, _ = timed(each(index.update_selector, list(enumerate(selectors))))
    rows.append(
        (
            "index build: labels then selectors",
            f"{t_labels + t_sels:.2f} s",
            f"labels {t_labels:.2f} s + selectors {t_sels:.2f} s",
        )
    )
    ok = all(index.items_matching(s) == expected[s] for s in range(len(selectors)))

    index2: LabelIndex[int, int] = LabelIndex()
    t_sels2, _ = timed(each(index2.update_selector, list(enumerate(selectors))))
    t_labels2, _ = timed(each(index2.update_labels, list(enumerate(label_sets))))
    rows.append(
        (
            "index build: selectors then labels",
            f"{t_sels2 + t_labels2:.2f} s",
            f"{(t_sels2 + t_labels2) / len(label_sets) * 1e6:.0f} us per label set added",
        )
    )
    ok = ok and all(index2.items_matching(s) == expected[s] for s in range(len(selectors)))

    events[0] = 0
    current = {i: dict(lab) for i, lab in enumerate(label_sets)}
    changes: list[tuple[int, dict[str, str]]] = []
    for _ in range(args.updates):
        i = rnd.randrange(len(label_sets))
        lab = dict(current[i])
        key = rnd.choice(["app", "tier", "env", "version", "zone"])
        if key in ("version", "zone") and key in lab and rnd.random() < 0.5:
            del lab[key]
        else:
            lab[key] = rnd.choice(
                {"app": APPS, "tier": TIERS, "env": ENVS, "version": VERSIONS, "zone": ZONES}[key]
            )
        current[i] = lab
        changes.append((i, lab))
    t, _ = timed(each(index.update_labels, changes))
    rows.append(
        (
            "incremental label-set update",
            f"{t / len(changes) * 1e6:.0f} us each",
            f"{len(changes):,} updates, {events[0]:,} match changes",
        )
    )
    t_scan, _ = timed(
        lambda: [[sel.evaluate(lab) for sel in selectors] for _i, lab in changes[:200]]
    )
    rows.append(
        ("  same by brute force", f"{t_scan / 200 * 1e6:.0f} us each", "evaluate every selector")
    )
    check = [parse(texts[s]) for s in range(0, len(selectors), 37)]
    ok = ok and all(
        index.items_matching(s) == {i for i, lab in current.items() if check[k].evaluate(lab)}
        for k, s in enumerate(range(0, len(selectors), 37))
    )

    churn = [
        (s, make_selector(rnd)) for s in rnd.sample(range(len(selectors)), min(200, len(selectors)))
    ]
    t, _ = timed(each(index.update_selector, churn))
    rows.append(
        (
            "incremental selector update",
            f"{t / len(churn) * 1e3:.2f} ms each",
            f"{len(churn)} replaced",
        )
    )

    width = max(len(r[0]) for r in rows)
    print(
        f"selector benchmark: {len(selectors):,} selectors x {len(label_sets):,} label sets, seed {args.seed}"
    )
    print(f"{'measure'.ljust(width)}  {'time':>22}  rate / detail")
    print("-" * (width + 60))
    for name, value, detail in rows:
        print(f"{name.ljust(width)}  {value:>22}  {detail}")
    print(f"index agrees with brute force: {'yes' if ok else 'NO'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
