"""Two hosts over VXLAN, each running the real daemon; addresses from Calico IPAM in the shared datastore.

The test plays the parts Felix does not: IPAM hands each node a block (the
VTEP address and the pod address, as calico-node and the CNI plugin would
ask for them), the Node resources carry each node's underlay address, VTEP
address and VTEP MAC, and the WorkloadEndpoints name each pod. The two Felix
processes then build ``vxlan.calico``, routes, ARP and FDB entries from the
datastore alone, and policy selects endpoints on the other host by label.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from libcalico.ipam import IPAM, AssignRequest
from tests.fixtures.felix_daemon import (
    API,
    FelixDaemon,
    Store,
    global_policy,
    namespace_profile,
    workload,
)
from tests.fixtures.netns import EchoServer, NetnsPool, Pod, can_ping, can_tcp, netns_pool  # noqa: F401

POOL = {"apiVersion": API, "kind": "IPPool", "metadata": {"name": "vxlan-pool"},
        "spec": {"cidr": "10.70.0.0/16", "blockSize": 26, "vxlanMode": "Always", "natOutgoing": False}}
NODES = {"node-a": ("10.0.0.1", "66:0a:00:00:00:01"), "node-b": ("10.0.0.2", "66:0a:00:00:00:02")}


@dataclass
class TwoHosts:
    felix: dict[str, FelixDaemon]
    pods: dict[str, Pod]
    store: Store
    weps: dict[str, dict[str, Any]]

    async def sync(self) -> None:
        """Wait until both Felix processes have applied everything written so far."""
        revision = await self.store.barrier()
        for daemon in self.felix.values():
            await daemon.wait_applied(revision)


@pytest.fixture
async def two_hosts(netns_pool: NetnsPool, tmp_path: Path) -> AsyncIterator[TwoHosts]:  # noqa: F811
    """Two hosts on one underlay, one pod each, both Felix processes ready."""
    db = str(tmp_path / "calico.db")
    store = Store(db)
    underlay = netns_pool.underlay()
    ipam = IPAM(store.backend)
    await store.apply(POOL)
    await store.apply(namespace_profile("default"))
    felix: dict[str, FelixDaemon] = {}
    pods: dict[str, Pod] = {}
    weps: dict[str, dict[str, Any]] = {}
    try:
        for label, (name, (address, mac)) in zip("ab", NODES.items(), strict=True):
            tunnel = await ipam.auto_assign(AssignRequest(host=name, num4=1, handle=f"vxlan-tunnel-addr-{name}",
                                                          use="Tunnel"))
            pod_ip = await ipam.auto_assign(AssignRequest(host=name, num4=1, handle=f"k8s-pod-network.{label}"))
            await store.apply({"apiVersion": API, "kind": "Node", "metadata": {"name": name},
                               "spec": {"bgp": {"ipv4Address": f"{address}/24"},
                                        "ipv4VXLANTunnelAddr": str(tunnel.ipv4[0].ip), "vxlanTunnelMACAddr": mac}})
            host = netns_pool.host(f"h{label}", address, underlay)
            pods[name] = netns_pool.pod(host, f"p{label}", str(pod_ip.ipv4[0].ip))
            weps[name] = workload(pods[name], name, labels={"role": "client" if label == "a" else "server"})
            await store.apply(weps[name])
            felix[name] = FelixDaemon(host, name, db, tmp_path / name).start()
        for daemon in felix.values():
            await daemon.wait_ready(60)
        yield TwoHosts(felix, pods, store, weps)
    finally:
        for daemon in felix.values():
            daemon.stop()
        await store.close()


async def test_pods_on_two_hosts_talk_over_vxlan_and_policy_sees_remote_labels(two_hosts: TwoHosts) -> None:
    pod_a, pod_b = two_hosts.pods["node-a"], two_hosts.pods["node-b"]
    host_a = two_hosts.felix["node-a"].host
    assert await can_ping(pod_a, pod_b.ip, timeout=2.0)
    assert await can_ping(pod_b, pod_a.ip, timeout=2.0)
    with EchoServer(pod_b, 8080) as server:
        assert await can_tcp(pod_a, pod_b.ip, 8080)
        assert server.peers == [pod_a.ip]  # no NAT between pods
    link = host_a.run_ip("-d", "link", "show", "vxlan.calico").stdout
    assert "vxlan id 4096" in link and "dstport 4789" in link and NODES["node-a"][1] in link
    block_b = next(line.split()[0] for line in host_a.run_ip("route", "show").stdout.splitlines()
                   if "vxlan.calico" in line and "/26" in line)
    assert pod_b.ip.rsplit(".", 1)[0] in block_b
    assert NODES["node-b"][1] in host_a.exec("bridge", "fdb", "show", "dev", "vxlan.calico").stdout
    # Policy on host b selects the client on host a by its labels (an IP set of remote endpoints).
    await two_hosts.store.apply(global_policy("server-from-client", "role == 'server'", ingress=[
        {"action": "Allow", "source": {"selector": "role == 'client'"}}]))
    await two_hosts.sync()
    with EchoServer(pod_b, 8080):
        assert await can_tcp(pod_a, pod_b.ip, 8080)
        relabelled = dict(two_hosts.weps["node-a"])
        relabelled["metadata"] = dict(relabelled["metadata"], labels={"role": "other"})
        await two_hosts.store.apply(relabelled)
        await two_hosts.sync()
        assert not await can_tcp(pod_a, pod_b.ip, 8080, timeout=0.6)
        assert await can_ping(pod_b, pod_a.ip)  # a's own ingress is untouched
