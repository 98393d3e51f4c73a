"""A 2-node lab on sqlite and on etcd: real services, real pods, real packets, and nothing left behind.

up → all-allowed matrix → a deny policy → an allow-by-label policy (each time the real
matrix, and the oracle agreeing with it) → delete a pod and see its address released →
down, leaving no namespace, interface, process or file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.labrun import LabRun

PODS = ["node0-pod0", "node0-pod1", "node1-pod0", "node1-pod1"]

DENY_ALL = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: deny-all, namespace: default}
spec:
  selector: all()
  types: [Ingress]
"""

ALLOW_BY_LABEL = """
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: node1-from-pod0, namespace: default}
spec:
  order: 10
  selector: host == 'node1'
  ingress:
    - action: Allow
      protocol: TCP
      source: {selector: pod == 'node0-pod0'}
      destination: {ports: [8080]}
"""


@pytest.mark.parametrize("datastore", ["sqlite", "etcd"])
def test_two_node_lab_end_to_end(lab: LabRun, datastore: str) -> None:
    out = lab.up("--nodes", "2", "--pods-per-node", "2", "--datastore", datastore).stdout
    assert f"lab {lab.name} is up: 4 pods on 2 hosts" in out

    status = lab.status()
    assert status["phase"] == "up" and status["datastore"] == "reachable"
    assert [h["name"] for h in status["hosts"]] == ["node0", "node1"] and all(h["exists"] for h in status["hosts"])
    services = {(s["host"], s["service"]): s for s in status["services"]}
    expected_services = {("node0", "felix"), ("node1", "felix"), ("node0", "typha-0")}
    if datastore == "etcd":
        expected_services.add(("net", "etcd"))
    assert set(services) == expected_services
    assert all(s["running"] and s["health"] == "ready" for s in services.values()), services
    pods = {p["name"]: p for p in status["pods"]}
    assert sorted(pods) == PODS
    assert all(p["ip"].startswith("10.244.") and p["endpoint"] for p in pods.values()), pods
    assert len({p["ip"] for p in pods.values()}) == 4

    # No policy: the namespace profile allows everything, over TCP, UDP and ICMP.
    for proto in ("tcp", "udp", "icmp"):
        seen = lab.observed(proto)
        assert len(seen) == 12 and all(seen.values()), (proto, seen)

    lab.apply(DENY_ALL)
    lab.wait_matrix(lambda s, d: False, "deny-all applied")

    lab.apply(ALLOW_BY_LABEL)
    lab.wait_matrix(lambda s, d: s == "node0-pod0" and d.startswith("node1-"), "allow-by-label applied")
    explained = lab.matrix(explain=True)
    assert all(o["predicted"] == o["allowed"] for o in explained), explained
    allowed = [o for o in explained if o["allowed"]]
    assert {o["explain"]["ingress"]["policy"] for o in allowed} == {"default/node1-from-pod0"}
    # UDP is not in the allow rule: still denied everywhere.
    assert not any(lab.observed("udp").values())

    # Deleting a pod removes its endpoint and gives its address back to IPAM.
    gone_ip = pods["node1-pod1"]["ip"]
    used = lab.cli("calicoctl", "--", "ipam", "show", f"--ip={gone_ip}").stdout
    assert f"IP {gone_ip} is in use" in used
    lab.cli("pod", "delete", "node1-pod1")
    assert f"{gone_ip} is not assigned" in lab.cli("calicoctl", "--", "ipam", "show", f"--ip={gone_ip}").stdout
    status = lab.status()
    assert sorted(p["name"] for p in status["pods"]) == PODS[:3]
    weps = lab.cli("calicoctl", "--", "get", "workloadendpoints", "-n", "default").stdout
    assert " node1-pod1 " not in weps and " node1-pod0 " in weps
    assert not Path(f"/run/netns/{lab.name}-node1-pod1").exists()
    lab.wait_matrix(lambda s, d: s == "node0-pod0" and d == "node1-pod0", "after the pod delete")

    down = lab.down()
    assert "removed supervisor" in down and "network namespace(s)" in down
    assert lab.leftovers() == []
    assert "nothing to remove" in lab.down()  # twice is fine
    assert lab.leftovers() == []

