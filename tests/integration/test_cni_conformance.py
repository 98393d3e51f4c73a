"""The ``calico`` and ``calico-ipam`` plugins run as the runtime runs them: a process per command, netconf
on stdin, ``CNI_*`` in the environment, inside a "host" network namespace, wiring real pod namespaces.

Every address used lives only in namespaces these tests create (pool 10.65.0.0/26, underlay 10.0.0.0/24).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from libcalico.datastore import backend_from_env
from libcalico.datastore.client import Client
from libcalico.ipam import IPAM
from libcalico.ipam.report import check, scan
from libcalico.resources import IPPool, WorkloadEndpoint
from services.cni.workload import veth_name_for_workload
from tests.fixtures.netns import Host, Netns, NetnsPool, ping

POOL = "10.65.0.0/26"
NODE = "node-1"


@dataclass
class Cni:
    """Runs the plugins for one test: binaries, host namespace, datastore and network config."""

    bindir: Path
    host: Host
    env: dict[str, str]
    conf: dict[str, Any]
    pool: NetnsPool

    def run(self, command: str, container: str = "", netns: Netns | str | None = None, ifname: str = "eth0",
            args: str = "", plugin: str = "calico", conf: dict[str, Any] | None = None,
            extra_env: dict[str, str] | None = None, stdin: bytes | None = None,
            drop: tuple[str, ...] = ()) -> tuple[int, Any]:
        """One invocation; return the exit status and stdout decoded as JSON (None when empty)."""
        ns_path = netns if isinstance(netns, str) else (f"/run/netns/{netns.name}" if netns else "")
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_COMMAND": command, "CNI_CONTAINERID": container,
               "CNI_NETNS": ns_path, "CNI_IFNAME": ifname, "CNI_PATH": str(self.bindir), "CNI_ARGS": args,
               **(extra_env or {})}
        env = {k: v for k, v in env.items() if k not in drop and (v or k == "CNI_COMMAND")}
        body = stdin if stdin is not None else json.dumps(conf or self.conf).encode()
        proc = subprocess.run(["ip", "netns", "exec", self.host.name, str(self.bindir / plugin)], input=body,
                              env=env, capture_output=True, timeout=120)
        out = proc.stdout.decode().strip()
        return proc.returncode, (json.loads(out) if out else None)

    def add_pod(self, label: str, pod: str, container: str, **kw: Any) -> tuple[Netns, dict[str, Any]]:
        """A fresh pod namespace, ADDed; fail unless ADD succeeded."""
        ns = self.pool.netns(label)
        code, out = self.run("ADD", container, ns, args=f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}", **kw)
        assert code == 0, out
        return ns, out

    def datastore(self, fn: Any) -> Any:
        async def body() -> Any:
            async with backend_from_env(self.env) as backend:
                return await fn(backend)
        return asyncio.run(body())


def _write_plugin(path: Path, module: str) -> None:
    path.write_text(f"#!{sys.executable}\nfrom services.cni.{module} import main\nmain()\n")
    path.chmod(0o755)


@pytest.fixture
def cni(tmp_path: Path, sqlite_env: dict[str, str]) -> Iterator[Cni]:
    """Plugin binaries on a CNI_PATH, a host namespace on an underlay, one pool in a sqlite datastore."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    _write_plugin(bindir / "calico", "calico")
    _write_plugin(bindir / "calico-ipam", "ipam")
    pool = NetnsPool()
    try:
        underlay = pool.underlay()
        host = pool.host("h1", "10.0.0.1", underlay)
        host.exec("sysctl", "-q", "-w", "net.ipv4.ip_forward=1")  # Felix's job; there is no Felix here
        host.exec("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        conf = {"cniVersion": "1.0.0", "name": "k8s-pod-network", "type": "calico", "nodename": NODE,
                "datastore_type": "sqlite", "calico_db": sqlite_env["CALICO_DB"], "mtu": 1450,
                "ipam_lock_file": str(tmp_path / "ipam.lock"),
                "endpoint_status_dir": str(tmp_path / "status"), "ipam": {"type": "calico-ipam"}}
        c = Cni(bindir, host, dict(sqlite_env), conf, pool)
        c.datastore(lambda b: Client(b).create(IPPool.model_validate(
            {"metadata": {"name": "pods"}, "spec": {"cidr": POOL, "blockSize": 28}})))
        yield c
    finally:
        pool.cleanup()


def addresses(ns: Netns) -> list[str]:
    doc = json.loads(ns.exec("ip", "-j", "addr", "show", "dev", "eth0").stdout)
    return [f"{a['local']}/{a['prefixlen']}" for a in doc[0]["addr_info"] if a["family"] == "inet"]


def test_version(cni: Cni) -> None:
    code, out = cni.run("VERSION", stdin=b'{"cniVersion": "1.0.0"}')
    assert code == 0
    assert out == {"cniVersion": "1.0.0",
                   "supportedVersions": ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


def test_add_wires_the_pod_as_calico_does(cni: Cni) -> None:
    ns, out = cni.add_pod("p1", "web-1", "c0ffee01", extra_env={
        "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-1;CALICO_LABELS=pod:web-1,host:node-1"})
    veth = "cali0761ccbeace"  # sha1("default.web-1")[:11]
    assert out["cniVersion"] == "1.0.0"
    assert out["interfaces"][0] == {"name": veth, "mac": "ee:ee:ee:ee:ee:ee"}
    assert out["interfaces"][1]["name"] == "eth0" and out["interfaces"][1]["sandbox"] == f"/run/netns/{ns.name}"
    [ip] = out["ips"]
    assert ip["interface"] == 1 and ip["address"].endswith("/32") and ip["address"].startswith("10.65.0.")
    assert addresses(ns) == [ip["address"]]
    routes = ns.exec("ip", "route").stdout.splitlines()
    assert routes[0].startswith("default via 169.254.1.1 dev eth0")
    assert any(r.startswith("169.254.1.1 dev eth0") and "scope link" in r for r in routes)
    link = json.loads(cni.host.exec("ip", "-j", "link", "show", veth).stdout)[0]
    assert link["address"] == "ee:ee:ee:ee:ee:ee" and "UP" in link["flags"] and link["mtu"] == 1450
    assert cni.host.sysctl(f"net.ipv4.conf.{veth}.proxy_arp") == "1"
    assert cni.host.sysctl(f"net.ipv4.neigh.{veth}.proxy_delay") == "0"
    host_route = cni.host.exec("ip", "route", "show", ip["address"]).stdout
    assert f"dev {veth}" in host_route and "scope link" in host_route
    wep = cni.datastore(lambda b: Client(b).get(WorkloadEndpoint, "node--1-k8s-web--1-eth0", "default"))
    assert wep.spec.ipNetworks == [ip["address"]] and wep.spec.interfaceName == veth
    assert wep.spec.containerID == "c0ffee01" and wep.spec.mac == out["interfaces"][1]["mac"]
    assert wep.metadata.labels == {"pod": "web-1", "host": "node-1", "projectcalico.org/namespace": "default",
                                   "projectcalico.org/orchestrator": "k8s"}


def test_pods_on_one_host_reach_each_other(cni: Cni) -> None:
    a, out_a = cni.add_pod("pa", "a", "aaaa")
    b, out_b = cni.add_pod("pb", "b", "bbbb")
    ip_b = out_b["ips"][0]["address"].split("/")[0]
    ip_a = out_a["ips"][0]["address"].split("/")[0]
    assert ping(a, ip_b) and ping(b, ip_a)


def test_add_twice_is_safe(cni: Cni) -> None:
    ns, first = cni.add_pod("p1", "web", "c1")
    code, second = cni.run("ADD", "c1", ns, args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web")
    assert code == 0, second
    assert second["ips"] == first["ips"]
    assert addresses(ns) == [first["ips"][0]["address"]]
    allocs = cni.datastore(lambda b: scan(b))
    assert [a.ip for a in allocs.allocations] == [first["ips"][0]["address"].split("/")[0]]
    weps = cni.datastore(lambda b: Client(b).list(WorkloadEndpoint))[0]
    assert len(weps) == 1


def test_del_is_idempotent_and_works_without_the_netns(cni: Cni) -> None:
    args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    ns, out = cni.add_pod("p1", "web", "c1")
    assert cni.run("DEL", "c1", ns, args=args) == (0, None)
    assert len(json.loads(ns.exec("ip", "-j", "link").stdout)) == 1
    assert cni.host.exec("ip", "link", "show", veth_name_for_workload("default", "web"), check=False).returncode != 0
    assert cni.run("DEL", "c1", ns, args=args) == (0, None)
    # A second pod whose namespace is gone before DEL: addresses are still released, by handle.
    ns2, _ = cni.add_pod("p2", "db", "c2")
    subprocess.run(["ip", "netns", "del", ns2.name], check=True)
    assert cni.run("DEL", "c2", ns2, args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=db") == (0, None)
    assert cni.run("DEL", "c2", "", args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=db") == (0, None)
    report = cni.datastore(check)
    assert report.scan.allocations == [] and report.scan.handles == {} and report.problems == 0
    assert cni.datastore(lambda b: Client(b).list(WorkloadEndpoint))[0] == []


def test_del_after_failed_add_cleans_up(cni: Cni) -> None:
    ns = cni.pool.netns("p1")
    bad = {**cni.conf, "nodename": "Node_1"}  # the endpoint name cannot be valid: ADD fails at the last step
    code, out = cni.run("ADD", "c1", ns, args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=x", conf=bad)
    assert code == 1 and out["code"] == 7 and "Node_1" in out["details"]
    assert len(json.loads(ns.exec("ip", "-j", "link").stdout)) == 1  # only lo: the pod interface was removed
    assert cni.datastore(scan).allocations == []
    assert cni.run("DEL", "c1", ns, args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=x", conf=bad) == (0, None)
    # An ADD killed half-way (here: while waiting for Felix) leaves everything; DEL removes it all.
    slow = {**cni.conf, "policy_setup_timeout_seconds": 60}
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c2", "CNI_NETNS": f"/run/netns/{ns.name}",
           "CNI_IFNAME": "eth0", "CNI_PATH": str(cni.bindir), "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=y"}
    proc = subprocess.Popen(["ip", "netns", "exec", cni.host.name, str(cni.bindir / "calico")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None
    proc.stdin.write(json.dumps(slow).encode())
    proc.stdin.close()
    deadline = time.monotonic() + 30
    while not cni.datastore(lambda b: Client(b).list(WorkloadEndpoint))[0]:
        assert time.monotonic() < deadline and proc.poll() is None, "ADD never wrote its endpoint"
    proc.kill()
    proc.wait(timeout=10)
    assert cni.run("DEL", "c2", ns, args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=y") == (0, None)
    assert cni.datastore(scan).allocations == []
    assert cni.datastore(lambda b: Client(b).list(WorkloadEndpoint))[0] == []
    assert len(json.loads(ns.exec("ip", "-j", "link").stdout)) == 1
    assert "cali" not in cni.host.exec("ip", "link").stdout


@pytest.mark.parametrize("drop, missing", [("CNI_NETNS", "CNI_NETNS"), ("CNI_CONTAINERID", "CNI_CONTAINERID"),
                                           ("CNI_IFNAME", "CNI_IFNAME"), ("CNI_PATH", "CNI_PATH")])
def test_missing_environment(cni: Cni, drop: str, missing: str) -> None:
    ns = cni.pool.netns("p1")
    code, out = cni.run("ADD", "c1", ns, drop=(drop,))
    assert code == 1
    assert out == {"cniVersion": "1.0.0", "code": 4, "msg": f"required env variables [{missing}] missing"}


def test_bad_input_gets_the_specs_error_document(cni: Cni) -> None:
    ns = cni.pool.netns("p1")
    code, out = cni.run("ADD", "c1", ns, stdin=b'{"cniVersion": "1.0.0", "name": ')
    assert code == 1 and out["code"] == 6 and out["msg"] == "error decoding network config"
    code, out = cni.run("ADD", "c1", ns, conf={**cni.conf, "cniVersion": "2.0.0"})
    assert (code, out["code"], out["msg"], out["cniVersion"]) == (1, 1, "incompatible CNI versions", "1.1.0")
    code, out = cni.run("ADD", "c1", ns, conf={k: v for k, v in cni.conf.items() if k != "type"})
    assert (code, out["code"], out["details"]) == (1, 7, "type: field is required")
    code, out = cni.run("ADD", "c1", ns, conf={**cni.conf, "ipam": {"type": "calico-ipam", "ipv4_pools": ["nope"]}})
    assert (code, out["code"]) == (1, 7) and "the given pool (nope) does not exist" in out["details"]
    code, out = cni.run("ADD", "c1", "/run/netns/does-not-exist")
    assert (code, out["code"]) == (1, 3)
    code, out = cni.run("FROB", "c1", ns)
    assert (code, out["code"]) == (1, 4)
    assert cni.datastore(scan).allocations == []  # no failed ADD kept an address


def test_exhausted_pool(cni: Cni) -> None:
    conf = {**cni.conf, "ipam": {"type": "calico-ipam", "ipv4_pools": ["tiny"]}}
    cni.datastore(lambda b: Client(b).create(IPPool.model_validate(
        {"metadata": {"name": "tiny"}, "spec": {"cidr": "10.65.1.0/31", "blockSize": 31}})))
    for i in range(2):
        cni.add_pod(f"t{i}", f"t{i}", f"t{i}", conf=conf)
    ns = cni.pool.netns("t2")
    code, out = cni.run("ADD", "t2", ns, args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=t2", conf=conf)
    assert code == 1 and out["code"] == 101 and out["msg"] == "no free addresses"
    assert len(json.loads(ns.exec("ip", "-j", "link").stdout)) == 1
    assert len(cni.datastore(scan).allocations) == 2


def test_check(cni: Cni) -> None:
    args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    ns, out = cni.add_pod("p1", "web", "c1")
    conf = {**cni.conf, "prevResult": out}
    assert cni.run("CHECK", "c1", ns, args=args, conf=conf) == (0, None)
    assert cni.run("CHECK", "c1", ns, args=args, conf=conf, plugin="calico-ipam") == (0, None)
    ns.exec("ip", "addr", "del", out["ips"][0]["address"], "dev", "eth0")
    code, err = cni.run("CHECK", "c1", ns, args=args, conf=conf)
    assert code == 1 and err["code"] == 103 and f"{out['ips'][0]['address']} is not on eth0" in err["details"]
    code, err = cni.run("CHECK", "c1", ns, args=args, conf={**conf, "cniVersion": "0.3.1"})
    assert (code, err["code"]) == (1, 1)


def test_status(cni: Cni) -> None:
    assert cni.run("STATUS") == (0, None)
    cni.datastore(lambda b: Client(b).delete(IPPool, "pods"))
    code, out = cni.run("STATUS")
    assert (code, out["code"], out["msg"]) == (1, 50, "no enabled IP pools")


def test_calico_ipam_alone(cni: Cni) -> None:
    conf = {**cni.conf, "type": "calico-ipam"}
    code, out = cni.run("ADD", "ipam1", "/run/netns/unused", plugin="calico-ipam", conf=conf,
                        args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=i")
    assert code == 0 and set(out) == {"cniVersion", "ips", "dns"}
    assert out["ips"][0]["address"].endswith("/32")
    code, again = cni.run("ADD", "ipam1", "/run/netns/unused", plugin="calico-ipam", conf=conf,
                          args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=i")
    assert again == out
    info = cni.datastore(lambda b: IPAM(b).allocation(out["ips"][0]["address"].split("/")[0]))
    assert info.handle == "k8s-pod-network.ipam1"
    assert info.attrs["pod"] == "i" and info.attrs["namespace"] == "default" and info.attrs["node"] == NODE
    code, old = cni.run("ADD", "ipam2", "/run/netns/unused", plugin="calico-ipam", conf={**conf, "cniVersion": "0.3.1"})
    assert code == 0 and old["ips"][0]["version"] == "4"
    for container in ("ipam1", "ipam2", "ipam2"):
        assert cni.run("DEL", container, plugin="calico-ipam", conf=conf) == (0, None)
    assert cni.datastore(scan).allocations == []


def test_add_waits_for_felix_status_file(cni: Cni, tmp_path: Path) -> None:
    status_dir = tmp_path / "status"
    status_dir.mkdir()
    conf = {**cni.conf, "policy_setup_timeout_seconds": 30}
    ns = cni.pool.netns("p1")
    env = {"PATH": "/usr/bin:/bin", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": f"/run/netns/{ns.name}",
           "CNI_IFNAME": "eth0", "CNI_PATH": str(cni.bindir), "CNI_ARGS": "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"}
    proc = subprocess.Popen(["ip", "netns", "exec", cni.host.name, str(cni.bindir / "calico")], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(conf).encode())
    proc.stdin.close()
    deadline = time.monotonic() + 30
    while not cni.datastore(lambda b: Client(b).list(WorkloadEndpoint))[0]:
        assert time.monotonic() < deadline and proc.poll() is None
    assert proc.poll() is None  # endpoint written, still waiting for Felix
    (status_dir / "k8s default%2Fweb eth0").write_text(json.dumps({"status": "up"}))
    assert proc.wait(timeout=20) == 0
    assert json.loads(proc.stdout.read())["ips"]
    started = time.monotonic()
    cni.add_pod("p2", "other", "c2", conf={**conf, "policy_setup_timeout_seconds": 1})
    assert time.monotonic() - started >= 1.0  # no status file: ADD waits out the timeout, then succeeds


class Relay:
    """A TCP relay from a port inside a namespace to an address in the test's own namespace.

    The plugins run inside the "host" namespace, whose 127.0.0.1 is not the one etcd listens on; the
    listening socket is made inside that namespace, the outgoing connections outside it.
    """

    def __init__(self, ns: Netns, target: tuple[str, int]) -> None:
        self.target = target
        self.server = ns.call(lambda: socket.create_server(("127.0.0.1", 0)))
        self.port = self.server.getsockname()[1]
        self.threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, fn: Any, *args: Any) -> None:
        thread = threading.Thread(target=fn, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept(self) -> None:
        while True:
            try:
                inner, _ = self.server.accept()
            except OSError:
                return
            outer = socket.create_connection(self.target)
            for sock in (inner, outer):  # no Nagle delay on the relayed gRPC round trips
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._pipe, inner, outer)
            self._spawn(self._pipe, outer, inner)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.server.close()


def test_etcd_datastore(cni: Cni, etcd_env: dict[str, str]) -> None:
    endpoint = urllib.parse.urlsplit(etcd_env["ETCD_ENDPOINTS"].split(",")[0])
    relay = Relay(cni.host, (str(endpoint.hostname), int(endpoint.port or 2379)))
    try:
        conf = {k: v for k, v in cni.conf.items() if k != "calico_db"}
        conf.update(datastore_type="etcdv3", etcd_endpoints=f"http://127.0.0.1:{relay.port}")
        cni.env = dict(etcd_env)
        cni.datastore(lambda b: Client(b).create(IPPool.model_validate(
            {"metadata": {"name": "pods"}, "spec": {"cidr": POOL, "blockSize": 28}})))
        ns, out = cni.add_pod("p1", "web", "c1", conf=conf)
        assert addresses(ns) == [out["ips"][0]["address"]]
        assert cni.datastore(scan).allocations[0].handle == "k8s-pod-network.c1"
        wep = cni.datastore(lambda b: Client(b).get(WorkloadEndpoint, "node--1-k8s-web-eth0", "default"))
        assert wep.spec.ipNetworks == [out["ips"][0]["address"]]
        assert cni.run("DEL", "c1", ns, args="K8S_POD_NAMESPACE=default;K8S_POD_NAME=web", conf=conf) == (0, None)
        assert cni.datastore(check).problems == 0 and cni.datastore(scan).allocations == []
    finally:
        relay.close()


def test_dual_stack(cni: Cni) -> None:
    cni.datastore(lambda b: Client(b).create(IPPool.model_validate(
        {"metadata": {"name": "pods6"}, "spec": {"cidr": "fd65::/120", "blockSize": 124}})))
    conf = {**cni.conf, "ipam": {"type": "calico-ipam", "assign_ipv4": "true", "assign_ipv6": "true"}}
    a, out_a = cni.add_pod("pa", "a", "a6", conf=conf)
    b, out_b = cni.add_pod("pb", "b", "b6", conf=conf)
    v6 = [ip["address"] for ip in out_a["ips"] if ":" in ip["address"]]
    assert len(out_a["ips"]) == 2 and len(v6) == 1 and v6[0].endswith("/128")
    assert out_a["routes"] == [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}, {"dst": "::/0", "gw": "fe80::ecee:eeff:feee:eeee"}]
    route6 = a.exec("ip", "-6", "route", "show", "default").stdout
    assert "via fe80::ecee:eeff:feee:eeee dev eth0" in route6
    target = next(ip["address"] for ip in out_b["ips"] if ":" in ip["address"]).split("/")[0]
    deadline = time.monotonic() + 10  # IPv6 duplicate address detection must finish first
    while not ping(a, target):
        assert time.monotonic() < deadline, f"no IPv6 path from pod a to {target}"
    for container, pod in (("a6", "a"), ("b6", "b")):
        assert cni.run("DEL", container, f"/run/netns/{(a if pod == 'a' else b).name}",
                       args=f"K8S_POD_NAMESPACE=default;K8S_POD_NAME={pod}", conf=conf) == (0, None)
    assert cni.datastore(scan).allocations == []


def test_del_of_a_replaced_sandbox_leaves_the_new_one_alone(cni: Cni) -> None:
    args = "K8S_POD_NAMESPACE=default;K8S_POD_NAME=web"
    old_ns, old = cni.add_pod("old", "web", "sandbox1")
    new_ns, new = cni.add_pod("new", "web", "sandbox2")  # the pod's sandbox was recreated
    assert cni.run("DEL", "sandbox1", old_ns, args=args) == (0, None)
    wep = cni.datastore(lambda b: Client(b).get(WorkloadEndpoint, "node--1-k8s-web-eth0", "default"))
    assert wep.spec.containerID == "sandbox2" and wep.spec.ipNetworks == [new["ips"][0]["address"]]
    assert addresses(new_ns) == [new["ips"][0]["address"]]
    assert [a.handle for a in cni.datastore(scan).allocations] == ["k8s-pod-network.sandbox2"]
    assert old["ips"] != new["ips"]
