"""``calicoctl ipam`` as a user runs it: a real process on a real datastore file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from libcalico.datastore import backend_from_env
from libcalico.datastore.client import Client
from libcalico.ipam import IPAM, AssignRequest
from libcalico.resources import IPPool, WorkloadEndpoint


def calicoctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.calicoctl", *args], env={**env, "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def populated(sqlite_env: dict[str, str]) -> dict[str, str]:
    """A store with one pool, a pod (with endpoint) on n1, a leaked address and a borrowed one."""

    async def fill() -> None:
        async with backend_from_env(sqlite_env) as backend:
            client = Client(backend)
            await client.create(IPPool.model_validate(
                {"metadata": {"name": "p"}, "spec": {"cidr": "10.7.0.0/29", "blockSize": 30}}))
            ipam = IPAM(backend)
            pod = await ipam.auto_assign(AssignRequest(host="n1", num4=1, handle="k8s-pod-network.pod",
                                                       attrs={"node": "n1", "namespace": "default", "pod": "web"}))
            await client.create(WorkloadEndpoint.model_validate({
                "metadata": {"name": "n1-k8s-web-eth0", "namespace": "default"},
                "spec": {"orchestrator": "k8s", "node": "n1", "pod": "web", "endpoint": "eth0",
                         "containerID": "pod", "interfaceName": "cali1",
                         "ipNetworks": [f"{pod.ipv4[0].ip}/32"]}}))
            await ipam.auto_assign(AssignRequest(host="n1", num4=1, handle="k8s-pod-network.leak",
                                                 attrs={"node": "n1"}))
            await ipam.auto_assign(AssignRequest(host="n2", num4=4, handle="fill", attrs={"node": "n2"}))
            await ipam.auto_assign(AssignRequest(host="n3", num4=1, handle="borrow", attrs={"node": "n3"}))

    asyncio.run(fill())
    return sqlite_env


async def _allocation(env: dict[str, str], handle: str) -> list[str]:
    async with backend_from_env(env) as backend:
        return [str(ip) for ip in await IPAM(backend).ips_by_handle(handle)]


def test_show(populated: dict[str, str]) -> None:
    out = calicoctl(populated, "ipam", "show")
    assert out.returncode == 0, out.stderr
    assert "| IP Pool  | 10.7.0.0/29 |         8 | 7 (88%)    | 1 (12%)  |" in out.stdout
    blocks = calicoctl(populated, "ipam", "show", "--show-blocks").stdout
    assert blocks.count("| Block ") == 2
    borrowed = calicoctl(populated, "ipam", "show", "--show-borrowed").stdout
    ip = asyncio.run(_allocation(populated, "borrow"))[0]
    assert f"| {ip} | n3 " in borrowed
    pod_ip = asyncio.run(_allocation(populated, "k8s-pod-network.pod"))[0]
    shown = calicoctl(populated, "ipam", "show", f"--ip={pod_ip}").stdout
    assert shown.splitlines()[:2] == [f"IP {pod_ip} is in use", "Handle ID: k8s-pod-network.pod"]
    assert "  pod: web" in shown
    assert calicoctl(populated, "ipam", "show", "--ip=10.7.9.9").stdout == "10.7.9.9 is not assigned\n"
    bad = calicoctl(populated, "ipam", "show", "--ip=nonsense")
    assert bad.returncode == 1 and "Invalid IP address specified: nonsense" in bad.stderr
    both = calicoctl(populated, "ipam", "show", "--show-blocks", "--show-borrowed")
    assert both.returncode == 1 and "Invalid option" in both.stderr


def test_configure(populated: dict[str, str]) -> None:
    out = calicoctl(populated, "ipam", "configure", "--strictaffinity=true", "--max-blocks-per-host=5")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "Successfully set StrictAffinity to: true\nSuccessfully set MaxBlocksPerHost to: 5\n"
    cfg = calicoctl(populated, "ipam", "show", "--show-configuration").stdout
    assert "| StrictAffinity     | true  |" in cfg and "| MaxBlocksPerHost   | 5     |" in cfg
    for args, message in ((["--strictaffinity=maybe"], "Use true or false"),
                          (["--max-blocks-per-host=x"], "Use a valid number"),
                          ([], "at least one configuration option must be specified")):
        bad = calicoctl(populated, "ipam", "configure", *args)
        assert bad.returncode == 1 and message in bad.stderr


def test_check_and_release(populated: dict[str, str], tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    out = calicoctl(populated, "ipam", "check", "--show-problem-ips", "-o", str(report_path))
    assert out.returncode == 0, out.stderr
    leaked = asyncio.run(_allocation(populated, "k8s-pod-network.leak"))[0]
    assert f"  {leaked} leaked; attrs Main:k8s-pod-network.leak Extra:node=n1" in out.stdout
    # The leaked address, the filler and the borrowed ones have no endpoint: 6 problems in all.
    assert out.stdout.endswith("Check complete; found 6 problems.\n")
    report = json.loads(report_path.read_text())
    assert report["allocations"][leaked][0]["inUse"] is False
    refused = calicoctl(populated, "ipam", "release", f"--from-report={report_path}")
    assert refused.returncode == 1 and "data store is not locked" in refused.stderr
    forced = calicoctl(populated, "ipam", "release", f"--from-report={report_path}", "--force")
    assert forced.returncode == 0, forced.stderr
    assert "Released 6 IPs successfully" in forced.stdout
    assert asyncio.run(_allocation(populated, "k8s-pod-network.pod"))  # the in-use address is untouched
    after = calicoctl(populated, "ipam", "check").stdout
    assert after.endswith("Check complete; found 0 problems.\n")
    pod_ip = asyncio.run(_allocation(populated, "k8s-pod-network.pod"))[0]
    assert calicoctl(populated, "ipam", "release", f"--ip={pod_ip}").stdout == \
        f"Successfully released IP address {pod_ip}\n"
    again = calicoctl(populated, "ipam", "release", f"--ip={pod_ip}")
    assert again.returncode == 1 and f"IP address {pod_ip} is not assigned" in again.stderr


def test_usage(sqlite_env: dict[str, str]) -> None:
    assert calicoctl(sqlite_env, "ipam", "--help").stdout.startswith("Usage:\n  calicoctl ipam <command>")
    assert "--show-borrowed" in calicoctl(sqlite_env, "ipam", "show", "--help").stdout
    unknown = calicoctl(sqlite_env, "ipam", "split")
    assert unknown.returncode == 1 and 'unknown ipam command: "split"' in unknown.stderr
