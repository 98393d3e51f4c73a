"""``calicoctl explain`` end to end: the installed script, as a subprocess, on a real sqlite datastore
populated with ``calicoctl apply`` (the repository's example policies, applied one by one)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from libcalico.datastore import Client
from libcalico.datastore.sqlite import SqliteBackend
from libcalico.oracle import Flow, Oracle
from services.calicoctl.explain import load_resources

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
CALICOCTL = str(Path(sys.executable).parent / "calicoctl")
RUN_TIMEOUT = 60


def lab_pods(hosts: int = 3, per_host: int = 2) -> str:
    """The calico-lab layout: pods ``node<i>-pod<j>`` in ``default``, labelled pod and host, plus kns.default."""
    docs = ["""apiVersion: projectcalico.org/v3
kind: Profile
metadata:
  name: kns.default
spec:
  ingress: [{action: Allow}]
  egress: [{action: Allow}]
  labelsToApply: {pcns.projectcalico.org/name: default}
"""]
    for h in range(hosts):
        for j in range(per_host):
            docs.append(f"""apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node{h}-k8s-node{h}--pod{j}-eth0
  namespace: default
  labels: {{pod: node{h}-pod{j}, host: node{h}}}
spec:
  orchestrator: k8s
  node: node{h}
  pod: node{h}-pod{j}
  endpoint: eth0
  ipNetworks: [10.244.{h}.{j + 1}/32]
  profiles: [kns.default]
  interfaceName: cali{h}x{j}
""")
    return "---\n".join(docs)


@dataclass
class Result:
    code: int
    out: str
    err: str


class Calicoctl:
    """The real calicoctl script on one sqlite file in the test's directory."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.db = str(tmp_path / "calico.db")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASTORE_", "ETCD_", "CALICO_"))}
        self.env.update({"DATASTORE_TYPE": "sqlite", "CALICO_DB": self.db})

    def __call__(self, *args: str) -> Result:
        proc = subprocess.run([CALICOCTL, *args], capture_output=True, text=True, env=self.env,
                              timeout=RUN_TIMEOUT, cwd=self.tmp, stdin=subprocess.DEVNULL)
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> str:
        res = self(*args)
        assert res.code == 0, f"calicoctl {' '.join(args)} failed ({res.code}): {res.err}"
        return res.out

    def apply_text(self, name: str, text: str) -> None:
        path = self.tmp / name
        path.write_text(text)
        self.ok("apply", "-f", str(path))

    def explain(self, *args: str) -> dict[str, object]:
        return json.loads(self.ok("explain", *args, "-o", "json"))  # type: ignore[no-any-return]


@pytest.fixture
def ctl(tmp_path: Path) -> Calicoctl:
    c = Calicoctl(tmp_path)
    c.apply_text("pods.yaml", lab_pods())
    return c


def test_no_policy_is_allowed_by_the_namespace_profile(ctl: Calicoctl) -> None:
    out = ctl.ok("explain", "--from", "node0-pod0", "--to", "node1-pod1", "--port", "80")
    assert out == (
        "allowed: default/node0-pod0 (10.244.0.1) → default/node1-pod1 (10.244.1.2) tcp/80\n"
        "  egress: profile kns.default rule 0 Allow (no policy applies)\n"
        "  ingress: profile kns.default rule 0 Allow (no policy applies)\n")


def test_examples_applied_one_by_one(ctl: Calicoctl) -> None:
    ctl.ok("apply", "-f", str(EXAMPLES / "02-default-deny.yaml"))
    doc = ctl.explain("--from", "node0-pod0", "--to", "node0-pod1", "--port", "80")
    assert doc["allowed"] is False
    assert doc["ingress"]["reason"] == "end-of-tier" and doc["ingress"]["tier"] == "default"  # type: ignore[index]

    ctl.ok("apply", "-f", str(EXAMPLES / "03-allow-same-host.yaml"))
    doc = ctl.explain("--from", "node0-pod0", "--to", "node0-pod1", "--port", "80")
    assert doc["allowed"] is True
    assert doc["ingress"]["explanation"] == "ingress: default/allow-node0-internal (tier default) rule 0 Allow"  # type: ignore[index]
    assert ctl.explain("--from", "node1-pod0", "--to", "node0-pod1", "--port", "80")["allowed"] is False

    ctl.ok("apply", "-f", str(EXAMPLES / "04-allow-web.yaml"))
    assert ctl.explain("--from", "node1-pod0", "--to", "node0-pod0", "--port", "9005")["allowed"] is True
    assert ctl.explain("--from", "node1-pod0", "--to", "node0-pod0", "--port", "9011")["allowed"] is False
    ping = ctl.explain("--from", "node1-pod0", "--to", "node0-pod0", "--protocol", "icmp")
    assert ping["allowed"] is True and ping["ingress"]["rule_index"] == 1  # type: ignore[index]
    assert ping["flow"]["description"] == "icmp type 8"  # type: ignore[index]

    ctl.ok("apply", "-f", str(EXAMPLES / "05-security-tier.yaml"))
    out = ctl.ok("explain", "--from", "node2-pod1", "--to", "node0-pod0", "--port", "8080")
    assert out.splitlines()[:2] == [
        "denied: default/node2-pod1 (10.244.2.2) → default/node0-pod0 (10.244.0.1) tcp/8080",
        "  egress: security.quarantine-node2 (tier security) rule 0 Deny"]
    doc = ctl.explain("--from", "node1-pod0", "--to", "node0-pod0", "--port", "8080")
    assert doc["allowed"] is True
    assert doc["ingress"]["trail"] == ["security.pass-the-rest (tier security) rule 0 Pass"]  # type: ignore[index]

    ctl.ok("apply", "-f", str(EXAMPLES / "06-networkset.yaml"))
    doc = ctl.explain("--from", "192.0.2.10", "--to", "node1-pod1", "--protocol", "icmp")
    assert doc["allowed"] is True and doc["egress"] is None
    assert doc["ingress"]["policy"] == "allow-admin-ping"  # type: ignore[index]
    assert ctl.explain("--from", "203.0.113.10", "--to", "node1-pod1", "--protocol", "icmp")["allowed"] is False


def test_explain_reads_everything_the_oracle_needs(ctl: Calicoctl) -> None:
    for example in sorted(EXAMPLES.glob("0[2-6]-*.yaml")):
        ctl.ok("apply", "-f", str(example))

    async def read() -> Oracle:
        async with SqliteBackend(ctl.db) as backend:
            return Oracle.from_resources(await load_resources(Client(backend)))

    oracle = asyncio.run(read())
    pods = oracle.endpoint_names()
    assert len(pods) == 6
    for src in (pods[0], pods[-1]):  # node0-pod0 (allowed by policies) and node2-pod1 (quarantined)
        for dst in pods:
            if src == dst:
                continue
            want = oracle.evaluate(Flow(src, dst, "tcp", port=8080)).to_dict()
            assert ctl.explain("--from", src, "--to", dst, "--port", "8080") == want


def test_staged_policy_is_not_enforced(ctl: Calicoctl) -> None:
    ctl.apply_text("staged.yaml", """apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata:
  name: deny-everything
spec:
  selector: all()
  ingress: [{action: Deny}]
""")
    doc = ctl.explain("--from", "node0-pod0", "--to", "node1-pod0", "--port", "80")
    assert doc["allowed"] is True and doc["ingress"]["policies_applied"] is False  # type: ignore[index]


def test_namespaces_and_qualified_names(ctl: Calicoctl) -> None:
    ctl.apply_text("prod.yaml", """apiVersion: projectcalico.org/v3
kind: WorkloadEndpoint
metadata:
  name: node0-k8s-api-eth0
  namespace: prod
spec:
  orchestrator: k8s
  node: node0
  pod: api
  endpoint: eth0
  ipNetworks: [10.244.0.9/32]
  profiles: [kns.prod]
  interfaceName: caliprod0
""")
    doc = ctl.explain("--from", "default/node0-pod0", "--to", "api", "-n", "prod", "--port", "443")
    assert doc["flow"]["destination"] == "prod/api"  # type: ignore[index]
    # kns.prod does not exist: Felix fails closed on the missing profile.
    assert doc["allowed"] is False and doc["ingress"]["reason"] == "profile-missing"  # type: ignore[index]
    assert ctl.explain("--from", "node0-pod0", "--to", "prod/node0-k8s-api-eth0")["ingress"]["profile"] == "kns.prod"  # type: ignore[index]


def test_errors_are_reported_with_exit_status_1(ctl: Calicoctl) -> None:
    res = ctl("explain", "--from", "nobody", "--to", "node0-pod0")
    assert res.code == 1 and res.out == ""
    assert res.err == "Failed to explain the flow: no WorkloadEndpoint named 'nobody' or for pod 'nobody' " \
                      "in namespace 'default'\n"
    res = ctl("explain", "--from", "node0-pod0", "--to", "node1-pod0", "--protocol", "gopher")
    assert res.code == 1 and res.err.startswith("Invalid flow: unknown protocol 'gopher'")
    res = ctl("explain", "--to", "node0-pod0")
    assert res.code == 1 and res.err.startswith("Invalid option: 'calicoctl explain --to node0-pod0'")
    ctl.ok("apply", "-f", str(EXAMPLES / "02-default-deny.yaml"))
    ctl.ok("apply", "-f", str(EXAMPLES / "04-allow-web.yaml"))
    res = ctl("explain", "--from", "node1-pod0", "--to", "node0-pod0")
    assert res.code == 1
    assert res.err == ("Failed to explain the flow: ingress: default/allow-web-to-node0-pod0 (tier default) rule 0 "
                       "Allow: cannot decide: the rule matches destination ports and the flow gives no destination "
                       "port\n")


def test_help(ctl: Calicoctl) -> None:
    out = ctl.ok("explain", "--help")
    assert out.startswith("Usage:\n  calicoctl explain --from=<SOURCE> --to=<POD>")


def test_missing_datastore_directory_fails_cleanly(tmp_path: Path) -> None:
    c = Calicoctl(tmp_path)
    c.env["CALICO_DB"] = str(tmp_path / "no" / "such" / "dir" / "calico.db")
    res = c("explain", "--from", "a", "--to", "b")
    assert res.code == 1 and res.out == ""
    assert res.err.startswith(("Failed to read the datastore", "Failed to create Calico API client")), res.err
