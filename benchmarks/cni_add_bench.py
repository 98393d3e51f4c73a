"""Benchmark: CNI ADD latency (p50/p99), netns work included, as the runtime sees it and in-process.

Builds a "host" network namespace on an underlay (tests.fixtures.netns), a pool in a fresh
datastore, and ``--pods`` empty pod namespaces. Then, for each pod:

- *process*: ``ip netns exec <host> calico`` with CNI_COMMAND=ADD, netconf on stdin, wall time from
  spawn to exit (Python start-up and imports included: what kubelet waits for), and the CPU time
  (user + system) the process used, which a loaded machine disturbs much less than wall time;
- *in-process*: the same request handled by ``services.cni.invocation.run`` in one long-lived
  interpreter inside the host namespace (the plugin's own work: IPAM, veth, addresses, routes,
  sysctls, WorkloadEndpoint).

Every ADD is followed later by a DEL (also timed). ``--datastore etcdv3`` runs against a private
etcd reached through a relay into the host namespace. Addresses live only in the namespaces made
here (pool 10.66.0.0/20, underlay 10.0.0.0/24).

``--plugin-root DIR`` puts DIR first on the plugins' import path, to time another copy of the code
(say, a checkout of an older commit) under the same conditions; without it the plugins are this tree's.
The in-process round always runs this tree's code, so it is left out when ``--plugin-root`` is given.

Run from the repository root, as root::

    .venv/bin/python -m benchmarks.cni_add_bench [--pods 100] [--datastore sqlite|etcdv3] [--plugin-root DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from libcalico.datastore import backend_from_env
from libcalico.datastore.client import Client
from libcalico.resources import IPPool
from tests.fixtures.etcd import etcd_cluster
from tests.fixtures.netns import Host, NetnsPool
from tests.integration.test_cni_conformance import Relay

ROOT = Path(__file__).resolve().parents[1]


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50, p99, mean and max in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1), "p99_ms": round(p99 * 1000, 1),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1), "max_ms": round(ordered[-1] * 1000, 1)}


def env_for(command: str, container: str, netns: str, bindir: Path) -> dict[str, str]:
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": container,
            "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": str(bindir),
            "CNI_ARGS": f"K8S_POD_NAMESPACE=bench;K8S_POD_NAME=pod-{container}"}


def process_round(host: Host, bindir: Path, conf: dict[str, Any], pods: list[str], tag: str) -> dict[str, Any]:
    """Time each ADD (then each DEL) as a separate plugin process."""
    out: dict[str, Any] = {}
    body = json.dumps(conf).encode()
    for command in ("ADD", "DEL"):
        walls: list[float] = []
        cpus: list[float] = []
        for i, ns in enumerate(pods):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            proc = subprocess.run(["ip", "netns", "exec", host.name, str(bindir / "calico")],
                                  env=env_for(command, f"{tag}{i}", f"/run/netns/{ns}", bindir),
                                  input=body, capture_output=True, timeout=120)
            walls.append(time.perf_counter() - started)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if proc.returncode != 0:
                raise RuntimeError(f"{command} failed: {proc.stdout.decode()} {proc.stderr.decode()[-500:]}")
        out[command.lower()] = percentiles(walls)
        out[f"{command.lower()}_cpu"] = percentiles(cpus)
    return out


def inprocess_round(host: Host, bindir: Path, conf: dict[str, Any], pods: list[str], tag: str) -> dict[str, Any]:
    """Time each ADD and DEL inside one interpreter running in the host namespace."""
    spec = json.dumps({"conf": conf, "pods": pods, "bindir": str(bindir), "tag": tag})
    proc = subprocess.run(["ip", "netns", "exec", host.name, sys.executable, "-m", "benchmarks.cni_add_bench",
                           "--child", spec], capture_output=True, timeout=600, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.decode()[-2000:])
    return dict(json.loads(proc.stdout.decode().strip().splitlines()[-1]))


def child(spec_text: str) -> None:
    """In-process loop (runs inside the host namespace)."""
    from services.cni import calico, invocation

    spec = json.loads(spec_text)
    body = json.dumps(spec["conf"]).encode()
    bindir = Path(spec["bindir"])
    invocation.configure_logging("error")
    out: dict[str, Any] = {}
    for command in ("ADD", "DEL"):
        samples = []
        for i, ns in enumerate(spec["pods"]):
            env = env_for(command, f"{spec['tag']}{i}", f"/run/netns/{ns}", bindir)
            started = time.perf_counter()
            status, text = invocation.run(calico.handle, env, body)
            samples.append(time.perf_counter() - started)
            if status != 0:
                raise RuntimeError(text)
        out[command.lower()] = percentiles(samples)
    print(json.dumps(out))


@contextlib.contextmanager
def datastore(kind: str, host: Host, tmp: Path) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(netconf datastore fields, environment for this process) of a fresh store reachable from ``host``."""
    if kind == "sqlite":
        db = str(tmp / "calico.db")
        yield {"datastore_type": "sqlite", "calico_db": db}, {"DATASTORE_TYPE": "sqlite", "CALICO_DB": db}
        return
    with etcd_cluster(1) as cluster:
        url = urllib.parse.urlsplit(cluster.endpoints.split(",")[0])
        relay = Relay(host, (str(url.hostname), int(url.port or 2379)))
        try:
            yield ({"datastore_type": "etcdv3", "etcd_endpoints": f"http://127.0.0.1:{relay.port}"},
                   cluster.env())
        finally:
            relay.close()


def main(args: argparse.Namespace) -> dict[str, Any]:
    pool = NetnsPool()
    tmp = Path(tempfile.mkdtemp(prefix="cni-bench-"))
    try:
        bindir = tmp / "bin"
        bindir.mkdir()
        prefix = f"import sys\nsys.path.insert(0, {str(args.plugin_root)!r})\n" if args.plugin_root else ""
        for name, module in (("calico", "calico"), ("calico-ipam", "ipam")):
            (bindir / name).write_text(f"#!{sys.executable}\n{prefix}from services.cni.{module} import main\nmain()\n")
            (bindir / name).chmod(0o755)
        host = pool.host("bh", "10.0.0.1", pool.underlay())
        host.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        with datastore(args.datastore, host, tmp) as (fields, env):
            async def make_pool() -> None:
                async with backend_from_env(env) as backend:
                    await Client(backend).create(IPPool.model_validate(
                        {"metadata": {"name": "bench"}, "spec": {"cidr": "10.66.0.0/20", "blockSize": 26}}))

            asyncio.run(make_pool())
            conf = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico", "nodename": "bench-node",
                    "ipam": {"type": "calico-ipam"}, "ipam_lock_file": str(tmp / "ipam.lock"), **fields}
            pods = [pool.netns(f"p{i}").name for i in range(args.pods)]
            result = {"datastore": args.datastore, "pods": args.pods, "plugin_root": str(args.plugin_root or ROOT),
                      "load_average": [round(x, 2) for x in os.getloadavg()],
                      "process": process_round(host, bindir, conf, pods, "a"),
                      "in_process": None if args.plugin_root else inprocess_round(host, bindir, conf, pods, "b")}
        return result
    finally:
        pool.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--datastore", choices=("sqlite", "etcdv3"), default="sqlite")
    parser.add_argument("--plugin-root", type=Path, help="import the plugins from this tree instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    from services.cni.invocation import configure_logging

    configure_logging("error")
    if parsed.child:
        child(parsed.child)
    else:
        print(json.dumps(main(parsed), indent=2))
