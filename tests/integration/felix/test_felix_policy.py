"""Policy on real packets through the real daemon: calico-felix in a host namespace, sqlite datastore.

One Felix serves the module (:mod:`tests.fixtures.felix_lab`): pods a (frontend,
service account sa-web), b (backend, named port http-alt = 7070), c (other) in
namespace ``default`` and d (frontend) in ``dev``. Each case writes resources
through the datastore client, waits until Felix reports that revision applied,
and checks with ICMP / TCP / UDP. "Denied" is one probe with a short timeout
after the apply. Resources a case creates are deleted (and that deletion
applied) before the next case.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from libcalico.datastore.sqlite import SqliteBackend
from tests.fixtures.felix_daemon import API, global_policy, network_policy
from tests.fixtures.felix_lab import HOSTNAME, Lab, Policies, build_lab
from tests.fixtures.netns import EchoServer, can_ping, can_tcp, can_udp

DENY_TIMEOUT = 0.6
BACKEND = "role == 'backend'"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """The module's host, pods and running Felix."""
    yield from build_lab(tmp_path_factory.mktemp("felix-policy"))


@pytest.fixture
async def policies(lab: Lab) -> AsyncIterator[Policies]:
    """This case's resources, removed again at the end."""
    pol = Policies(lab)
    try:
        yield pol
    finally:
        await pol.close()


async def denied_tcp(pod: object, address: str, port: int) -> bool:
    """True when a TCP exchange does NOT get through."""
    return not await can_tcp(pod, address, port, timeout=DENY_TIMEOUT)  # type: ignore[arg-type]


async def test_profile_allows_without_policy_and_status_is_reported(lab: Lab, policies: Policies) -> None:
    assert await can_ping(lab.a, lab.b.ip)
    assert await can_ping(lab.d, lab.c.ip)
    with EchoServer(lab.b, 8080) as server, EchoServer(lab.b, 5353, udp=True):
        assert await can_tcp(lab.a, lab.b.ip, 8080)
        assert await can_udp(lab.c, lab.b.ip, 5353)
        assert server.peers == [lab.a.ip]
    # The CNI plugin's status files: one per endpoint, "up".
    files = sorted(p.name for p in Path(lab.felix.status_dir).iterdir())
    assert files == sorted(f"k8s {ns}%2F{pod} eth0" for ns, pod in
                           (("default", "a"), ("default", "b"), ("default", "c"), ("dev", "d")))
    doc = json.loads((Path(lab.felix.status_dir) / "k8s default%2Fb eth0").read_text())
    assert doc["status"] == "up" and doc["ifaceName"] == lab.b.iface and doc["ipv4Nets"] == [f"{lab.b.ip}/32"]
    # Endpoint status keys and Felix's own (TTL'd) status key, in Calico's layout.
    backend = SqliteBackend(lab.db)
    try:
        prefix = f"/calico/felix/v2/no-region/host/{HOSTNAME}/"

        async def endpoint_keys() -> dict[str, object]:
            return {kv.key: kv.value for kv in (await backend.list(prefix + "workload/")).items}

        expected = {f"{prefix}workload/k8s/{ns}%2f{pod}/endpoint/eth0"
                    for ns, pod in (("default", "a"), ("default", "b"), ("default", "c"), ("dev", "d"))}
        keys = await endpoint_keys()
        deadline = time.monotonic() + 10
        while set(keys) != expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            keys = await endpoint_keys()
        assert set(keys) == expected
        assert all(value == {"status": "up"} for value in keys.values())
        status = (await backend.get(prefix + "status")).value
        assert set(status) == {"time", "uptime", "first_update"}
        assert (await backend.get(prefix + "last_reported_status")).value["time"]
    finally:
        await backend.close()
    metrics = lab.felix.metrics()
    assert metrics["felix_active_local_endpoints"] == 4
    assert metrics["felix_resync_state"] == 3
    assert metrics["felix_int_dataplane_apply_time_seconds_count"] >= 1


async def test_a_policy_selecting_an_endpoint_denies_by_default(lab: Lab, policies: Policies) -> None:
    await policies.apply(network_policy("isolate-b", BACKEND, types=["Ingress"]))
    with EchoServer(lab.b, 8080), EchoServer(lab.a, 8080):
        assert not await can_ping(lab.a, lab.b.ip, timeout=DENY_TIMEOUT)
        assert await denied_tcp(lab.a, lab.b.ip, 8080)
        assert await can_tcp(lab.b, lab.a.ip, 8080)  # b's egress is not selected: its profile allows
        assert await can_ping(lab.c, lab.a.ip)
        await policies.delete("NetworkPolicy", "isolate-b", "default")
        assert await can_tcp(lab.a, lab.b.ip, 8080)  # removed: the profile applies again


async def test_allow_by_selector_is_scoped_to_the_policy_namespace(lab: Lab, policies: Policies) -> None:
    await policies.apply(network_policy("from-frontend", BACKEND, ingress=[
        {"action": "Allow", "source": {"selector": "role == 'frontend'"}}]))
    with EchoServer(lab.b, 8080):
        assert await can_tcp(lab.a, lab.b.ip, 8080)
        assert await denied_tcp(lab.c, lab.b.ip, 8080)
        assert await denied_tcp(lab.d, lab.b.ip, 8080)  # a frontend, but in namespace dev
        # A label change moves c into the allowed set (IP-set membership, no rule change).
        wep_c = dict(lab.endpoints["c"])
        wep_c["metadata"] = dict(wep_c["metadata"], labels={"role": "frontend"})
        await policies.store.apply(wep_c)
        await policies.sync()
        try:
            assert await can_tcp(lab.c, lab.b.ip, 8080)
        finally:
            await policies.store.apply(lab.endpoints["c"])
            await policies.sync()
        assert await denied_tcp(lab.c, lab.b.ip, 8080)


async def test_allow_by_namespace_selector(lab: Lab, policies: Policies) -> None:
    await policies.apply(network_policy("from-dev", BACKEND, ingress=[
        {"action": "Allow", "source": {"namespaceSelector": "env == 'dev'"}}]))
    with EchoServer(lab.b, 8080):
        assert await can_tcp(lab.d, lab.b.ip, 8080)
        assert await denied_tcp(lab.a, lab.b.ip, 8080)


async def test_allow_by_service_account(lab: Lab, policies: Policies) -> None:
    await policies.apply(network_policy("from-sa-web", BACKEND, ingress=[
        {"action": "Allow", "source": {"serviceAccounts": {"names": ["sa-web"]}}}]))
    with EchoServer(lab.b, 8080):
        assert await can_tcp(lab.a, lab.b.ip, 8080)
        assert await denied_tcp(lab.c, lab.b.ip, 8080)


async def test_allow_by_port_range_named_port_and_udp(lab: Lab, policies: Policies) -> None:
    await policies.apply(network_policy("ports", BACKEND, ingress=[
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": [8080, "9000:9010"]}},
        {"action": "Allow", "protocol": "TCP", "destination": {"ports": ["http-alt"]}},
        {"action": "Allow", "protocol": "UDP", "destination": {"ports": [5353]}}]))
    for port, allowed in ((8080, True), (9000, True), (9010, True), (9011, False), (8081, False),
                          (7070, True), (7071, False)):
        with EchoServer(lab.b, port):
            assert await can_tcp(lab.a, lab.b.ip, port, timeout=2.0 if allowed else DENY_TIMEOUT) is allowed, port
    with EchoServer(lab.b, 5353, udp=True), EchoServer(lab.b, 5354, udp=True):
        assert await can_udp(lab.a, lab.b.ip, 5353)
        assert not await can_udp(lab.a, lab.b.ip, 5354, timeout=DENY_TIMEOUT)
    assert not await can_ping(lab.a, lab.b.ip, timeout=DENY_TIMEOUT)


async def test_allow_by_cidr_and_network_set(lab: Lab, policies: Policies) -> None:
    await policies.apply(
        {"apiVersion": API, "kind": "GlobalNetworkSet", "metadata": {"name": "trusted", "labels": {"netset": "trusted"}},
         "spec": {"nets": [f"{lab.c.ip}/32"]}},
        global_policy("cidr-and-set", BACKEND, ingress=[
            {"action": "Allow", "source": {"nets": [f"{lab.a.ip}/32"]}},
            {"action": "Allow", "source": {"selector": "netset == 'trusted'"}}]))
    with EchoServer(lab.b, 8080):
        assert await can_tcp(lab.a, lab.b.ip, 8080)
        assert await can_tcp(lab.c, lab.b.ip, 8080)
        assert await denied_tcp(lab.d, lab.b.ip, 8080)
        # The network set's membership changes in place.
        await policies.apply(
            {"apiVersion": API, "kind": "GlobalNetworkSet",
             "metadata": {"name": "trusted", "labels": {"netset": "trusted"}}, "spec": {"nets": [f"{lab.d.ip}/32"]}})
        assert await can_tcp(lab.d, lab.b.ip, 8080)
        assert await denied_tcp(lab.c, lab.b.ip, 8080)


async def test_icmp_type(lab: Lab, policies: Policies) -> None:
    await policies.apply(network_policy("echo-only", BACKEND, ingress=[
        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 8}}]))
    with EchoServer(lab.b, 8080):
        assert await can_ping(lab.a, lab.b.ip)
        assert await denied_tcp(lab.a, lab.b.ip, 8080)
    await policies.apply(network_policy("echo-only", BACKEND, ingress=[
        {"action": "Allow", "protocol": "ICMP", "icmp": {"type": 0}}]))  # echo reply only: no request gets in
    assert not await can_ping(lab.a, lab.b.ip, timeout=DENY_TIMEOUT)


async def test_pass_goes_to_the_next_tier(lab: Lab, policies: Policies) -> None:
    await policies.apply(
        {"apiVersion": API, "kind": "Tier", "metadata": {"name": "security"}, "spec": {"order": 100}},
        global_policy("sec-gate", BACKEND, tier="security", ingress=[
            {"action": "Pass", "source": {"selector": "role == 'frontend'"}}, {"action": "Deny"}]),
        network_policy("allow-all-b", BACKEND, ingress=[{"action": "Allow"}]))
    with EchoServer(lab.b, 8080):
        assert await can_tcp(lab.a, lab.b.ip, 8080)  # passed by security, allowed by the default tier
        assert await denied_tcp(lab.c, lab.b.ip, 8080)  # denied by security despite allow-all below


async def test_log_action_logs_and_continues(lab: Lab, policies: Policies) -> None:
    await policies.apply(network_policy("log-then-allow", BACKEND, ingress=[
        {"action": "Log", "source": {"selector": "role == 'frontend'"}},
        {"action": "Allow", "source": {"selector": "role == 'frontend'"}}]))
    with EchoServer(lab.b, 8080):
        assert await can_tcp(lab.a, lab.b.ip, 8080)
        assert await denied_tcp(lab.c, lab.b.ip, 8080)
    ruleset = lab.host.nft("list", "table", "inet", "calico").stdout
    counters = [int(m) for m in re.findall(r'counter packets (\d+) bytes \d+ log prefix "calico-packet', ruleset)]
    assert counters and max(counters) >= 1, ruleset


async def test_egress_rules(lab: Lab, policies: Policies) -> None:
    await policies.apply(network_policy("a-egress", "role == 'frontend'", types=["Egress"], egress=[
        {"action": "Allow", "protocol": "TCP", "destination": {"selector": BACKEND, "ports": [8080]}}]))
    with EchoServer(lab.b, 8080), EchoServer(lab.b, 8081), EchoServer(lab.a, 8080):
        assert await can_tcp(lab.a, lab.b.ip, 8080)
        assert await denied_tcp(lab.a, lab.b.ip, 8081)
        assert not await can_ping(lab.a, lab.c.ip, timeout=DENY_TIMEOUT)
        assert await can_tcp(lab.b, lab.a.ip, 8080)  # a's ingress is not selected
        assert await can_ping(lab.c, lab.b.ip)  # c is not a frontend
