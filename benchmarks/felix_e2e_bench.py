"""Felix end to end, through the real daemon: cold start, single-change latency, memory, new-pod first response.

Run (root):  .venv/bin/python benchmarks/felix_e2e_bench.py [--policies 1000] [--remote 10000] [--local 100]
             [--changes 100] [--pods 20] [--seed 1] [--felix-tree DIR] [--keep-log FILE]

``--felix-tree DIR``: Felix runs the ``libcalico`` and ``services`` packages found in DIR (a copy
of the tree, for A/B comparisons of two versions in one series); ``--keep-log FILE``: Felix's log
is copied there.

In throwaway network namespaces (deleted at the end, whatever happens):

1. a sqlite datastore is filled with ``--policies`` policies (namespaced and global, three tiers,
   selectors, namespace selectors, service accounts, nets, ports, named ports), ``--remote``
   WorkloadEndpoints of 100 other nodes and ``--local`` of this node (with their ``cali…`` veths
   made beforehand), plus namespace and service-account profiles, and what every real cluster
   holds: ClusterInformation and FelixConfiguration ``default``, IP pools and a Node per host;
2. cold start: ``calico-felix`` is started in the host namespace; timed from the process start to
   /readiness (the first dataplane apply after in-sync; polled every 5 ms over one keep-alive
   connection), with the phases from its log, and the CPU time spent by then (user + system) by
   Felix itself and by the ``nft`` processes it ran;
3. the floor, in the same run: ``nft list table inet calico`` of the result, loaded by ``nft -f``
   into a fresh namespace (best of 3; and its least CPU time);
4. single change, datastore write → rules/sets in the kernel (Felix's
   ``felix_dataplane_applied_revision`` reaching the write's revision, polled every 2 ms over one
   keep-alive connection; the kernel is checked afterwards): one policy edited, one endpoint added
   (an IP-set member), one label changed; p50/p99;
5. memory: the daemon's peak RSS (VmHWM);
6. new pod, time to first response: the ``calico`` CNI plugin ADDs a pod (IPAM, veth, endpoint,
   waiting for Felix's status file) and the new pod connects to a server pod; from the start of
   ADD to the first successful TCP exchange; p50/p99.

Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import ctypes.util
import datetime
import http.client
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

API = "projectcalico.org/v3"
HOST = "bench-node"
NAMESPACES = [f"ns-{i}" for i in range(50)]
APPS = [f"app-{i}" for i in range(200)]
ROLES = ["frontend", "backend", "db", "cache"]
ENVS = ["prod", "staging", "dev"]
SAS = ["default", "api", "worker"]
TIERS = [("security", 100.0), ("platform", 200.0), ("default", None)]
HOT_POLICIES = 10
PORT = 9099
FELIX = Path(sys.executable).with_name("calico-felix")
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def sh(*cmd: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command; raise with its stderr when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=300)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def enter(netns: str) -> None:
    """Move the calling thread into a named network namespace."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        if _libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), f"setns {netns}")
    finally:
        os.close(fd)


class InNetns:
    """One worker thread living in a namespace (HTTP keep-alive to Felix, socket probes)."""

    def __init__(self, netns: str) -> None:
        self.pool = concurrent.futures.ThreadPoolExecutor(1, initializer=enter, initargs=(netns,))
        self.conn: http.client.HTTPConnection | None = None

    def call(self, fn: Any, *args: Any) -> Any:
        return self.pool.submit(fn, *args).result(60)

    def _get(self, path: str) -> tuple[int, str]:
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=5)
                self.conn.request("GET", path)
                resp = self.conn.getresponse()
                return resp.status, resp.read().decode()
            except (OSError, http.client.HTTPException):
                if self.conn is not None:
                    self.conn.close()
                self.conn = None
        return 0, ""

    def get(self, path: str) -> tuple[int, str]:
        return self.call(self._get, path)

    def close(self) -> None:
        if self.conn is not None:
            self.call(self.conn.close)
        self.pool.shutdown()


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def rss_mib(pid: int, field: str) -> float:
    """A memory figure of a process (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no {field} for pid {pid}")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """A process's own CPU time (user + system) and that of its children it has waited for (nft), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])  # stat fields 14-17
    return (utime + stime) / tick, (cutime + cstime) / tick


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return statistics.median(ordered) * 1000, p99 * 1000


# The synthetic cluster ---------------------------------------------------------------------------------
class World:
    """Resources of one synthetic cluster, as stored maps with their datastore keys."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.ip = 0
        self.docs: list[tuple[str, dict[str, Any]]] = []

    @staticmethod
    def key(plural: str, name: str, ns: str | None = None) -> str:
        base = "/calico/resources/v3/projectcalico.org/"
        return f"{base}{plural}/{ns}/{name}" if ns else f"{base}{plural}/{name}"

    def add(self, plural: str, kind: str, name: str, spec: dict[str, Any], ns: str | None = None,
            labels: dict[str, str] | None = None) -> tuple[str, dict[str, Any]]:
        meta: dict[str, Any] = {"name": name}
        if ns:
            meta["namespace"] = ns
        if labels:
            meta["labels"] = labels
        item = (self.key(plural, name, ns), {"apiVersion": API, "kind": kind, "metadata": meta, "spec": spec})
        self.docs.append(item)
        return item

    def next_ip(self) -> str:
        self.ip += 1
        return f"10.{100 + ((self.ip >> 16) & 63)}.{(self.ip >> 8) & 255}.{self.ip & 255}"

    def profiles(self) -> None:
        for ns in [*NAMESPACES, "default"]:
            labels = {"pcns.projectcalico.org/name": ns, "pcns.env": self.rnd.choice(ENVS)}
            self.add("profiles", "Profile", f"kns.{ns}", {"labelsToApply": labels, "ingress": [{"action": "Allow"}],
                                                           "egress": [{"action": "Allow"}]})
            for sa in SAS:
                self.add("profiles", "Profile", f"ksa.{ns}.{sa}",
                         {"labelsToApply": {"pcsa.projectcalico.org/name": sa}})
        for name, order in TIERS:
            if order is not None:
                self.add("tiers", "Tier", name, {"order": order, "defaultAction": "Pass"})

    def workload(self, name: str, node: str, iface: str, labels: dict[str, str] | None = None,
                 ns: str | None = None, ip: str | None = None) -> tuple[str, dict[str, Any]]:
        rnd = self.rnd
        ns = ns or rnd.choice(NAMESPACES)
        sa = rnd.choice(SAS)
        labels = labels or {"app": rnd.choice(APPS), "role": rnd.choice(ROLES), "env": rnd.choice(ENVS)}
        spec: dict[str, Any] = {"orchestrator": "k8s", "node": node, "pod": name, "endpoint": "eth0",
                                "interfaceName": iface, "ipNetworks": [f"{ip or self.next_ip()}/32"],
                                "profiles": [f"kns.{ns}", f"ksa.{ns}.{sa}"], "serviceAccountName": sa}
        if rnd.random() < 0.5:
            spec["ports"] = [{"name": "http", "protocol": "TCP", "port": rnd.choice([80, 8080])}]
        return self.add("workloadendpoints", "WorkloadEndpoint", f"{node}-k8s-{name}-eth0", spec, ns, labels)

    def rule(self) -> dict[str, Any]:
        rnd = self.rnd
        r = rnd.random()
        source: dict[str, Any] = {}
        if r < 0.4:
            source["selector"] = f"app == '{rnd.choice(APPS)}'"
        elif r < 0.6:
            source["selector"] = f"role == '{rnd.choice(ROLES)}'"
            source["namespaceSelector"] = f"env == '{rnd.choice(ENVS)}'"
        elif r < 0.7:
            source["serviceAccounts"] = {"names": [rnd.choice(SAS)]}
        elif r < 0.8:
            source["nets"] = [f"172.{rnd.randrange(16, 32)}.0.0/16"]
        else:
            source["selector"] = f"app in {{'{rnd.choice(APPS)}', '{rnd.choice(APPS)}'}}"
        rule: dict[str, Any] = {"action": rnd.choice(["Allow", "Allow", "Allow", "Deny", "Pass"]), "source": source}
        p = rnd.random()
        if p < 0.3:
            rule.update(protocol="TCP", destination={"ports": [rnd.choice([80, 443, "8000:8100"])]})
        elif p < 0.45:
            rule.update(protocol="TCP", destination={"ports": ["http"]})
        return rule

    def policy(self, i: int) -> None:
        rnd = self.rnd
        tier, _ = TIERS[i % len(TIERS)]
        spec: dict[str, Any] = {"tier": tier, "order": float(i % 50),
                                "ingress": [self.rule() for _ in range(rnd.randrange(1, 4))]}
        if rnd.random() < 0.3:
            spec["egress"] = [self.rule()]
        prefix = "" if tier == "default" else f"{tier}."
        if i % 4 == 0:
            spec["selector"] = f"role == '{rnd.choice(ROLES)}' && env == '{rnd.choice(ENVS)}'"
            self.add("globalnetworkpolicies", "GlobalNetworkPolicy", f"{prefix}gnp-{i}", spec)
        else:
            ns = NAMESPACES[i % len(NAMESPACES)]
            spec["selector"] = f"app == '{rnd.choice(APPS)}'" if rnd.random() < 0.7 else "all()"
            self.add("networkpolicies", "NetworkPolicy", f"{prefix}np-{i}", spec, ns)

    def cluster(self, nodes: int) -> None:
        """What every real Calico cluster holds besides workloads and policies: ClusterInformation and
        FelixConfiguration ``default`` (as calico-node writes them), the IP pools, and one Node per host."""
        self.add("clusterinformations", "ClusterInformation", "default", {
            "calicoVersion": "v3.30.0", "clusterGUID": "5e1f0c3a9b2d4e6f8a7b6c5d4e3f2a1b",
            "clusterType": "k8s,bgp,kubeadm,kdd", "datastoreReady": True})
        self.add("felixconfigurations", "FelixConfiguration", "default", {
            "logSeverityScreen": "Info", "reportingInterval": "0s", "healthPort": 9099,
            "bpfLogLevel": "", "floatingIPs": "Disabled", "bpfConnectTimeLoadBalancing": "TCP",
            "bpfHostNetworkedNATWithoutCTLB": "Enabled",
            # Calico's default failsafe ports, written out as the resource lists them.
            "failsafeInboundHostPorts": [{"protocol": p, "port": n} for p, n in (
                ("TCP", 22), ("UDP", 68), ("TCP", 179), ("TCP", 2379), ("TCP", 2380), ("TCP", 5473),
                ("TCP", 6443), ("TCP", 6666), ("TCP", 6667))],
            "failsafeOutboundHostPorts": [{"protocol": p, "port": n} for p, n in (
                ("UDP", 53), ("UDP", 67), ("TCP", 179), ("TCP", 2379), ("TCP", 2380), ("TCP", 5473),
                ("TCP", 6443), ("TCP", 6666), ("TCP", 6667))]})
        # Pools named after the CNI phase's "bench-pods" (IPAM takes pools in name order), so new pods
        # still get their addresses there rather than on top of this world's made-up endpoints.
        self.add("ippools", "IPPool", "default-ipv4-ippool", {  # the remote workloads (10.100.x.x)
            "cidr": "10.96.0.0/11", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
            "natOutgoing": True, "nodeSelector": "all()", "allowedUses": ["Workload", "Tunnel"]})
        self.add("ippools", "IPPool", "local-ipv4-ippool", {  # this node's workloads (10.200.x.x, 10.201.x.x)
            "cidr": "10.200.0.0/15", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
            "natOutgoing": True, "nodeSelector": "all()"})
        for i, name in enumerate([HOST, *(f"node-{n}" for n in range(1, nodes + 1))]):
            address = f"192.0.2.{1 + i}" if i < 254 else f"198.51.100.{i - 253}"
            labels = {"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux",
                      "kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
            self.add("nodes", "Node", name, {
                "bgp": {"ipv4Address": f"{address}/24"},
                "addresses": [{"address": f"{address}/24", "type": "CalicoNodeIP"},
                              {"address": address, "type": "InternalIP"}],
                "orchRefs": [{"nodeName": name, "orchestrator": "k8s"}]}, labels=labels)

    def hot_policy(self, i: int, port: int) -> tuple[str, dict[str, Any]]:
        """A policy that applies to every local endpoint and selects ``app == 'hot'`` peers."""
        spec = {"selector": "bench == 'local'", "order": 1.0, "ingress": [
            {"action": "Allow", "protocol": "TCP", "source": {"selector": "app == 'hot'"},
             "destination": {"ports": [port]}}]}
        return self.add("globalnetworkpolicies", "GlobalNetworkPolicy", f"hot-{i}", spec)


# Namespaces -----------------------------------------------------------------------------------------------
class Lab:
    """Underlay, host namespace with ``--local`` cali veths; every namespace removed by ``close``."""

    def __init__(self, tag: str, local: int) -> None:
        self.tag = tag
        self.names: list[str] = []
        self.underlay = self.netns("ul")
        self.host = self.netns("host")
        sh("ip", "-n", self.underlay, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.underlay, "addr", "add", "10.0.0.254/24", "dev", "br0")
        sh("ip", "-n", self.underlay, "link", "set", "br0", "up")
        sh("ip", "link", "add", "eth0", "netns", self.host, "type", "veth", "peer", "name", f"u{tag}"[:15],
           "netns", self.underlay)
        sh("ip", "-n", self.underlay, "link", "set", f"u{tag}"[:15], "master", "br0", "up")
        sh("ip", "-n", self.host, "addr", "add", "10.0.0.1/24", "dev", "eth0")
        sh("ip", "-n", self.host, "link", "set", "eth0", "up")
        sh("ip", "-n", self.host, "route", "add", "default", "via", "10.0.0.254")
        batch = "".join(f"link add cali{i:011d} type veth peer name pe{i:011d}\nlink set cali{i:011d} up\n"
                        f"link set pe{i:011d} up\n" for i in range(local))
        sh("ip", "-n", self.host, "-batch", "-", stdin=batch)

    def netns(self, label: str) -> str:
        name = f"fb{self.tag}-{label}"
        sh("ip", "netns", "add", name)
        self.names.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def close(self) -> None:
        for name in reversed(self.names):
            sh("ip", "netns", "del", name, check=False)


# Phases ----------------------------------------------------------------------------------------------------
async def fill(db: str, docs: list[tuple[str, dict[str, Any]]]) -> None:
    from libcalico.datastore.sqlite import SqliteBackend

    backend = SqliteBackend(db)
    try:
        for key, value in docs:
            await backend.create(key, value)
    finally:
        await backend.close()


def start_felix(lab: Lab, db: str, workdir: Path, tree: str | None = None) -> subprocess.Popen[bytes]:
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "DATASTORE_TYPE": "sqlite",
           **({"PYTHONPATH": tree} if tree else {}), "CALICO_DB": db, "FELIX_FELIXHOSTNAME": HOST, "FELIX_HEALTHENABLED": "true",
           "FELIX_HEALTHHOST": "127.0.0.1", "FELIX_HEALTHPORT": str(PORT), "FELIX_PROMETHEUSMETRICSENABLED": "true",
           "FELIX_PROMETHEUSMETRICSHOST": "127.0.0.1", "FELIX_PROMETHEUSMETRICSPORT": str(PORT),
           "FELIX_ENDPOINTSTATUSPATHPREFIX": str(workdir), "FELIX_LOGSEVERITYSCREEN": "Info"}
    (workdir / "felix.cfg").write_text("[global]\n")
    log = open(workdir / "felix.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(["ip", "netns", "exec", lab.host, str(FELIX), "-c", str(workdir / "felix.cfg")],
                            env=env, stdout=log, stderr=subprocess.STDOUT)


def log_events(workdir: Path) -> dict[str, float]:
    """Wall-clock time of the first occurrence of the interesting start-up events."""
    wanted = {"settings_loaded", "felix started", "syncer starting", "syncer status", "calculation graph in sync",
              "dataplane programmed"}
    out: dict[str, float] = {}
    for line in (workdir / "felix.log").read_text().splitlines():
        try:
            doc = json.loads(line)
        except json.JSONDecodeError:
            continue
        event = doc.get("event")
        if event == "syncer status" and doc.get("status") == "resync-in-progress":
            event = "resync started"
        if (event in wanted or event == "resync started") and event not in out:
            out[event] = datetime.datetime.fromisoformat(doc["timestamp"].replace("Z", "+00:00")).timestamp()
    return out


def wait_applied(probe: InNetns, revision: int, deadline: float) -> float:
    while True:
        status, text = probe.get("/metrics")
        value = metric(text, "felix_dataplane_applied_revision") if status == 200 else None
        if value is not None and value >= revision:
            return time.perf_counter()
        if time.perf_counter() > deadline:
            raise TimeoutError(f"revision {revision} not applied in time")
        time.sleep(0.002)


def has_address(text: str, address: str) -> bool:
    """Whether ``address`` occurs in ``text`` as a whole address (10.0.0.1 is not in 10.0.0.12)."""
    return re.search(rf"(?<![\d.]){re.escape(address)}(?![\d.])", text) is not None


def hot_set_members(lab: Lab, kernel: str, port: int) -> str:
    """The elements of the IP set behind the hot policies' ``app == 'hot'`` source (the rule with ``port``)."""
    found = re.search(rf"ip saddr @(\S+) .*dport {port}\b", kernel)
    if found is None:
        raise RuntimeError(f"no rule for the hot policy's port {port} in the kernel")
    return sh("ip", "netns", "exec", lab.host, "nft", "list", "set", "inet", "calico", found.group(1)).stdout


def floor(lab: Lab, ruleset: str) -> tuple[float, float]:
    """``nft -f`` of the ruleset into fresh namespaces: the best time of 3, and the least CPU (user + system)."""
    best, least_cpu = float("inf"), float("inf")
    for i in range(3):
        ns = lab.netns(f"floor{i}")
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        sh("ip", "netns", "exec", ns, "nft", "-f", "-", stdin=ruleset)
        best = min(best, time.perf_counter() - started)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        least_cpu = min(least_cpu, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return best, least_cpu


def _tcp(address: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((address, port), timeout=timeout) as sock:
            sock.sendall(b"x")
            return sock.recv(1) == b"x"
    except OSError:
        return False


def _echo_server(netns: str, port: int, stop: threading.Event) -> None:
    enter(netns)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(64)
    srv.settimeout(0.1)
    with srv:
        for _ in range(10_000_000):
            if stop.is_set():
                return
            try:
                conn, _ = srv.accept()
            except (TimeoutError, BlockingIOError):
                continue
            with conn:
                conn.settimeout(1)
                try:
                    data = conn.recv(16)
                    if data:
                        conn.sendall(data)
                except OSError:
                    pass


def first_response(lab: Lab, db: str, workdir: Path, pods: int) -> dict[str, Any]:
    """CNI ADD of new pods; time from ADD to the first TCP exchange with a server pod."""
    import asyncio

    from libcalico.datastore.sqlite import SqliteBackend

    bindir = workdir / "cni-bin"
    bindir.mkdir()
    for name, module in (("calico", "calico"), ("calico-ipam", "ipam")):
        (bindir / name).write_text(f"#!{sys.executable}\nfrom services.cni.{module} import main\nmain()\n")
        (bindir / name).chmod(0o755)

    async def pool() -> None:
        backend = SqliteBackend(db)
        await backend.create(World.key("ippools", "bench-pods"), {
            "apiVersion": API, "kind": "IPPool", "metadata": {"name": "bench-pods"},
            "spec": {"cidr": "10.210.0.0/24", "blockSize": 26, "ipipMode": "Never", "vxlanMode": "Never",
                     "natOutgoing": False, "nodeSelector": "all()"}})
        await backend.close()

    asyncio.run(pool())
    conf = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico", "nodename": HOST,
            "datastore_type": "sqlite", "calico_db": db, "mtu": 1450, "ipam_lock_file": str(workdir / "ipam.lock"),
            "endpoint_status_dir": str(workdir / "endpoint-status"), "policy_setup_timeout_seconds": 10,
            "ipam": {"type": "calico-ipam"}}

    def add(label: str) -> tuple[str, str, float]:
        ns = lab.netns(label)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": f"c-{label}",
               "CNI_NETNS": f"/run/netns/{ns}", "CNI_IFNAME": "eth0", "CNI_PATH": str(bindir),
               "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={label}"}
        started = time.perf_counter()
        proc = subprocess.run(["ip", "netns", "exec", lab.host, str(bindir / "calico")], input=json.dumps(conf),
                              env=env, capture_output=True, text=True, timeout=120)
        if proc.returncode:
            raise RuntimeError(f"CNI ADD failed: {proc.stdout} {proc.stderr[-500:]}")
        ip = json.loads(proc.stdout)["ips"][0]["address"].split("/")[0]
        return ns, ip, started

    server_ns, server_ip, _ = add("server")
    stop = threading.Event()
    threading.Thread(target=_echo_server, args=(server_ns, 8080, stop), daemon=True).start()
    ttfr, add_times = [], []
    try:
        for i in range(pods):
            ns, _, started = add(f"pod{i}")
            add_times.append(time.perf_counter() - started)
            prober = InNetns(ns)
            try:
                for _ in range(1000):
                    if prober.call(_tcp, server_ip, 8080, 0.2):
                        break
                    if time.perf_counter() - started > 30:
                        raise TimeoutError("new pod never reached the server")
                ttfr.append(time.perf_counter() - started)
            finally:
                prober.close()
    finally:
        stop.set()
    p50, p99 = percentiles(ttfr)
    a50, a99 = percentiles(add_times)
    return {"pods": pods, "ttfr_p50_ms": round(p50, 1), "ttfr_p99_ms": round(p99, 1),
            "cni_add_p50_ms": round(a50, 1), "cni_add_p99_ms": round(a99, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--remote", type=int, default=10000)
    parser.add_argument("--local", type=int, default=100)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--felix-tree", help="run Felix from the libcalico and services packages in this directory")
    parser.add_argument("--keep-log", type=Path, help="copy Felix's log here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    import asyncio

    from libcalico.datastore.sqlite import SqliteBackend

    world = World(args.seed)
    world.cluster(100)
    world.profiles()
    for i in range(args.remote):
        world.workload(f"r-{i}", f"node-{1 + i % 100}", f"calir{i}"[:15])
    local_docs = []
    for i in range(args.local):
        local_docs.append(world.workload(f"l-{i}", HOST, f"cali{i:011d}", ns=NAMESPACES[i % len(NAMESPACES)],
                                         labels={"app": APPS[i % len(APPS)], "role": ROLES[i % len(ROLES)],
                                                 "env": ENVS[i % len(ENVS)], "bench": "local"},
                                         ip=f"10.200.{i >> 8}.{i & 255}"))
    for i in range(args.policies - HOT_POLICIES):
        world.policy(i)
    hot = [world.hot_policy(i, 7000 + i) for i in range(HOT_POLICIES)]

    tag = f"{os.getpid() % 100000}"
    lab = Lab(tag, args.local)
    workdir = Path(tempfile.mkdtemp(prefix="felix-e2e-"))
    db = str(workdir / "calico.db")
    felix: subprocess.Popen[bytes] | None = None
    probe: InNetns | None = None
    result: dict[str, Any] = {"policies": args.policies, "remote": args.remote, "local": args.local,
                              "load_average_1m": os.getloadavg()[0]}
    try:
        t = time.perf_counter()
        asyncio.run(fill(db, world.docs))
        result["datastore_fill_s"] = round(time.perf_counter() - t, 2)
        # 2. cold start
        wall0 = time.time()
        started = time.perf_counter()
        felix = start_felix(lab, db, workdir, args.felix_tree)
        probe = InNetns(lab.host)
        while True:
            status, _ = probe.get("/readiness")
            if status == 200:
                break
            if felix.poll() is not None:
                raise RuntimeError("felix exited:\n" + (workdir / "felix.log").read_text()[-3000:])
            if time.perf_counter() - started > 300:
                raise TimeoutError("felix not ready in 300 s")
            time.sleep(0.005)
        cold = time.perf_counter() - started
        result["rss_at_ready_mib"] = rss_mib(felix.pid, "VmRSS")
        own_cpu, nft_cpu = cpu_seconds(felix.pid)  # at ready every nft of the first apply has been waited for
        result.update(felix_cpu_at_ready_s=round(own_cpu, 2), nft_cpu_at_ready_s=round(nft_cpu, 2))
        # pydantic's compiled core is mapped once anything imported the resource models
        result["pydantic_imported_at_ready"] = "pydantic_core" in Path(f"/proc/{felix.pid}/maps").read_text()
        events = log_events(workdir)
        phases = {"start_to_settings_s": events["settings_loaded"] - wall0,  # interpreter, imports, pre-read
                  "start_to_listing_s": events["syncer starting"] - wall0,  # + wiring the graph and dataplane
                  "datastore_list_s": events["resync started"] - events["syncer starting"],
                  "validate_and_calc_s": events["calculation graph in sync"] - events["resync started"],
                  "dataplane_first_apply_s": events["dataplane programmed"] - events["calculation graph in sync"]}
        _, text = probe.get("/metrics")
        result.update(cold_start_s=round(cold, 3), **{k: round(v, 3) for k, v in phases.items()},
                      active_local_endpoints=metric(text, "felix_active_local_endpoints"),
                      active_local_policies=metric(text, "felix_active_local_policies"),
                      ipsets=metric(text, "felix_ipsets_calico"))
        # 3. the floor
        ruleset = sh("ip", "netns", "exec", lab.host, "nft", "list", "table", "inet", "calico").stdout
        result["ruleset_lines"] = ruleset.count("\n")
        floor_s, floor_cpu = floor(lab, ruleset)
        result.update(floor_nft_f_s=round(floor_s, 3), floor_nft_cpu_s=round(floor_cpu, 2))
        result["cold_vs_floor"] = round(cold / result["floor_nft_f_s"], 1)
        result["dataplane_vs_floor"] = round(phases["dataplane_first_apply_s"] / result["floor_nft_f_s"], 1)
        # 4. single changes
        samples: dict[str, list[float]] = {"policy edited": [], "endpoint added": [], "label changed": []}

        async def changes() -> dict[str, Any]:
            backend = SqliteBackend(db)
            added: list[tuple[str, dict[str, Any]]] = []
            last: dict[str, Any] = {}
            try:
                for i in range(args.changes):
                    key, doc = hot[i % HOT_POLICIES]
                    doc = json.loads(json.dumps(doc))
                    port = 20000 + i
                    doc["spec"]["ingress"][0]["destination"]["ports"] = [port]
                    t0 = time.perf_counter()
                    rev = (await backend.update(key, doc)).revision
                    samples["policy edited"].append(wait_applied(probe, rev, t0 + 30) - t0)
                    last["port"] = port
                for i in range(args.changes):
                    ip = f"10.201.{i >> 8}.{i & 255}"
                    key, doc = world.workload(f"hot-{i}", f"node-{1 + i % 100}", f"calih{i}"[:15],
                                              labels={"app": "hot"}, ns="ns-0", ip=ip)
                    t0 = time.perf_counter()
                    rev = (await backend.create(key, doc)).revision
                    samples["endpoint added"].append(wait_applied(probe, rev, t0 + 30) - t0)
                    added.append((key, doc))
                    last["added_ip"] = ip
                for i in range(args.changes):
                    key, doc = added[i // 2]
                    doc = json.loads(json.dumps(doc))
                    doc["metadata"]["labels"]["app"] = "cold" if i % 2 == 0 else "hot"
                    t0 = time.perf_counter()
                    rev = (await backend.update(key, doc)).revision
                    samples["label changed"].append(wait_applied(probe, rev, t0 + 30) - t0)
                    last["relabelled_ip"] = doc["spec"]["ipNetworks"][0].split("/")[0]
                    last["relabelled_to"] = doc["metadata"]["labels"]["app"]
            finally:
                await backend.close()
            return last

        apply_before = {k: metric(probe.get("/metrics")[1], k) or 0.0 for k in
                        ("felix_int_dataplane_apply_time_seconds_sum", "felix_int_dataplane_apply_time_seconds_count")}
        last = asyncio.run(changes())
        text = probe.get("/metrics")[1]
        applies = (metric(text, "felix_int_dataplane_apply_time_seconds_count") or 0.0) - apply_before[
            "felix_int_dataplane_apply_time_seconds_count"]
        apply_sum = (metric(text, "felix_int_dataplane_apply_time_seconds_sum") or 0.0) - apply_before[
            "felix_int_dataplane_apply_time_seconds_sum"]
        result["change_applies"] = int(applies)
        result["change_mean_dataplane_apply_ms"] = round(1000 * apply_sum / applies, 1) if applies else None
        kernel = sh("ip", "netns", "exec", lab.host, "nft", "list", "table", "inet", "calico").stdout
        checks = {"policy edited": f"dport {last['port']}" in kernel,
                  "endpoint added": has_address(kernel, last["added_ip"]),
                  "label changed": has_address(hot_set_members(lab, kernel, last["port"]),
                                               last["relabelled_ip"]) == (last["relabelled_to"] == "hot")}
        if not all(checks.values()):
            raise RuntimeError(f"kernel does not show the last changes: {checks}")
        for name, values in samples.items():
            p50, p99 = percentiles(values)
            result[f"{name.replace(' ', '_')}_p50_ms"] = round(p50, 1)
            result[f"{name.replace(' ', '_')}_p99_ms"] = round(p99, 1)
        # 5. memory
        result["felix_peak_rss_mib"] = rss_mib(felix.pid, "VmHWM")
        # 6. new pod: time to first response
        if args.pods:
            result.update(first_response(lab, db, workdir, args.pods))
        result["felix_peak_rss_mib_after_pods"] = rss_mib(felix.pid, "VmHWM")
    finally:
        if probe is not None:
            probe.close()
        if felix is not None and felix.poll() is None:
            felix.send_signal(signal.SIGTERM)
            try:
                felix.wait(15)
            except subprocess.TimeoutExpired:
                felix.kill()
        lab.close()
        if args.keep_log is not None and (workdir / "felix.log").exists():
            shutil.copyfile(workdir / "felix.log", args.keep_log)
        shutil.rmtree(workdir, ignore_errors=True)
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
