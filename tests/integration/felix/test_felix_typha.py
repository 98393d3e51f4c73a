"""Felix reading through Typha (``FELIX_TYPHAADDR``): same results, not ready while Typha is lost, reconnects.

calico-typha and calico-felix both run in the host namespace (Typha on
127.0.0.1:5473), on the same sqlite datastore file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.felix_daemon import (
    FelixDaemon,
    Store,
    TyphaDaemon,
    namespace_profile,
    network_policy,
    workload,
)
from tests.fixtures.netns import EchoServer, NetnsPool, Pod, can_ping, can_tcp, netns_pool  # noqa: F401

HOSTNAME = "host-a"


@dataclass
class TyphaLab:
    felix: FelixDaemon
    typha: TyphaDaemon
    store: Store
    a: Pod
    b: Pod

    async def sync(self) -> None:
        """Wait until Felix has applied everything written so far."""
        await self.felix.wait_applied(await self.store.barrier(), timeout=30)


@pytest.fixture
async def lab(netns_pool: NetnsPool, tmp_path: Path) -> AsyncIterator[TyphaLab]:  # noqa: F811
    """Typha and Felix (through Typha) on one host with two pods."""
    db = str(tmp_path / "calico.db")
    store = Store(db)
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    a = netns_pool.pod(host, "a", "10.65.0.2")
    b = netns_pool.pod(host, "b", "10.65.0.3")
    await store.apply(namespace_profile("default"))
    await store.apply(workload(a, HOSTNAME, labels={"role": "frontend"}))
    await store.apply(workload(b, HOSTNAME, labels={"role": "backend"}))
    typha = TyphaDaemon(host, db, tmp_path / "typha").start()
    felix = FelixDaemon(host, HOSTNAME, db, tmp_path / "felix", env={"FELIX_TYPHAADDR": "127.0.0.1:5473"})
    try:
        felix.start()
        await felix.wait_ready(60)
        yield TyphaLab(felix, typha, store, a, b)
    finally:
        felix.stop()
        typha.stop()
        await store.close()


async def test_through_typha_lost_typha_is_not_ready_and_reconnects(lab: TyphaLab) -> None:
    started = lab.felix.log_events("felix started")
    assert started and started[0]["input"] == "typha"
    await lab.store.apply(network_policy("isolate-b", "role == 'backend'", types=["Ingress"]))
    await lab.sync()
    with EchoServer(lab.b, 8080):
        assert not await can_tcp(lab.a, lab.b.ip, 8080, timeout=0.6)
        lab.typha.stop()
        await lab.felix.wait(lambda: not lab.felix.ready(), "not ready after Typha is lost", 30)
        body = lab.felix.readiness()
        assert body is not None and body["notReady"] == ["async_calc_graph"]
        # The programmed dataplane stays as it was while Typha is away.
        assert await can_ping(lab.b, lab.a.ip)
        assert not await can_tcp(lab.a, lab.b.ip, 8080, timeout=0.6)
        await lab.store.delete("NetworkPolicy", "isolate-b", "default")  # written while Typha is down
        lab.typha.start()
        await lab.felix.wait_ready(60)
        await lab.sync()
        assert await can_tcp(lab.a, lab.b.ip, 8080)
    assert lab.felix.running
    assert lab.felix.metrics()["felix_resyncs_started"] >= 2  # a fresh snapshot after the reconnect
