"""Host endpoints through the real daemon: policy on the host's own interface, failsafe SSH kept open.

The host namespace's ``eth0`` (10.0.0.1) faces the underlay (10.0.0.254). A
HostEndpoint with no profile and no policy denies everything to the host
except Calico's failsafe ports (tcp:22 among them); a GlobalNetworkPolicy then
opens one more port. Probes come from the underlay namespace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures.felix_daemon import API, FelixDaemon, Store, global_policy
from tests.fixtures.netns import EchoServer, Netns, NetnsPool, can_ping, can_tcp, netns_pool  # noqa: F401

HOSTNAME = "host-a"
HOST_IP = "10.0.0.1"


@pytest.fixture
async def felix(netns_pool: NetnsPool, tmp_path: Path) -> AsyncIterator[tuple[FelixDaemon, Netns]]:  # noqa: F811
    """Felix running in a host namespace on an underlay; the underlay namespace is "outside"."""
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", HOST_IP, underlay)
    daemon = FelixDaemon(host, HOSTNAME, str(tmp_path / "calico.db"), tmp_path / "felix").start()
    try:
        await daemon.wait_ready(60)
        yield daemon, underlay
    finally:
        daemon.stop()


async def test_host_endpoint_denies_all_but_failsafe_ssh(felix: tuple[FelixDaemon, Netns]) -> None:
    daemon, outside = felix
    store = Store(daemon.env["CALICO_DB"])
    try:
        with EchoServer(daemon.host, 22), EchoServer(daemon.host, 8080):
            assert await can_tcp(outside, HOST_IP, 8080)  # no host endpoint yet: the host is open
            assert await can_ping(outside, HOST_IP)
            await store.apply({"apiVersion": API, "kind": "HostEndpoint",
                               "metadata": {"name": f"{HOSTNAME}-eth0", "labels": {"role": "node"}},
                               "spec": {"node": HOSTNAME, "interfaceName": "eth0", "expectedIPs": [HOST_IP]}})
            await daemon.wait_applied(await store.barrier())
            assert await can_tcp(outside, HOST_IP, 22)  # failsafe: SSH stays open
            assert not await can_tcp(outside, HOST_IP, 8080, timeout=0.6)
            assert not await can_ping(outside, HOST_IP, timeout=0.6)
            assert daemon.ready()  # Felix's own status port (loopback) is not cut off either
            await store.apply(global_policy("node-8080", "role == 'node'", ingress=[
                {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080]}}]))
            await daemon.wait_applied(await store.barrier())
            assert await can_tcp(outside, HOST_IP, 8080)
            assert await can_tcp(outside, HOST_IP, 22)
            assert not await can_ping(outside, HOST_IP, timeout=0.6)
            # A policy that denies everything, SSH included, still cannot close the failsafe port.
            await store.apply(global_policy("node-deny", "role == 'node'", order=1, ingress=[{"action": "Deny"}]))
            await daemon.wait_applied(await store.barrier())
            assert await can_tcp(outside, HOST_IP, 22)
            assert not await can_tcp(outside, HOST_IP, 8080, timeout=0.6)
    finally:
        await store.close()
