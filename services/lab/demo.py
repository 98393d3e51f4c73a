"""``calico-lab demo``: a 3 × 2 lab, the matrix, then each example policy and the matrix after it.

For every file in docs/examples/ (after the IP pool, which ``up`` applies) the demo prints
the file's own leading comment (what it does), applies it with ``calicoctl``, waits until
the real traffic matches what the policy oracle predicts, and prints the matrix: TCP 8080,
plus ICMP when the example has ICMP rules, plus the oracle's answer for a ping from a
network set when the example defines one.
"""

from __future__ import annotations

import ipaddress
import os
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from libcalico.errors import CalicoError
from libcalico.oracle import Flow, Oracle, OracleError
from libcalico.resources.base import load_documents
from libcalico.resources.networkset import GlobalNetworkSet
from services.lab.command import run
from services.lab.datastore import EXAMPLES
from services.lab.errors import LabError
from services.lab.lab import Lab
from services.lab.layout import LabSpec, plan
from services.lab.matrix import converge, oracle_resources, render_table
from services.lab.progress import Reporter
from services.lab.roster import Binaries, datastore_env
from services.lab.state import LabDir

NODES, PODS = 3, 2
PORT = 8080
SETTLE = 20.0
PROBE_TIMEOUT = 1.0


def describe(path: Path) -> str:
    """The example's leading comment lines, joined: what it does, in its author's words."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines) or "(no description)"


def examples(directory: Path = EXAMPLES) -> list[Path]:
    """The example files in order, the IP pool (applied by ``up``) left out."""
    return [p for p in sorted(directory.glob("*.yaml")) if "ippool" not in p.name]


async def _apply(console: Console, labdir: LabDir, bins: Binaries, path: Path) -> None:
    state = labdir.load()
    env = dict(os.environ) | datastore_env(plan(state.spec), labdir)
    done = await run(bins.find("calicoctl"), "apply", "-f", str(path), env=env, check=False)
    text = (done.stdout.strip() or done.stderr.strip())
    console.print(f"$ calicoctl apply -f {path.relative_to(path.parents[2])}\n{text}", highlight=False, markup=False)
    if done.returncode != 0:
        raise LabError(f"calicoctl apply -f {path} failed: {text}", step=f"demo {path.name}")


async def _show(console: Console, labdir: LabDir, proto: str, port: int | None) -> None:
    result, took = await converge(labdir, proto, port, SETTLE, timeout=PROBE_TIMEOUT)
    render_table(console, result)
    bad = result.mismatches()
    if bad:
        console.print(f"[bold red]{len(bad)} pair(s) still differ from the oracle after {SETTLE:.0f}s[/]: "
                      + ", ".join(f"{a}→{b}" for a, b in bad[:6]))
    elif result.attempts == 1:
        console.print("every pair as the policy oracle predicts", style="dim")
    else:
        console.print(f"every pair as the policy oracle predicts, {took:.1f}s after the apply "
                      f"({result.attempts} looks)", style="dim")


async def _explain_network_sets(console: Console, labdir: LabDir, path: Path) -> None:
    try:
        docs = load_documents(path.read_text(encoding="utf-8"), source=str(path))
    except CalicoError:
        return
    sets = [d for d in docs if isinstance(d, GlobalNetworkSet) and d.spec.nets]
    nets = sets[0].spec.nets if sets else None
    if not nets:
        return
    net = ipaddress.ip_network(nets[0])
    source = str(next(iter(net.hosts()), net.network_address))
    state = labdir.load()
    resources = await oracle_resources(plan(state.spec), labdir)
    target = "default/node1-pod0"
    try:
        oracle = Oracle.from_resources(resources)
        verdict = oracle.evaluate(oracle.with_echo_request(Flow(source, target, "icmp")))
    except OracleError as exc:
        console.print(f"oracle: {exc}")
        return
    console.print(f"No pod has an address in {sets[0].name}, so the matrix cannot show this one; the oracle "
                  f"(calicoctl explain --from {source} --to node1-pod0 --protocol icmp) says:", highlight=False)
    console.print(f"  {'allowed' if verdict.allowed else 'denied'}: {verdict.ingress}", highlight=False)


async def run_demo(labdir: LabDir, name: str, bins: Binaries, *, datastore: str = "sqlite",
                   keep: bool = False) -> None:
    """The whole demo; the lab is removed at the end unless ``keep``."""
    console = Console()
    started = time.monotonic()
    console.print(Rule(f"calico-lab demo: {NODES} hosts × {PODS} pods, the real Felix, Typha and CNI"))
    lab = Lab(labdir, Reporter(console), bins)
    await lab.up(LabSpec(name, NODES, PODS, datastore), EXAMPLES / "01-ippool.yaml")
    try:
        console.print(f"up in {time.monotonic() - started:.1f}s. Pods are named <host>-pod<j>; their "
                      "WorkloadEndpoints carry the labels pod=<pod> and host=<host>.\n"
                      "With no policy, the namespace profile kns.default allows everything:", highlight=False)
        await _show(console, labdir, "tcp", PORT)
        for path in examples():
            console.print(Rule(path.name))
            console.print(describe(path), highlight=False)
            await _apply(console, labdir, bins, path)
            await _show(console, labdir, "tcp", PORT)
            text = path.read_text(encoding="utf-8")
            if "protocol: ICMP" in text:
                await _show(console, labdir, "icmp", None)
            await _explain_network_sets(console, labdir, path)
        console.print(Rule())
        console.print(f"demo finished in {time.monotonic() - started:.1f}s. Ask why a flow is allowed or "
                      "denied: calico-lab matrix --explain, or calico-lab calicoctl -- explain --from "
                      "node2-pod1 --to node0-pod0 --port 8080", highlight=False)
    finally:
        if not keep:
            await lab.down(name, quiet=True)
            console.print(f"lab removed (total {time.monotonic() - started:.1f}s)", highlight=False)
        else:
            cmd = "calico-lab" if name == "lab" else f"calico-lab --name {name}"
            console.print(f"lab kept: try '{cmd} status', '{cmd} matrix --explain'; '{cmd} down' removes it",
                          highlight=False)
