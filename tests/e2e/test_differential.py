"""Differential test: the policy oracle's predicted matrix equals the matrix real packets show.

On a 2 × 2 lab, random valid policy sets (tests/e2e/policygen.py) are applied one after
another; for TCP 8080, UDP 8080 and ICMP the real matrix must settle on exactly what the
oracle predicts, for every pair. A difference is a bug in the oracle or in the dataplane:
the test then shrinks the set (fewer policies, tiers and rules while the difference stays)
and fails printing the seed, the minimal set and the pairs that differ.

``CALICO_LAB_DIFF_SEED`` replays a seed (default: a fixed seed, so that CI is reproducible;
``random`` draws a new one and prints it on failure); ``CALICO_LAB_DIFF_SETS`` sets how many
sets to try.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from libcalico.datastore import Client
from libcalico.errors import NotFound
from libcalico.resources.base import load_documents
from services.lab import namespaces
from services.lab.datastore import open_client
from services.lab.layout import plan
from services.lab.matrix import converge
from services.lab.state import LabDir
from tests.e2e.labrun import LabRun
from tests.e2e.policygen import BUILTIN_TIERS, Doc, PolicyGen, smaller_sets, to_yaml

T = TypeVar("T")
PROBES: list[tuple[str, int | None]] = [("tcp", 8080), ("udp", 8080), ("icmp", None)]
SETTLE = 20.0        # a correct dataplane agrees within about a second; this is the patience for slow runs
SHRINK_SETTLE = 5.0
MAX_SHRINK_TRIES = 80


def in_lab(lab: LabRun, work: Callable[[LabDir], Coroutine[Any, Any, T]]) -> T:
    """Run ``work`` on an event loop in a thread inside the lab's infra namespace (where its datastore is)."""
    box: dict[str, Any] = {}

    def main() -> None:
        try:
            namespaces.enter(f"{lab.name}-net")
            box["value"] = asyncio.run(work(LabDir(lab.dir)))
        except BaseException as exc:  # handed to the test thread
            box["error"] = exc

    thread = threading.Thread(target=main, name="lab-worker")
    thread.start()
    thread.join(600)
    if thread.is_alive():
        raise AssertionError("lab worker did not finish within 600s")
    if "error" in box:
        raise box["error"]
    return box["value"]


async def replace_policies(client: Client, docs: list[Doc]) -> None:
    """Remove every policy and extra tier, then create the set's (tiers first)."""
    for kind, namespace in (("NetworkPolicy", "default"), ("GlobalNetworkPolicy", None), ("Tier", None)):
        items, _ = await client.list(kind, namespace)
        for res in items:
            if kind == "Tier" and res.name in BUILTIN_TIERS:
                continue
            try:
                await client.delete(kind, res.name, res.namespace)
            except NotFound:
                pass
    for res in load_documents(to_yaml(docs), source="generated policy set") if docs else []:
        await client.create(res)


async def differences(labdir: LabDir, docs: list[Doc], settle: float, probes: list[tuple[str, int | None]],
                      tally: dict[str, int] | None = None) -> dict[str, list[str]]:
    """Apply a set and return, per probe, the pairs where real packets and the oracle still differ."""
    layout = plan(labdir.load().spec)
    async with open_client(layout, labdir) as client:
        await replace_policies(client, docs)
    out: dict[str, list[str]] = {}
    for proto, port in probes:
        result, _ = await converge(labdir, proto, port, settle, timeout=1.0)
        bad = result.mismatches()
        if tally is not None:
            for o in result.observed.values():
                tally["allowed" if o.allowed else "denied"] += 1
        if bad:
            assert result.predicted is not None
            out[f"{proto}/{port}" if port else proto] = [
                f"{a} → {b}: real {'allowed' if result.observed[(a, b)].allowed else 'denied'}, oracle "
                f"{'allowed' if result.predicted[(a, b)].allowed else 'denied'} ({result.predicted[(a, b)].text()})"
                for a, b in bad]
    return out


async def shrink(labdir: LabDir, docs: list[Doc], probes: list[tuple[str, int | None]]) -> tuple[list[Doc], dict]:
    """The smallest set (one step at a time) that still shows a difference, and that difference."""
    current, diff = docs, await differences(labdir, docs, SHRINK_SETTLE, probes)
    tries = 0
    improved = True
    while improved and tries < MAX_SHRINK_TRIES:
        improved = False
        for candidate in smaller_sets(current):
            tries += 1
            got = await differences(labdir, candidate, SHRINK_SETTLE, probes)
            if got:
                current, diff, improved = candidate, got, True
                break
            if tries >= MAX_SHRINK_TRIES:
                break
    return current, diff


DEFAULT_SEED = 20261126


@pytest.mark.timeout(900)
def test_oracle_matches_real_packets_for_random_policy_sets(lab: LabRun) -> None:
    chosen = os.environ.get("CALICO_LAB_DIFF_SEED") or str(DEFAULT_SEED)
    seed = random.randrange(1 << 32) if chosen == "random" else int(chosen)
    sets = int(os.environ.get("CALICO_LAB_DIFF_SETS") or 6)
    lab.up("--nodes", "2", "--pods-per-node", "2")
    pods = sorted(p["name"] for p in lab.status()["pods"])
    gen = PolicyGen(random.Random(seed), pods)

    seen = {"allowed": 0, "denied": 0}

    async def run(labdir: LabDir) -> str:
        for n in range(sets):
            docs = gen.policy_set()
            diff = await differences(labdir, docs, SETTLE, PROBES, seen)
            if diff:
                probes = [p for p in PROBES if (f"{p[0]}/{p[1]}" if p[1] else p[0]) in diff]
                small, small_diff = await shrink(labdir, docs, probes)
                lines = [f"seed {seed} (CALICO_LAB_DIFF_SEED={seed}), set {n}: the oracle and real packets differ.",
                         "Minimal policy set:", to_yaml(small), "Differences:"]
                for probe, pairs in (small_diff or diff).items():
                    lines += [f"  {probe}: {p}" for p in pairs]
                return "\n".join(lines)
        return ""

    report = in_lab(lab, run)
    assert not report, report
    # The sets exercised both outcomes (a run where everything stayed allowed would prove little).
    assert seen["allowed"] > 0 and seen["denied"] > 0, (seed, seen)
