"""The staged first apply against a real kernel: what the kernel holds between the batches, and at the end.

Between two batches of a clean start nothing may be hooked (no base chain, no
dispatch entry); between two batches of a restart every rule the kernel had
must still be there unchanged. At the end the kernel holds exactly the
desired table. Also: bulk route requests on a raw rtnetlink socket, and nft
runs to its end while the event loop is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import subprocess
import time

from services.felix.dataplane import names
from services.felix.dataplane.dataplane import Dataplane, DataplaneOptions
from services.felix.dataplane.errors import NftablesError
from services.felix.dataplane.filterstate import FilterState
from services.felix.dataplane.ipsets import SetDef
from services.felix.dataplane.kernelstate import parse_table
from services.felix.dataplane.namespace import NamespaceThread
from services.felix.dataplane.netlinkplan import RouteTarget, route_request
from services.felix.dataplane.nft import NftProcess, json_items, renice, run_process
from services.felix.dataplane.rtnl import RouteSocket, watch_links
from services.felix.dataplane.ruleset import TableState, snapshot
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.dataplane.stages import apply_in_stages
from services.felix.messages import (
    ActivePolicyUpdate,
    ActiveProfileUpdate,
    EndpointsReady,
    InSync,
    IPSetType,
    IPSetUpdate,
    Message,
    PoliciesReady,
    PolicyID,
    PortRange,
    Rule,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointUpdate,
)
from tests.fixtures.netns import Netns, NetnsPool, can_ping, netns_pool  # noqa: F401  (netns_pool is a fixture)
from tests.integration.felix.test_dataplane_harness import (
    allow_profile,
    dataplane_task,
    endpoint,
    policy,
    running,
    tier,
)
from tests.unit.felix.nftlines import script_lines

POLICIES = 400


def state_for(version: int, endpoints: tuple[str, ...] = ("cali1", "cali2")) -> FilterState:
    """A desired table with many policies; ``version`` changes one policy's rules and one set's members."""
    state = FilterState(DataplaneSettings())
    for i in range(40):
        members = {f"10.80.{i}.{k}/32" for k in range(1, 6)}
        if i == 0:
            members.add(f"10.81.0.{version}/32")
        state.apply(IPSetUpdate(f"sel-{i}", IPSetType.NET, frozenset(members)))
    state.apply(ActiveProfileUpdate("kns.ns", (Rule("allow"),), (Rule("allow"),)))
    for i in range(POLICIES):
        port = 8000 + version if i == 0 else 80
        state.apply(ActivePolicyUpdate(PolicyID("default", f"ns/p{i}"), (
            Rule("allow", protocol=6, src_ip_set_ids=(f"sel-{i % 40}",), dst_ports=(PortRange(port, port),)),
            Rule("deny", protocol=1, icmp_type=8)), ()))
    for e, iface in enumerate(endpoints):
        mine = tuple(f"ns/p{(e * 10 + k) % POLICIES}" for k in range(10))
        state.apply(WorkloadEndpointUpdate(WorkloadEndpointID("k8s", f"ns/pod{e}", "eth0"), WorkloadEndpoint(
            iface, None, (f"10.65.0.{e + 2}/32",), (), ("kns.ns",), (TierInfo("default", mine, mine),))))
    return state


class Watcher:
    """Applies batches with a real ``nft`` and reads the table back after each one."""

    def __init__(self, ns: Netns) -> None:
        self.nft = NftProcess(ns.name)
        self.after: list[TableState] = []

    async def kernel(self) -> TableState | None:
        return parse_table(await self.nft.list_table(names.TABLE_FAMILY, names.TABLE_NAME))

    async def run(self, text: str) -> None:
        await self.nft.apply(text)
        state = await self.kernel()
        assert state is not None
        self.after.append(state)


def assert_holds(kernel: TableState | None, state: FilterState) -> None:
    want = snapshot(state.table)
    assert kernel is not None
    assert kernel.chains == want.chains
    assert kernel.sets == want.sets
    assert kernel.maps == want.maps


async def test_clean_start_hooks_nothing_until_the_last_batch(netns_pool: NetnsPool) -> None:  # noqa: F811
    host = netns_pool.netns("h")
    state = state_for(1)
    watcher = Watcher(host)
    report = await apply_in_stages(state, None, watcher.run)
    assert len(watcher.after) == len(report.batches) >= 2
    for between in watcher.after[:-1]:
        assert not any(base for base, _hashes in between.chains.values())  # nothing hooked: packets unaffected
        assert not any(entries for _mapdef, entries in between.maps.values())
    assert_holds(await watcher.kernel(), state)
    assert not report.whole_replace


async def test_restart_keeps_every_old_rule_until_the_last_batch_swaps_them(netns_pool: NetnsPool) -> None:  # noqa: F811
    host = netns_pool.netns("h")
    old_state = state_for(1, endpoints=("cali1", "cali2", "cali3"))
    await apply_in_stages(old_state, None, Watcher(host).run)
    host.nft_script("add chain inet calico cali-pi-default/junk\n"
                    "add set inet calico cali40s-junk { type ipv4_addr; }\n")  # left by someone else
    watcher = Watcher(host)
    old = await watcher.kernel()
    assert old is not None
    new_state = state_for(2)  # one policy and one set changed, cali3 gone
    report = await apply_in_stages(new_state, old, watcher.run)
    assert len(report.batches) >= 2 and report.sets_refilled == 1
    for between in watcher.after[:-1]:
        for name, chain in old.chains.items():
            assert between.chains.get(name) == chain, name  # old rules in force, unchanged
        assert between.maps == old.maps
    final = await watcher.kernel()
    assert_holds(final, new_state)
    assert final is not None and "cali40s-junk" not in final.sets and "cali-pi-default/junk" not in final.chains
    assert names.workload_chain("cali3", True) not in final.chains


async def test_an_object_of_another_kind_is_swapped_in_one_transaction(netns_pool: NetnsPool) -> None:  # noqa: F811
    host = netns_pool.netns("h")
    plain = names.ipset_name("sel-0", 4, False)
    host.nft_script(f"add table inet calico\nadd set inet calico {plain} {{ type ipv4_addr; flags interval; }}\n"
                    f"add chain inet calico cali-old\nadd rule inet calico cali-old ip saddr @{plain} accept\n")
    watcher = Watcher(host)
    kernel = await watcher.kernel()
    assert kernel is not None and kernel.sets[plain][0] == SetDef(plain, "ipv4_addr", True)
    state = state_for(1)
    report = await apply_in_stages(state, kernel, watcher.run)
    assert report.whole_replace
    for between in watcher.after[:-1]:
        assert between.sets[plain][0].interval  # the old set (and its user) stay until the last batch
    assert_holds(await watcher.kernel(), state)


async def test_route_requests_in_bulk(netns_pool: NetnsPool) -> None:  # noqa: F811
    host = netns_pool.netns("h")
    host.run_ip("link", "add", "cali1", "type", "veth", "peer", "name", "peer1")
    host.run_ip("link", "set", "cali1", "up")
    index = int(host.exec("cat", "/sys/class/net/cali1/ifindex").stdout)
    thread = NamespaceThread(host.name)
    sock = await thread.run(RouteSocket)
    try:
        dsts = [f"10.65.{i // 250}.{i % 250 + 1}/32" for i in range(600)]  # more than one send
        wanted = [route_request("replace", dst, RouteTarget("cali1"), index, 80) for dst in dsts]
        wanted.append(route_request("replace", "10.66.0.1/32", RouteTarget("nope"), 999_999, 80))
        results = await thread.run(sock.run, wanted)
        assert results[:-1] == [0] * len(dsts) and results[-1] == errno.ENODEV
        listed = host.run_ip("route", "show", "dev", "cali1").stdout
        assert listed.count("proto 80 scope link") == len(dsts) and "10.65.2.100 " in listed
        dumped = {r.dst: r for r in await thread.run(sock.dump_routes, socket.AF_INET) if r.oif == index}
        assert set(dumped) == set(dsts)
        assert {(r.table, r.protocol, r.type, r.gateway) for r in dumped.values()} == {(254, 80, 1, None)}
        gone = [route_request("del", dst, RouteTarget(""), index, 80) for dst in dsts[:300]]
        gone.append(route_request("del", "10.67.0.1/32", RouteTarget(""), index, 80))
        results = await thread.run(sock.run, gone)
        assert results[:-1] == [0] * 300 and results[-1] == errno.ESRCH
        assert host.run_ip("route", "show", "dev", "cali1").stdout.count("scope link") == len(dsts) - 300
    finally:
        sock.close()
        thread.close()


async def test_a_process_finishes_while_the_event_loop_is_busy() -> None:
    """nft's exit is seen through a pidfd: a busy loop (that yields now and then) does not hold it up.

    A thread waiting for the GIL behind such a loop waited for seconds (the reason for the pidfd).
    """
    job = asyncio.ensure_future(run_process(["sleep", "0.05"], subprocess.DEVNULL, subprocess.DEVNULL))
    started = time.perf_counter()
    for _ in range(10_000):
        if job.done():
            break
        burn_until = time.perf_counter() + 0.003
        while time.perf_counter() < burn_until:
            pass
        await asyncio.sleep(0)
    assert job.done() and job.result() == 0
    assert time.perf_counter() - started < 1.0


async def test_a_running_process_is_reniced() -> None:
    running: set[int] = set()
    job = asyncio.ensure_future(run_process(["sleep", "5"], subprocess.DEVNULL, subprocess.DEVNULL, nice=5,
                                            running=running))
    try:
        deadline = time.monotonic() + 5
        while not running and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        (pid,) = running
        assert os.getpriority(os.PRIO_PROCESS, pid) == 5
        renice(pid, 0)  # root may raise it back
        assert os.getpriority(os.PRIO_PROCESS, pid) == 0
    finally:
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await job
    assert not running  # forgotten once it is gone


async def test_link_events_name_the_interface(netns_pool: NetnsPool) -> None:  # noqa: F811
    host = netns_pool.netns("h")
    thread = NamespaceThread(host.name)
    seen: list[str] = []
    lost: list[bool] = []
    watcher = asyncio.create_task(watch_links(thread, seen.append, lambda: lost.append(True)))
    try:
        for mtu in range(60_000, 60_200):  # until the watcher listens: poke lo (a link event) and look
            host.run_ip("link", "set", "lo", "mtu", str(mtu))
            await asyncio.sleep(0.01)
            if "lo" in seen or watcher.done():
                break
        assert "lo" in seen, watcher
        host.run_ip("link", "add", "cali7", "type", "veth", "peer", "name", "peer7")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not {"cali7", "peer7"} <= set(seen):
            await asyncio.sleep(0.01)
        assert {"cali7", "peer7"} <= set(seen) and not lost
        host.run_ip("link", "del", "cali7")
        count = seen.count("cali7")
        while time.monotonic() < deadline + 5 and seen.count("cali7") == count:
            await asyncio.sleep(0.01)
        assert seen.count("cali7") > count  # the deletion is an event too
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        thread.close()


async def test_the_first_apply_lets_no_traffic_through_before_the_last_batch(netns_pool: NetnsPool) -> None:  # noqa: F811
    """Routes and the interface sysctls that let traffic through wait for the hooking batch; the
    restricting ones (``accept_ra=0``, strict ``rp_filter``) may go earlier."""
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    pod = netns_pool.pod(host, "a", "10.65.0.2")
    iface = pod.iface
    dp = Dataplane(DataplaneOptions(hostname="host-a", netns=host.name, settings=DataplaneSettings()))
    seen: dict[str, str] = {}
    send_batch = dp._send_batch

    async def last_batch(text: str, bulk: bool = False) -> None:
        if " hook " in text and not seen:  # the hooking batch, before nft has it
            seen["route"] = host.run_ip("route", "show", "10.65.0.2/32").stdout.strip()
            for key in (f"net.ipv4.conf.{iface}.proxy_arp", f"net.ipv4.conf.{iface}.forwarding",
                        f"net.ipv4.conf.{iface}.route_localnet", "net.ipv4.ip_forward"):
                seen[key] = host.sysctl(key)
        await send_batch(text, bulk)

    dp._send_batch = last_batch  # type: ignore[method-assign]
    async with dataplane_task(dp):
        for msg in (ActiveProfileUpdate("kns.default", (Rule("allow"),), (Rule("allow"),)),
                    WorkloadEndpointUpdate(WorkloadEndpointID("k8s", "default/a", "eth0"), WorkloadEndpoint(
                        iface, pod.mac, ("10.65.0.2/32",), (), ("kns.default",), ())), InSync()):
            dp.send(msg)
        await dp.settled()
    assert dp.ready.is_set() and seen
    assert seen["route"] == "" and seen[f"net.ipv4.conf.{iface}.proxy_arp"] == "0"
    assert seen[f"net.ipv4.conf.{iface}.route_localnet"] == "0"
    assert host.sysctl(f"net.ipv4.conf.{iface}.proxy_arp") == "1"  # all of it once the rules were in
    assert host.sysctl(f"net.ipv6.conf.{iface}.accept_ra") == "0"
    assert host.sysctl(f"net.ipv4.conf.{iface}.rp_filter") == "1"
    assert "10.65.0.2" in host.run_ip("route", "show", "10.65.0.2/32").stdout


class Batches:
    """Wraps a dataplane's nft batches: records each (was the dataplane in sync, bulk or the last one) and
    runs ``after`` once a bulk batch (not the hooking one) committed; ``fail_first`` rejects the first."""

    def __init__(self, dp: Dataplane, ns: Netns, fail_first: bool = False) -> None:
        self.dp, self.ns, self.fail_first = dp, ns, fail_first
        self.sent: list[tuple[bool, bool, str]] = []  # (in sync when sent, bulk, text)
        self.after: list[TableState | None] = []  # the kernel's table after each bulk batch committed
        self._send = dp._send_batch
        dp._send_batch = self.send  # type: ignore[method-assign]

    async def send(self, text: str, bulk: bool = False) -> None:
        self.sent.append((self.dp.in_sync, bulk, text))
        if self.fail_first and len(self.sent) == 1:
            self.dp.stats.nft_failures += 1
            raise NftablesError("rejected by the test", batch_lines=text.count("\n"))
        await self._send(text, bulk)
        if bulk:
            self.after.append(parse_table(await NftProcess(self.ns.name).list_table("inet", "calico")))


def listed(ns: Netns) -> TableState | None:
    """The kernel's ``inet calico`` table in ``ns`` (None: there is none)."""
    out = ns.nft("-j", "-a", "list", "table", "inet", "calico", check=False)
    if out.returncode != 0:
        assert "No such file or directory" in out.stderr, out.stderr
        return None
    return parse_table({"nftables": json_items(out.stdout)})


async def started(dp: Dataplane, messages: list[Message]) -> None:
    """Send the first part of the snapshot and wait until the dataplane started on it (as the pipeline does)."""
    for msg in messages:
        dp.send(msg)
    async with asyncio.timeout(5):
        await dp.early_started.wait()


async def test_the_endpoint_chains_go_before_in_sync_and_nothing_is_hooked_until_the_last_batch(
        netns_pool: NetnsPool) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    a, b = netns_pool.pod(host, "a", "10.65.0.2"), netns_pool.pod(host, "b", "10.65.0.3")
    only_a = policy("default/only-a", inbound=[Rule("allow", src_nets=(f"{a.ip}/32",))])
    dp = Dataplane(DataplaneOptions(hostname="host-a", netns=host.name, settings=DataplaneSettings()))
    batches = Batches(dp, host)
    async with dataplane_task(dp):
        dp.send(endpoint(a))
        await dp.settled()
        assert batches.sent == [] and listed(host) is None and not dp.early_started.is_set()  # untouched so far
        await started(dp, [endpoint(b, tiers=[tier(ingress=["default/only-a"])]), EndpointsReady()])
        assert len(batches.sent) == 1 and batches.sent[0][:2] == (False, True)  # in nft's hands, before InSync
        early = batches.sent[0][2]
        assert f"add rule inet calico {names.workload_chain(b.iface, True)} " in "\n".join(script_lines(early))
        assert f"add chain inet calico {names.policy_chain('default', 'default/only-a', True)}" in early
        await dp.settled()
        for msg in (allow_profile(), only_a, InSync()):
            dp.send(msg)
        await dp.settled()
        assert dp.ready.is_set()
    assert [in_sync for in_sync, _bulk, _text in batches.sent[1:]] == [True] * (len(batches.sent) - 1)
    assert batches.sent[-1][1] is False and all(bulk for _s, bulk, _t in batches.sent[:-1])
    assert len(batches.after) == len(batches.sent) - 1 >= 2
    for between in batches.after:
        assert between is not None
        assert not any(base for base, _hashes in between.chains.values())  # nothing hooked: packets unaffected
        assert not any(entries for _mapdef, entries in between.maps.values())
    assert_holds(listed(host), dp.filter)
    assert await can_ping(a, b.ip)


async def test_a_restart_with_an_early_batch_keeps_the_old_rules_until_the_last_batch(
        netns_pool: NetnsPool) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    a, b, c = (netns_pool.pod(host, label, f"10.65.0.{n}") for n, label in ((2, "a"), (3, "b"), (4, "c")))
    d = netns_pool.pod(host, "d", "10.65.0.5")  # new after the restart
    async with running(host, [allow_profile(), endpoint(a), endpoint(b), endpoint(c), InSync()]):
        assert await can_ping(c, b.ip) and not await can_ping(d, b.ip)
    old = listed(host)
    assert old is not None and await can_ping(c, b.ip)  # the old rules outlive the old process
    only_a = policy("default/only-a", inbound=[Rule("allow", src_nets=(f"{a.ip}/32",))])
    dp = Dataplane(DataplaneOptions(hostname="host-a", netns=host.name, settings=DataplaneSettings()))
    batches = Batches(dp, host)
    probes: list[tuple[bool, bool, bool]] = []  # after each early batch: a → b, c → b, d → b
    send = batches.send

    async def probed(text: str, bulk: bool = False) -> None:
        await send(text, bulk)
        if bulk:
            probes.append((await can_ping(a, b.ip), await can_ping(c, b.ip), await can_ping(d, b.ip, 0.3)))

    dp._send_batch = probed  # type: ignore[method-assign]
    async with dataplane_task(dp):
        await started(dp, [endpoint(a), endpoint(b, tiers=[tier(ingress=["default/only-a"])]), endpoint(c),
                           endpoint(d), EndpointsReady()])
        assert len(batches.sent) == 1 and not batches.sent[0][0]
        assert f"add rule inet calico {names.workload_chain(d.iface, True)} " in "\n".join(
            script_lines(batches.sent[0][2]))
        for msg in (allow_profile(), only_a, InSync()):
            dp.send(msg)
        await dp.settled()
        assert dp.ready.is_set()
        assert await can_ping(a, b.ip) and not await can_ping(c, b.ip, 0.5)  # the new rules, all at once
        assert await can_ping(d, a.ip)
    assert len(probes) == len(batches.after) == len(batches.sent) - 1 >= 1
    assert probes == [(True, True, False)] * len(probes)  # old rules in force; d unknown: fails closed
    for between in batches.after:
        assert between is not None
        for name, chain in old.chains.items():
            assert between.chains.get(name) == chain, name
        assert between.maps == old.maps
    assert_holds(listed(host), dp.filter)


async def test_a_failed_early_batch_ends_in_a_whole_replace_on_retry(netns_pool: NetnsPool) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    a, b = netns_pool.pod(host, "a", "10.65.0.2"), netns_pool.pod(host, "b", "10.65.0.3")
    dp = Dataplane(DataplaneOptions(hostname="host-a", netns=host.name, settings=DataplaneSettings()))
    batches = Batches(dp, host, fail_first=True)
    async with dataplane_task(dp):
        await started(dp, [endpoint(a), endpoint(b), EndpointsReady()])
        assert len(batches.sent) == 1 and not batches.sent[0][0]
        for msg in (allow_profile(), InSync()):
            dp.send(msg)
        await dp.settled()
        assert not dp.ready.is_set() and dp.stats.nft_failures == 1 and "rejected by the test" in dp.stats.last_error
        async with asyncio.timeout(10):  # the retry (after the backoff) lists the kernel and replaces it all
            await dp.ready.wait()
    assert dp.stats.replaces == 1
    retried = [text for in_sync, _bulk, text in batches.sent[1:]]
    assert all(in_sync for in_sync, _bulk, _text in batches.sent[1:])
    assert any(f"add rule inet calico {names.workload_chain(b.iface, True)} " in "\n".join(script_lines(text))
               for text in retried)
    assert_holds(listed(host), dp.filter)
    assert await can_ping(a, b.ip)


async def test_without_endpoints_ready_nothing_goes_before_in_sync(netns_pool: NetnsPool) -> None:  # noqa: F811
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    a, b = netns_pool.pod(host, "a", "10.65.0.2"), netns_pool.pod(host, "b", "10.65.0.3")
    dp = Dataplane(DataplaneOptions(hostname="host-a", netns=host.name, settings=DataplaneSettings()))
    batches = Batches(dp, host)
    async with dataplane_task(dp):
        for msg in (endpoint(a), endpoint(b), allow_profile()):
            dp.send(msg)
        await dp.settled()
        assert batches.sent == [] and listed(host) is None
        dp.send(InSync())
        await dp.settled()
        assert dp.ready.is_set() and not dp.early_started.is_set()
        assert all(in_sync for in_sync, _bulk, _text in batches.sent)
        first = batches.sent[0][2]  # today's chains 1: the endpoint chains, the profile declared
        assert f"add rule inet calico {names.workload_chain(b.iface, True)} " in "\n".join(script_lines(first))
        count = len(batches.sent)
        dp.send(EndpointsReady())  # once ready, the marker only answers the pipeline
        await dp.settled()
        assert dp.early_started.is_set() and len(batches.sent) == count
    assert_holds(listed(host), dp.filter)
    assert await can_ping(a, b.ip)


async def test_the_policy_chains_go_before_in_sync_too_and_a_set_of_another_kind_is_swapped_last(
        netns_pool: NetnsPool) -> None:  # noqa: F811
    """PoliciesReady after the early batch: the policy chains go to nft before InSync, with the sets their rules
    name declared empty and plain; an IP set whose members turn out to be wider nets is another (interval)
    set, so the chain naming it renders again and the last batch swaps it. Nothing is hooked before."""
    underlay = netns_pool.underlay()
    host = netns_pool.host("h", "10.0.0.1", underlay)
    a, b, c, d = (netns_pool.pod(host, label, f"10.65.0.{n}") for n, label in ((2, "a"), (3, "b"), (4, "c"), (6, "d")))
    from_a = policy("default/from-a", inbound=[Rule("allow", src_ip_set_ids=("from-a",))])
    from_wide = policy("default/from-wide", inbound=[Rule("allow", src_ip_set_ids=("wide",))])
    plain, interval = names.ipset_name("wide", 4, False), names.ipset_name("wide", 4, False, True)
    wide_chain = names.policy_chain("default", "default/from-wide", True)
    dp = Dataplane(DataplaneOptions(hostname="host-a", netns=host.name, settings=DataplaneSettings()))
    batches = Batches(dp, host)
    async with dataplane_task(dp):
        await started(dp, [endpoint(a), endpoint(c), endpoint(d),
                           endpoint(b, tiers=[tier(ingress=["default/from-a", "default/from-wide"])]), EndpointsReady()])
        for msg in (allow_profile(), from_a, from_wide, PoliciesReady()):
            dp.send(msg)
        async with asyncio.timeout(5):
            await dp.policies_started.wait()
        assert len(batches.sent) == 2 and batches.sent[1][:2] == (False, True)  # in nft's hands, before InSync
        early = script_lines(batches.sent[1][2])
        assert any(line.startswith(f"add rule inet calico {wide_chain} ") and f"@{plain} " in line for line in early)
        assert any(line.startswith(f"add set inet calico {plain} ") for line in early)  # declared, empty
        await dp.settled()
        for msg in (IPSetUpdate("from-a", IPSetType.NET, frozenset({f"{a.ip}/32"})),
                    IPSetUpdate("wide", IPSetType.NET, frozenset({"10.65.0.4/31"})), InSync()):
            dp.send(msg)
        await dp.settled()
        assert dp.ready.is_set()
    last = script_lines(batches.sent[-1][2])
    assert any(line.startswith(f"add rule inet calico {wide_chain} ") and f"@{interval} " in line for line in last)
    assert f"delete set inet calico {plain}" in last
    assert batches.sent[-1][1] is False and all(bulk for _s, bulk, _t in batches.sent[:-1])
    for between in batches.after:
        assert between is not None
        assert not any(base for base, _hashes in between.chains.values())  # nothing hooked: packets unaffected
    assert_holds(listed(host), dp.filter)
    assert await can_ping(a, b.ip) and await can_ping(c, b.ip)  # by the plain set, by the interval one
    assert not await can_ping(d, b.ip)
