"""calico-lab's command line where no Calico service is needed: refusals and clean-ups."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

CALICO_LAB = str(Path(sys.executable).with_name("calico-lab"))


def lab(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    name = f"c{os.getpid() % 100000}"
    return subprocess.run([CALICO_LAB, "--name", name, "--dir", str(tmp / "lab"), *args],
                          capture_output=True, text=True, timeout=120)


def test_commands_without_a_lab_say_so(tmp_path: Path) -> None:
    for args in (["status"], ["matrix"], ["logs", "felix"], ["exec", "node0-pod0", "--", "true"]):
        proc = lab(tmp_path, *args)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert "no lab in" in proc.stderr and "calico-lab up" in proc.stderr, proc.stderr


def test_down_without_a_lab_is_fine_and_twice_too(tmp_path: Path) -> None:
    for _ in range(2):
        proc = lab(tmp_path, "down")
        assert proc.returncode == 0, proc.stderr
        assert "nothing to remove" in proc.stdout
    assert not (tmp_path / "lab").exists()


def test_up_with_a_missing_program_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    proc = subprocess.run([CALICO_LAB, "--name", "cmiss", "--dir", str(tmp_path / "lab"), "--bin-dir", str(empty),
                           "up", "--nodes", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert f"step 'check programs': calico-felix not found in --bin-dir {empty}" in proc.stderr, proc.stderr
    assert not (tmp_path / "lab").exists()
    assert not [n for n in os.listdir("/run/netns") if n.startswith("cmiss-")]


def test_bad_options_are_named(tmp_path: Path) -> None:
    proc = lab(tmp_path, "up", "--nodes", "0")
    assert proc.returncode == 1 and "--nodes must be between 1 and 100, not 0" in proc.stderr
    proc = lab(tmp_path, "up", "--datastore", "zookeeper")
    assert proc.returncode == 2 and "zookeeper" in proc.stderr
    assert not (tmp_path / "lab").exists()
