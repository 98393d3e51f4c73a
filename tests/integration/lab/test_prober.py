"""The matrix prober against pods wired by hand (no Felix): real TCP, UDP and ICMP, and real drops.

Three pods on one host, routed by the host as Calico does (tests/fixtures/netns.py with
``cni_host_setup``); an nftables rule in the host drops what "policy" denies.
"""

from __future__ import annotations

import time

import pytest

from services.lab.prober import Endpoint, Prober, echo_request, parse_echo_reply
from tests.fixtures.netns import NetnsPool, netns_pool  # noqa: F401  (fixture)

PORT = 8080


@pytest.fixture
def three_pods(netns_pool: NetnsPool) -> tuple[NetnsPool, list[Endpoint]]:  # noqa: F811
    ul = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", ul)
    pods = [netns_pool.pod(host, f"p{i}", f"10.65.0.{i + 1}", cni_host_setup=True) for i in range(3)]
    return netns_pool, [Endpoint(f"pod{i}", p.name, p.ip) for i, p in enumerate(pods)]


def _drop_to(pool: NetnsPool, ip: str) -> None:
    host = next(n for n in pool.created if n.endswith("-h"))
    from tests.fixtures.netns import Netns

    Netns(host).nft_script(
        "table inet labtest {\n"
        "  chain lab_forward { type filter hook forward priority 0; policy accept;\n"
        f"    ip daddr {ip} ct state new drop\n  }}\n"
        "}\n")


@pytest.mark.parametrize("proto", ["tcp", "udp", "icmp"])
async def test_all_pairs_allowed_then_one_destination_dropped(three_pods, proto: str) -> None:
    pool, eps = three_pods
    pairs = [(a.name, b.name) for a in eps for b in eps if a is not b]
    async with Prober(eps, proto, PORT, timeout=1.0) as prober:
        seen = await prober.probe_all(pairs)
    assert [o.allowed for o in seen] == [True] * 6, seen
    assert all(o.proto == proto and o.port == (None if proto == "icmp" else PORT) for o in seen)

    _drop_to(pool, eps[2].ip)
    started = time.monotonic()
    async with Prober(eps, proto, PORT, timeout=1.0) as prober:
        seen = await prober.probe_all(pairs)
    elapsed = time.monotonic() - started
    verdicts = {(o.src, o.dst): o.allowed for o in seen}
    assert verdicts == {(a, b): b != "pod2" for a, b in pairs}
    assert {o.detail for o in seen if not o.allowed} == {"timeout"}
    # Probes run in parallel: two timed-out probes cost about one timeout, not two.
    assert elapsed < 1.9, elapsed


async def test_tcp_without_listener_is_refused_not_allowed(three_pods) -> None:
    _, eps = three_pods
    async with Prober(eps, "tcp", PORT, timeout=1.0) as prober:
        # A probe to a port nobody listens on: the pods listen on PORT only.
        prober.port = PORT + 1
        seen = await prober.probe(eps[0].name, eps[1].name)
    assert not seen.allowed and seen.detail == "refused"


def test_icmp_codec_round_trip() -> None:
    request = echo_request(0x1234, 7)
    assert request[0] == 8 and len(request) > 8
    # A reply as a raw socket delivers it: a 20-byte IPv4 header, then type 0 with the same id.
    reply_icmp = b"\x00" + request[1:]
    header = bytes([0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 10, 65, 0, 2, 10, 65, 0, 1])
    assert parse_echo_reply(header + reply_icmp) == ("10.65.0.2", 0x1234)
    assert parse_echo_reply(header + request) is None  # an echo request is not a reply
    assert parse_echo_reply(b"\x45") is None
