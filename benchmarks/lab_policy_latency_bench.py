"""Benchmark: policy applied → matrix correct, on a real lab (3×2 by default).

One lab is brought up (real Felix, Typha, CNI; sqlite). Then, round after round, a policy
change is written to the datastore and the clock runs until real packets (pings: a probe
sends an echo request every third of --probe-timeout) show exactly what the policy oracle
predicts. Rounds alternate between a change that *denies* (a default-deny for one pod: a
drop is seen one probe timeout after it is in place, which the summary subtracts) and one
that *allows* again (seen with the first reply, within a third of the probe timeout). Only the pairs whose verdict changes (every pod → the target
pod) are probed while waiting.

    .venv/bin/python -m benchmarks.lab_policy_latency_bench [--nodes 3] [--pods 2] [--rounds 10]
        [--probe-timeout 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from libcalico.resources.base import load_documents
from libcalico.runtime import configure_logging
from services.lab.datastore import open_client, policy_resources
from services.lab.lab import Lab
from services.lab.layout import LabSpec, plan
from services.lab.matrix import endpoints, predict
from services.lab.prober import Endpoint, Prober
from services.lab.progress import Silent
from services.lab.roster import Binaries
from services.lab.state import LabDir

DENY = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {{name: bench-deny, namespace: default}}
spec:
  selector: pod == '{pod}'
  types: [Ingress]
"""


async def wait_for(eps: list[Endpoint], want: dict[tuple[str, str], bool], probe_timeout: float,
                   deadline_s: float) -> float:
    """Probe the pairs in ``want`` until all match; the seconds it took."""
    started = time.monotonic()
    left = dict(want)
    while left:
        async with Prober(eps, "icmp", None, timeout=probe_timeout) as prober:
            seen = await prober.probe_all(list(left))
        left = {(o.src, o.dst): left[(o.src, o.dst)] for o in seen if o.allowed != left[(o.src, o.dst)]}
        if left and time.monotonic() - started > deadline_s:
            raise SystemExit(f"not converged after {deadline_s}s: {sorted(left)}")
    return time.monotonic() - started


async def run(args: argparse.Namespace, root: Path) -> None:
    labdir = LabDir(root / "lab")
    name = f"l{os.urandom(3).hex()}"
    lab = Lab(labdir, Silent(), Binaries())
    t0 = time.monotonic()
    await lab.up(LabSpec(name, args.nodes, args.pods))
    print(f"lab {args.nodes}x{args.pods} up in {time.monotonic() - t0:.1f}s", flush=True)
    try:
        state = labdir.load()
        layout = plan(state.spec)
        eps = endpoints(state)
        names = [e.name for e in eps]
        results: dict[str, list[float]] = {"deny": [], "allow": []}
        for r in range(args.rounds):
            target = names[(r // 2) % len(names)]  # denied in round r, allowed again in round r + 1
            kind = "deny" if r % 2 == 0 else "allow"
            watched = {(a, target): kind == "allow" for a in names if a != target}
            async with open_client(layout, labdir) as client:
                written = time.monotonic()
                if kind == "deny":
                    for res in load_documents(DENY.format(pod=target)):
                        await client.apply(res)
                else:
                    await client.delete("NetworkPolicy", "bench-deny", "default")
                took = await wait_for(eps, watched, args.probe_timeout, 30.0)
                done = time.monotonic()
                # Outside the timed window: the oracle agrees with what was waited for.
                predicted = predict(await policy_resources(client), names, "icmp", None)
            assert all(predicted[k].allowed == v for k, v in watched.items()), (kind, target)
            results[kind].append(done - written)
            print(f"round {r:2d} {kind:5s} {target}: matrix correct {results[kind][-1] * 1000:7.0f} ms "
                  f"after the write (probing {took * 1000:.0f} ms)", flush=True)
        for kind, values in results.items():
            if values:
                line = (f"{kind}: p50 {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms "
                        f"over {len(values)} rounds")
                if kind == "deny":  # a drop is seen one probe timeout after it is in place
                    line += (f"; minus the {args.probe_timeout * 1000:.0f} ms probe timeout: p50 "
                             f"{(statistics.median(values) - args.probe_timeout) * 1000:.0f} ms")
                print(line)
    finally:
        await lab.down(name, quiet=True)


def main() -> None:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--pods", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--probe-timeout", type=float, default=0.1)
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root (network namespaces)")
    configure_logging("lab-bench", "Warning")
    with tempfile.TemporaryDirectory(prefix="lab-latency-") as tmp:
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
