"""``calico-lab matrix``: every pod → pod connection tried with real traffic, and what the oracle says.

The observed matrix comes from :mod:`services.lab.prober`; with ``--explain`` each pair also
gets the policy oracle's verdict (``libcalico.oracle``) and the rule that decided it, so a
difference between the dataplane and Calico's semantics stands out.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from libcalico.oracle import Flow, Oracle, OracleError, Verdict
from libcalico.resources.base import Resource
from services.lab.datastore import open_client, policy_resources
from services.lab.errors import LabError
from services.lab.layout import Layout, plan
from services.lab.prober import DEFAULT_TIMEOUT, Endpoint, Observation, Prober
from services.lab.state import LabDir, LabState

_POD_RE = re.compile(r"^node(\d+)-pod(\d+)$")


def pod_order(name: str) -> tuple[int, int, str]:
    """Sort key: node number, then pod number, then name (other names last)."""
    m = _POD_RE.match(name)
    return (int(m.group(1)), int(m.group(2)), name) if m else (1 << 30, 0, name)


@dataclass(frozen=True)
class Prediction:
    """The oracle's answer for one pair: a verdict, or why it has none."""

    allowed: bool | None
    verdict: Verdict | None = None
    error: str = ""

    def text(self) -> str:
        """One line: the deciding rule(s), or the error."""
        if self.verdict is None:
            return f"oracle: {self.error}"
        parts = [str(d) for d in (self.verdict.egress, self.verdict.ingress) if d is not None]
        return "; ".join(parts)


@dataclass
class MatrixResult:
    """Observations (and predictions) for every ordered pair of pods."""

    pods: list[str]
    proto: str
    port: int | None
    observed: dict[tuple[str, str], Observation] = field(default_factory=dict)
    predicted: dict[tuple[str, str], Prediction] | None = None
    seconds: float = 0.0
    attempts: int = 1  # observations made by :func:`converge` before this one agreed (or it gave up)

    def allowed(self) -> dict[tuple[str, str], bool]:
        """Observed verdicts by pair."""
        return {k: o.allowed for k, o in self.observed.items()}

    def mismatches(self) -> list[tuple[str, str]]:
        """Pairs where the dataplane and the oracle disagree (empty without predictions)."""
        if self.predicted is None:
            return []
        return [k for k, o in self.observed.items()
                if self.predicted[k].allowed is not None and self.predicted[k].allowed != o.allowed]

    def to_json(self) -> list[dict[str, Any]]:
        """The ``-o json`` list."""
        out = []
        for key in self.pairs():
            item = self.observed[key].to_dict()
            if self.predicted is not None:
                p = self.predicted[key]
                item["predicted"] = p.allowed
                item["explain"] = p.verdict.to_dict() if p.verdict is not None else {"error": p.error}
            out.append(item)
        return out

    def pairs(self) -> list[tuple[str, str]]:
        """Every ordered pair of distinct pods, sources in pod order."""
        return [(a, b) for a in self.pods for b in self.pods if a != b]


def endpoints(state: LabState) -> list[Endpoint]:
    """The lab's pods as probe endpoints, in pod order."""
    recs = sorted(state.pods.values(), key=lambda r: pod_order(r.name))
    return [Endpoint(r.name, r.netns, r.ip) for r in recs]


def predict(resources: list[Resource], pods: list[str], proto: str, port: int | None,
            namespace: str = "default") -> dict[tuple[str, str], Prediction]:
    """The oracle's verdict for every ordered pair of pods (by pod name)."""
    try:
        oracle = Oracle.from_resources(resources, default_namespace=namespace)
    except OracleError as exc:
        return {(a, b): Prediction(None, error=str(exc)) for a in pods for b in pods if a != b}
    out: dict[tuple[str, str], Prediction] = {}
    for a in pods:
        for b in pods:
            if a == b:
                continue
            try:
                flow = oracle.with_echo_request(Flow(f"{namespace}/{a}", f"{namespace}/{b}", proto, port=port))
                verdict = oracle.evaluate(flow)
                out[(a, b)] = Prediction(verdict.allowed, verdict)
            except OracleError as exc:
                out[(a, b)] = Prediction(None, error=str(exc))
    return out


async def oracle_resources(layout: Layout, labdir: LabDir) -> list[Resource]:
    """The datastore's policy-relevant resources now."""
    async with open_client(layout, labdir) as client:
        return await policy_resources(client)


async def observe(eps: list[Endpoint], proto: str, port: int | None,
                  timeout: float = DEFAULT_TIMEOUT) -> dict[tuple[str, str], Observation]:
    """Probe every ordered pair with real traffic."""
    pairs = [(a.name, b.name) for a in eps for b in eps if a.name != b.name]
    async with Prober(eps, proto, port, timeout=timeout) as prober:
        seen = await prober.probe_all(pairs)
    return {(o.src, o.dst): o for o in seen}


async def run_matrix(labdir: LabDir, proto: str = "tcp", port: int | None = 8080, *, explain: bool = False,
                     timeout: float = DEFAULT_TIMEOUT) -> MatrixResult:
    """Observe the whole matrix now (and, with ``explain``, the oracle's view of the same moment)."""
    state = labdir.load()
    layout = plan(state.spec)
    eps = endpoints(state)
    if len(eps) < 2:
        raise LabError("the matrix needs at least two pods", step="matrix")
    port = None if proto == "icmp" else port
    result = MatrixResult([e.name for e in eps], proto, port)
    started = time.monotonic()
    resources = await oracle_resources(layout, labdir) if explain else None
    result.observed = await observe(eps, proto, port, timeout)
    result.seconds = time.monotonic() - started
    if resources is not None:
        result.predicted = predict(resources, result.pods, proto, port)
    return result


async def converge(labdir: LabDir, proto: str, port: int | None, deadline_s: float,
                   timeout: float = DEFAULT_TIMEOUT) -> tuple[MatrixResult, float]:
    """Observe until the matrix equals the oracle's prediction or the deadline passes.

    Returns the last result (with predictions) and the seconds it took to agree (or the
    deadline when it never did: check ``result.mismatches()``).
    """
    started = time.monotonic()
    state = labdir.load()
    layout = plan(state.spec)
    eps = endpoints(state)
    port = None if proto == "icmp" else port
    resources = await oracle_resources(layout, labdir)
    names = [e.name for e in eps]
    predicted = predict(resources, names, proto, port)
    for attempt in range(1, 10_001):
        result = MatrixResult(names, proto, port, predicted=predicted, attempts=attempt)
        result.observed = await observe(eps, proto, port, timeout)
        elapsed = time.monotonic() - started
        result.seconds = elapsed
        if not result.mismatches() or elapsed >= deadline_s:
            return result, elapsed
        await asyncio.sleep(0.1)
    raise LabError("matrix did not settle", step="matrix")


# ------------------------------------------------------------------ rendering

def _short(name: str) -> str:
    m = _POD_RE.match(name)
    return f"n{m.group(1)}p{m.group(2)}" if m else name


def render_table(console: Console, result: MatrixResult, explain: bool = False) -> None:
    """A source × destination grid of ✓/✗ (red where the oracle disagrees), then explanations."""
    what = result.proto if result.port is None else f"{result.proto}/{result.port}"
    longest = max((len(p) for p in result.pods), default=4)
    wide = (len(result.pods) + 1) * (longest + 3) > console.width
    table = Table(title=f"{what}: rows = from, columns = to", title_justify="left", show_lines=False,
                  pad_edge=False)
    table.add_column("from \\ to", style="bold", no_wrap=True)
    for dst in result.pods:
        table.add_column(_short(dst) if wide else dst, justify="center", no_wrap=True)
    bad = set(result.mismatches())
    for src in result.pods:
        row: list[Text | str] = [src]
        for dst in result.pods:
            if src == dst:
                row.append(Text("·", style="dim"))
                continue
            ok = result.observed[(src, dst)].allowed
            cell = Text("✓" if ok else "✗", style="green" if ok else "red")
            if (src, dst) in bad:
                cell = Text(("✓" if ok else "✗") + "!", style="bold white on red")
            row.append(cell)
        table.add_row(*row)
    console.print(table)
    if wide:
        console.print("columns: " + ", ".join(f"{_short(p)} = {p}" for p in result.pods if _short(p) != p),
                      style="dim", highlight=False)
    allowed = sum(1 for o in result.observed.values() if o.allowed)
    console.print(f"{allowed}/{len(result.observed)} allowed  ({result.seconds:.2f}s)", highlight=False)
    if explain and result.predicted is not None:
        for key in result.pairs():
            o, p = result.observed[key], result.predicted[key]
            seen = "allowed" if o.allowed else f"denied ({o.detail})"
            agree = p.allowed is None or p.allowed == o.allowed
            mark = Text("  ", style="") if agree else Text("≠ ", style="bold red")
            line = Text.assemble(mark, (f"{key[0]} → {key[1]}: ", "bold"),
                                 (seen, "green" if o.allowed else "red"), "  oracle: ",
                                 ("allowed" if p.allowed else "denied" if p.allowed is False else "?",
                                  "green" if p.allowed else "red"), f"  {p.text()}")
            console.print(line, highlight=False, soft_wrap=True)
        if bad:
            console.print(Text(f"{len(bad)} pair(s) where the dataplane and the oracle disagree", style="bold red"))


def render_json(result: MatrixResult) -> str:
    """``-o json``: a list of {src, dst, proto, port, allowed} (plus predicted/explain with --explain)."""
    return json.dumps(result.to_json(), indent=2)
