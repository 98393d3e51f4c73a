"""Faults: Felix killed on one host mid-run comes back and catches up; ``up`` failing half way
removes everything it made."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from tests.e2e.labrun import LabRun

DENY_ALL = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: deny-all}
spec:
  selector: has(pod)
  types: [Ingress]
"""

ALLOW_TO_NODE1 = """
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: allow-to-node1}
spec:
  order: 5
  selector: host == 'node1'
  ingress: [{action: Allow}]
"""


def _felix(status: dict, host: str) -> dict:
    return next(s for s in status["services"] if s["service"] == "felix" and s["host"] == host)


def test_felix_killed_on_one_host_recovers(lab: LabRun) -> None:
    lab.up("--nodes", "2", "--pods-per-node", "2")
    lab.apply(DENY_ALL)
    lab.wait_matrix(lambda s, d: False, "deny-all applied")

    before = _felix(lab.status(), "node1")
    os.kill(before["pid"], signal.SIGKILL)
    # While node1 has no Felix, the policy changes: the new Felix must program the new state.
    lab.apply(ALLOW_TO_NODE1)

    deadline = time.monotonic() + 60
    while True:
        after = _felix(lab.status(), "node1")
        if after["running"] and after["pid"] != before["pid"] and after["health"] == "ready":
            break
        assert time.monotonic() < deadline, f"felix on node1 did not come back ready: {after}"
        time.sleep(0.2)
    assert after["restarts"] >= 1
    assert _felix(lab.status(), "node0")["restarts"] == 0

    lab.wait_matrix(lambda s, d: d.startswith("node1-"), "allow-to-node1 after the restart")
    explained = lab.matrix(explain=True)
    assert all(o["predicted"] == o["allowed"] for o in explained), explained
    # The restarted Felix's log shows both runs.
    log = lab.cli("logs", "felix", "--host", "node1").stdout
    assert log.count("calico-lab: starting node1/felix") >= 2


def test_up_failing_half_way_removes_everything(lab: LabRun, tmp_path: Path) -> None:
    # A pool of two addresses and three pods: the real CNI plugin runs out of addresses for one.
    pool = tmp_path / "tiny-pool.yaml"
    pool.write_text("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: tiny}\n"
                    "spec: {cidr: 10.244.7.0/31, blockSize: 31, nodeSelector: all()}\n")
    proc = lab.cli("up", "--nodes", "1", "--pods-per-node", "3", "--encap", "none", "--pool", str(pool),
                   check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "host node0, step 'cni add node0-pod" in proc.stderr, proc.stderr
    assert "removing what was made" in proc.stdout
    assert lab.leftovers() == []
