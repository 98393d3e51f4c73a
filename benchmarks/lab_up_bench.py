"""Benchmark: ``calico-lab up`` / ``matrix`` / ``down`` wall time, as a user runs them.

For each size (default 3×2 and 10×5) a lab is brought up with the real services (sqlite
datastore, one Typha, VXLAN), the full TCP matrix is observed once with everything allowed,
and the lab is brought down; each command is a ``calico-lab`` process and is timed whole.
``up`` includes waiting until every pod pings a pod on its own host and one on the next host.

    .venv/bin/python -m benchmarks.lab_up_bench [--sizes 3x2,10x5] [--repeat 1] [--datastore sqlite]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CALICO_LAB = str(Path(sys.executable).with_name("calico-lab"))


def timed(*args: str, timeout: float = 900.0) -> tuple[float, str]:
    """Run calico-lab; return (seconds, stdout); raise with its output when it fails."""
    started = time.monotonic()
    proc = subprocess.run([CALICO_LAB, *args], capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"calico-lab {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return took, proc.stdout


def one(nodes: int, pods: int, datastore: str, root: Path) -> dict[str, float]:
    """Up, matrix, down for one size; the seconds of each."""
    name = f"b{os.urandom(3).hex()}"
    base = ["--name", name, "--dir", str(root / name)]
    try:
        up, _ = timed(*base, "up", "--nodes", str(nodes), "--pods-per-node", str(pods), "--datastore", datastore)
        matrix, out = timed(*base, "matrix", "-o", "json")
        seen = json.loads(out)
        total = nodes * pods
        assert len(seen) == total * (total - 1) and all(o["allowed"] for o in seen), "matrix not all allowed"
    finally:
        down, _ = timed(*base, "down")
    return {"up": up, "matrix": matrix, "down": down}


def main() -> None:
    """Entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="3x2,10x5", help="comma-separated NODESxPODS")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--datastore", choices=["sqlite", "etcd"], default="sqlite")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="lab-bench-") as tmp:
        print(f"{'size':>6} {'pods':>5} {'pairs':>6} {'up s':>8} {'matrix s':>9} {'down s':>7}   (median of {args.repeat})")
        for size in args.sizes.split(","):
            nodes, pods = (int(x) for x in size.lower().split("x"))
            runs = [one(nodes, pods, args.datastore, Path(tmp)) for _ in range(args.repeat)]
            med = {k: statistics.median(r[k] for r in runs) for k in ("up", "matrix", "down")}
            total = nodes * pods
            print(f"{size:>6} {total:>5} {total * (total - 1):>6} {med['up']:>8.1f} {med['matrix']:>9.2f} "
                  f"{med['down']:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
