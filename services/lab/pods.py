"""Pods: a network namespace each, wired and addressed by the real ``calico`` CNI plugin.

ADD runs as a kubelet would: inside the host's namespace, the network configuration on
stdin, ``CNI_COMMAND``/``CNI_CONTAINERID``/``CNI_NETNS``/``CNI_IFNAME``/``CNI_PATH`` and the
Kubernetes pod in ``CNI_ARGS``; the pod's labels (``pod``, ``host``) go in the
configuration's ``args.cni.labels``, the CNI convention for labels.
"""

from __future__ import annotations

import json
from typing import Any

from services.lab import namespaces
from services.lab.command import base_env, run
from services.lab.errors import CommandFailed, LabError
from services.lab.layout import HostPlan, Layout, PodPlan
from services.lab.roster import Binaries, datastore_env
from services.lab.state import LabDir, PodRecord

NETWORK_NAME = "k8s-pod-network"
CNI_VERSION = "1.0.0"
CNI_TIMEOUT = 60.0
UNDERLAY_MTU = 1500
VXLAN_OVERHEAD = 50
POLICY_SETUP_TIMEOUT = 10


def netconf(layout: Layout, labdir: LabDir, host: HostPlan, pod: PodPlan) -> dict[str, Any]:
    """The network configuration the lab hands the plugin for one pod."""
    ds = datastore_env(layout, labdir)
    conf: dict[str, Any] = {
        "cniVersion": CNI_VERSION,
        "name": NETWORK_NAME,
        "type": "calico",
        "log_level": "info",
        "nodename": host.name,
        "datastore_type": ds["DATASTORE_TYPE"],
        "mtu": UNDERLAY_MTU - (VXLAN_OVERHEAD if layout.spec.encap == "vxlan" else 0),
        "ipam": {"type": "calico-ipam"},
        "endpoint_status_dir": str(labdir.host_dir(host.name) / "endpoint-status"),
        "policy_setup_timeout_seconds": POLICY_SETUP_TIMEOUT,  # ADD waits for Felix, like a kubelet's pod
        "ipam_lock_file": str(labdir.root / "ipam.lock"),
        "args": {"cni": {"labels": [{"key": k, "value": v} for k, v in sorted(pod.labels.items())]}},
    }
    if "CALICO_DB" in ds:
        conf["calico_db"] = ds["CALICO_DB"]
    if "ETCD_ENDPOINTS" in ds:
        conf["etcd_endpoints"] = ds["ETCD_ENDPOINTS"]
    return conf


def cni_env(bins: Binaries, command: str, pod: PodPlan) -> dict[str, str]:
    """The CNI_* variables of one invocation."""
    env = base_env()
    env.update({
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": pod.container_id,
        "CNI_NETNS": str(namespaces.netns_path(pod.netns)),
        "CNI_IFNAME": "eth0",
        "CNI_PATH": bins.cni_path,
        "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={pod.namespace};K8S_POD_NAME={pod.name};"
                    f"K8S_POD_INFRA_CONTAINER_ID={pod.container_id}",
    })
    return env


def _cni_error(stdout: str) -> str:
    """The message of a CNI error document, or the raw output."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return stdout.strip()
    if isinstance(doc, dict) and "msg" in doc:
        details = f": {doc['details']}" if doc.get("details") else ""
        return f"{doc['msg']}{details} (CNI error code {doc.get('code')})"
    return stdout.strip()


async def invoke(layout: Layout, labdir: LabDir, bins: Binaries, command: str, pod: PodPlan) -> dict[str, Any]:
    """Run the ``calico`` plugin inside the pod's host namespace; return its result document."""
    host = layout.host(pod.host)
    plugin = bins.find("calico")
    conf = netconf(layout, labdir, host, pod)
    done = await run("ip", "netns", "exec", host.netns, plugin, stdin=json.dumps(conf),
                     env=cni_env(bins, command, pod), timeout=CNI_TIMEOUT, check=False)
    if done.returncode != 0:
        message = _cni_error(done.stdout) or (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise LabError(f"calico CNI {command} failed for {pod.name}: {message}", host=pod.host,
                       step=f"cni {command.lower()} {pod.name}")
    if not done.stdout.strip():
        return {}
    try:
        result = json.loads(done.stdout)
    except ValueError:
        raise LabError(f"calico CNI {command} printed something that is not JSON: {done.stdout[:200]!r}",
                       host=pod.host, step=f"cni {command.lower()} {pod.name}") from None
    return result if isinstance(result, dict) else {}


def record_from_result(pod: PodPlan, result: dict[str, Any]) -> PodRecord:
    """What the lab keeps about a pod, from the plugin's result."""
    ip = ""
    for entry in result.get("ips") or []:
        address = str(entry.get("address", ""))
        if address and ":" not in address:
            ip = address.split("/", 1)[0]
            break
    host_if, mac = "", ""
    for iface in result.get("interfaces") or []:
        if iface.get("sandbox"):
            mac = str(iface.get("mac", ""))
        else:
            host_if = str(iface.get("name", ""))
    if not ip:
        raise LabError(f"calico CNI ADD returned no IPv4 address for {pod.name}: {result}", host=pod.host,
                       step=f"cni add {pod.name}")
    return PodRecord(name=pod.name, host=pod.host, netns=pod.netns, container_id=pod.container_id,
                     namespace=pod.namespace, ip=ip, mac=mac, interface=host_if)


async def add(layout: Layout, labdir: LabDir, bins: Binaries, pod: PodPlan) -> PodRecord:
    """Create a pod: its namespace, then CNI ADD. Undo the namespace when ADD fails."""
    try:
        await namespaces.create(pod.netns)
    except LabError as exc:
        raise exc.at(host=pod.host, step=f"create namespace {pod.netns}") from None
    try:
        result = await invoke(layout, labdir, bins, "ADD", pod)
        return record_from_result(pod, result)
    except (LabError, CommandFailed):
        await namespaces.delete(pod.netns)
        raise


async def delete(layout: Layout, labdir: LabDir, bins: Binaries, pod: PodPlan) -> None:
    """Remove a pod: CNI DEL (endpoint and addresses), then its namespace."""
    await invoke(layout, labdir, bins, "DEL", pod)
    await namespaces.delete(pod.netns)
