"""Restarts through the real daemon: kill Felix, change policy, start it again; configuration changes.

Allowed traffic is probed continuously (a new TCP connection every 50 ms plus
an echo on one long-lived connection) from before the kill until after the new
Felix is ready: not one probe may fail. Traffic the changed policy denies must
be denied within :data:`RESTART_DENY_TARGET` seconds of the new process's start.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.fixtures.felix_daemon import API, network_policy
from tests.fixtures.felix_lab import HOSTNAME, Lab, Policies, build_lab
from tests.fixtures.netns import EchoServer, Netns, TcpSession, can_tcp, tcp_connect

RESTART_DENY_TARGET = 10.0  # seconds from process start (Python start-up included) to the new rules in force
PROBE_INTERVAL = 0.05


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The module's host, pods and running Felix."""
    yield from build_lab(tmp_path_factory.mktemp("felix-restart"))


@pytest.fixture
async def policies(lab: Lab) -> AsyncIterator[Policies]:
    """This case's resources, removed again at the end."""
    pol = Policies(lab)
    try:
        yield pol
    finally:
        await pol.close()


class Prober:
    """Probes ``address:port`` from ``pod`` on a thread until stopped: new connections and one open session."""

    def __init__(self, pod: Netns, address: str, port: int) -> None:
        self.pod, self.address, self.port = pod, address, port
        self.session = TcpSession(pod, address, port)
        self.results: list[tuple[float, str, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.session.close()

    def _run(self) -> None:
        for _ in range(1_000_000):
            if self._stop.is_set():
                return
            self.results.append((time.monotonic(), "connect", tcp_connect(self.pod, self.address, self.port, 1.0)))
            self.results.append((time.monotonic(), "session", self.session.echo(1.0)))
            self._stop.wait(PROBE_INTERVAL)

    def failures(self) -> list[tuple[float, str, bool]]:
        """Every probe that did not get through."""
        return [r for r in self.results if not r[2]]


async def test_kill_change_policy_restart_never_drops_allowed_traffic(lab: Lab, policies: Policies) -> None:
    allow_two = network_policy("b-clients", "role == 'backend'", ingress=[
        {"action": "Allow", "source": {"selector": "role in {'frontend', 'other'}"}}])
    await policies.apply(allow_two)
    with EchoServer(lab.b, 8080):
        assert await can_tcp(lab.c, lab.b.ip, 8080)
        with Prober(lab.a, lab.b.ip, 8080) as prober:
            lab.felix.kill()
            # Change policy while Felix is down: c is no longer allowed.
            await policies.store.apply(network_policy("b-clients", "role == 'backend'", ingress=[
                {"action": "Allow", "source": {"selector": "role == 'frontend'"}}]))
            assert await can_tcp(lab.c, lab.b.ip, 8080)  # nothing removed the old rules
            started = time.monotonic()
            lab.felix.start()
            deadline = started + RESTART_DENY_TARGET
            denied_after = None
            while time.monotonic() < deadline:
                if not await can_tcp(lab.c, lab.b.ip, 8080, timeout=0.3):
                    denied_after = time.monotonic() - started
                    break
            assert denied_after is not None, f"c still allowed {RESTART_DENY_TARGET}s after the restart"
            await lab.felix.wait_ready(30)
            await policies.sync()
            settle_until = time.monotonic() + 1.0
            while time.monotonic() < settle_until:  # keep probing a little after ready
                assert await can_tcp(lab.a, lab.b.ip, 8080)
        assert len(prober.results) >= 20, prober.results
        assert prober.failures() == [], prober.failures()
    replaced = lab.felix.log_events("table replaced")
    assert replaced and replaced[-1]["had_table"] is True  # took over the previous run's table in one go
    assert not await can_tcp(lab.c, lab.b.ip, 8080, timeout=0.6)
    print(f"new denial in force {denied_after:.2f}s after the process started; "
          f"{len(prober.results)} probes, none failed")


async def test_dataplane_config_applies_live_and_daemon_config_restarts(lab: Lab, policies: Policies) -> None:
    started_before = len(lab.felix.log_events("felix started"))
    pid = lab.felix.proc.pid if lab.felix.proc else None
    with EchoServer(lab.host, 9000):
        assert not await can_tcp(lab.a, lab.host.address, 9000, timeout=0.6)  # DefaultEndpointToHostAction Drop
        await policies.apply({"apiVersion": API, "kind": "FelixConfiguration", "metadata": {"name": f"node.{HOSTNAME}"},
                              "spec": {"defaultEndpointToHostAction": "Accept"}})
        assert await can_tcp(lab.a, lab.host.address, 9000)
    assert len(lab.felix.log_events("felix started")) == started_before  # live: no restart
    # A daemon parameter (reporting interval) in the global resource: Felix restarts itself cleanly.
    with EchoServer(lab.b, 8080), Prober(lab.a, lab.b.ip, 8080) as prober:
        await policies.store.apply({"apiVersion": API, "kind": "FelixConfiguration", "metadata": {"name": "default"},
                                    "spec": {"reportingInterval": "7s"}})
        await lab.felix.wait(lambda: len(lab.felix.log_events("felix started")) == started_before + 1,
                             "a restarted run", 30)
        await lab.felix.wait_ready(30)
        await policies.sync()
        assert prober.failures() == []
    policies.created.append(("FelixConfiguration", "default", None))
    assert lab.felix.running and lab.felix.proc is not None and lab.felix.proc.pid == pid  # re-executed in place
    restarting = lab.felix.log_events("restarting")
    assert restarting and restarting[-1]["reasons"] == ["ReportingIntervalSecs"]
    loaded = lab.felix.log_events("settings_loaded")[-1]
    assert loaded["settings"]["ReportingIntervalSecs"] == 7.0
    assert loaded["sources"]["ReportingIntervalSecs"].endswith("field reportingInterval")
    assert loaded["settings"]["DefaultEndpointToHostAction"] == "Accept"
    with EchoServer(lab.host, 9000):
        assert await can_tcp(lab.a, lab.host.address, 9000)  # the per-node dataplane setting survived
