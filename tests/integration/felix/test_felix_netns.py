"""Felix programming another network namespace (``FELIX_DATAPLANENETNS``) while it runs in its own.

The lab normally runs Felix inside the host namespace (``ip netns exec``); this
runs it in the test's namespace, pointed at the host namespace: rules, routes
and sysctls land there, the status server stays here.
"""

from __future__ import annotations

from pathlib import Path

from tests.fixtures.felix_daemon import (
    FelixDaemon,
    Store,
    namespace_profile,
    network_policy,
    workload,
)
from tests.fixtures.netns import EchoServer, NetnsPool, can_ping, can_tcp, netns_pool  # noqa: F401

HOSTNAME = "host-a"


async def test_dataplane_in_another_namespace(netns_pool: NetnsPool, tmp_path: Path) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    a = netns_pool.pod(host, "a", "10.65.0.2")
    b = netns_pool.pod(host, "b", "10.65.0.3")
    db = str(tmp_path / "calico.db")
    store = Store(db)
    felix = FelixDaemon(host, HOSTNAME, db, tmp_path / "felix", outside=True)
    try:
        for doc in (namespace_profile("default"), workload(a, HOSTNAME, labels={"role": "frontend"}),
                    workload(b, HOSTNAME, labels={"role": "backend"})):
            await store.apply(doc)
        felix.start()
        await felix.wait_ready(60)
        assert await can_ping(a, b.ip)
        assert "table inet calico" in host.nft("list", "tables").stdout
        assert f"dev {b.iface}" in host.run_ip("route", "show", f"{b.ip}/32").stdout
        await store.apply(network_policy("isolate-b", "role == 'backend'", types=["Ingress"]))
        await felix.wait_applied(await store.barrier())
        with EchoServer(b, 8080):
            assert not await can_tcp(a, b.ip, 8080, timeout=0.6)
    finally:
        felix.stop()
        await store.close()
