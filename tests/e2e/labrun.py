"""Driving ``calico-lab`` as a user does (its console script, as a process) from end-to-end tests.

Each :class:`LabRun` has its own lab name and directory, so tests never touch a user's lab;
:meth:`LabRun.leftovers` lists anything of it still on the machine after ``down``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

CALICO_LAB = str(Path(sys.executable).with_name("calico-lab"))
Matrix = dict[tuple[str, str], bool]


class LabRun:
    """One lab under test."""

    def __init__(self, directory: Path, name: str | None = None) -> None:
        self.name = name or f"e{os.urandom(3).hex()}"
        self.dir = directory / self.name
        self.seen_pids: set[int] = set()

    def cli(self, *args: str, check: bool = True, timeout: float = 240.0,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``calico-lab --name N --dir D ARGS…``; fail with its output when ``check`` and it fails."""
        cmd = [CALICO_LAB, "--name", self.name, "--dir", str(self.dir), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=stdin)
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                                 f"stderr:\n{proc.stderr}")
        return proc

    def up(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``up`` with these options."""
        return self.cli("up", *args, timeout=280.0)

    def status(self) -> dict[str, Any]:
        """``status -o json``; remembers every pid it shows (for :meth:`leftovers`)."""
        data = json.loads(self.cli("status", "-o", "json").stdout)
        self.seen_pids |= {s["pid"] for s in data["services"] if s["pid"]}
        if data["supervisor"]["pid"]:
            self.seen_pids.add(data["supervisor"]["pid"])
        return data

    def matrix(self, proto: str = "tcp", port: int = 8080, explain: bool = False) -> list[dict[str, Any]]:
        """``matrix -o json`` (exit 3, a disagreement with the oracle, is returned, not raised)."""
        args = ["matrix", "--proto", proto, "--port", str(port), "-o", "json"] + (["--explain"] if explain else [])
        proc = self.cli(*args, check=False)
        if proc.returncode not in (0, 3):
            raise AssertionError(f"matrix exited {proc.returncode}: {proc.stderr}")
        return json.loads(proc.stdout)

    def observed(self, proto: str = "tcp", port: int = 8080) -> Matrix:
        """The observed matrix as {(src, dst): allowed}."""
        return {(o["src"], o["dst"]): o["allowed"] for o in self.matrix(proto, port)}

    def wait_matrix(self, expected: Callable[[str, str], bool], what: str, proto: str = "tcp", port: int = 8080,
                    timeout: float = 45.0) -> Matrix:
        """Poll the real matrix until every pair is as ``expected`` says; fail with the differences."""
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            seen = self.observed(proto, port)
            wrong = {k: v for k, v in seen.items() if v != expected(*k)}
            if not wrong:
                return seen
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: after {timeout:.0f}s these pairs are still wrong "
                                     f"(observed allowed): {sorted(wrong.items())}")
            time.sleep(0.2)
        raise AssertionError(f"{what}: matrix never settled")

    def apply(self, yaml_text: str) -> None:
        """``calico-lab apply -f -``."""
        self.cli("apply", "-f", "-", stdin=yaml_text)

    def down(self) -> str:
        """``down``; returns what it printed."""
        return self.cli("down", timeout=120.0).stdout

    def leftovers(self) -> list[str]:
        """Namespaces, files and processes of this lab that are still there."""
        out = []
        netns = Path("/run/netns")
        if netns.is_dir():
            out += [f"namespace {p.name}" for p in netns.iterdir() if p.name.startswith(f"{self.name}-")]
        if self.dir.exists():
            out.append(f"directory {self.dir}")
        for pid in sorted(self.seen_pids):
            try:
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            if stat[stat.rfind(")") + 2:].split()[0] not in ("Z", "X"):
                out.append(f"process {pid} ({Path(f'/proc/{pid}/cmdline').read_bytes()[:80]!r})")
        for proc_dir in Path("/proc").iterdir():
            if not proc_dir.name.isdigit():
                continue
            try:
                cmdline = (proc_dir / "cmdline").read_bytes()
                environ = (proc_dir / "environ").read_bytes()
            except OSError:
                continue
            if str(self.dir).encode() in cmdline + environ and int(proc_dir.name) != os.getpid():
                out.append(f"process {proc_dir.name} ({cmdline[:80]!r})")
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        out += [f"interface in the root namespace: {ln.split(':')[1].strip()}" for ln in links.splitlines()
                if "ul-node" in ln]
        return out
