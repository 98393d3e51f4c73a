"""Felix dataplane benchmark: cold start and single-change latency, beside the kernel's own floor.

Run (root):  .venv/bin/python benchmarks/felix_dataplane_bench.py [--policies 1000] [--members 10000]
             [--endpoints 100] [--changes 100] [--backend libnftables|nft] [--seed 1] [--rounds 1]

What it does, in one throwaway network namespace (deleted at the end, whatever happens):

1. creates ``--endpoints`` (+20 spare) veth pairs named ``cali…`` (up), as a CNI plugin would;
2. cold start: queues the messages the calculation graph would send (``--policies`` policies with 4
   rules each, ``--members`` IP-set members over members/20 sets, ``--endpoints`` local endpoints with
   10 policies each per direction), then ``InSync``; measures until the first apply (nftables batch,
   routes, sysctls) is done;
3. the floor: ``nft list table inet calico`` of that result, loaded by ``nft -f`` into a fresh namespace;
4. single changes, each timed from ``send`` until the batch is in the kernel: one policy edited, one
   IP-set member added, one endpoint added (chains, dispatch entries, route, sysctls);
5. prints a table and one JSON line; ``first_apply_cpu_s``: this thread's CPU in the first apply's
   phases (folding the IP set messages, rendering policy/profile chains, planning batches with their text).

``--rounds N`` repeats 1-3 in N fresh processes (a real cold start each: no warm caches, pyroute2
not yet imported) and reports the medians, the ratio being the median of each round's own ratio;
step 4 runs in the last round only. On a shared machine one round's ratio can be off by 10-20 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from services.felix.dataplane import stages
from services.felix.dataplane.dataplane import Dataplane, DataplaneOptions
from services.felix.dataplane.filterstate import FilterState
from services.felix.dataplane.ruleset import Batch
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import (
    ActivePolicyUpdate,
    ActiveProfileUpdate,
    InSync,
    IPAMPoolUpdate,
    IPSetDeltaUpdate,
    IPSetType,
    IPSetUpdate,
    Message,
    PolicyID,
    PortRange,
    Rule,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointUpdate,
)

SPARE = 20
PHASES = {"fold_ipsets": 0.0, "render": 0.0, "plan": 0.0}  # this thread's CPU seconds in the first apply
_TIMING = [False]


def timed_phase(phase: str, func: Any) -> Any:
    """``func``, adding this thread's CPU time in it to PHASES[phase] while _TIMING is on (outermost only)."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not _TIMING[0]:
            return func(*args, **kwargs)
        _TIMING[0] = False
        started = time.thread_time()
        try:
            return func(*args, **kwargs)
        finally:
            PHASES[phase] += time.thread_time() - started
            _TIMING[0] = True
    return wrapper


def time_first_apply() -> None:
    """Count the CPU of the first apply's phases: folding the IP set messages, rendering the pending policy
    and profile chains, planning the batches (their text included)."""
    FilterState._apply_ipset = timed_phase("fold_ipsets", FilterState._apply_ipset)  # type: ignore[method-assign]
    FilterState.render_pending = timed_phase("render", FilterState.render_pending)  # type: ignore[method-assign]
    for name in ("plan_chains_stage", "plan_sets_stage", "plan_last_stage"):
        setattr(stages, name, timed_phase("plan", getattr(stages, name)))
    Batch.text = timed_phase("plan", Batch.text)  # type: ignore[method-assign]


def sh(*cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command, raising with its stderr when it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True, input=stdin)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


def iface(i: int) -> str:
    return f"calib{i:010d}"


def make_veths(ns: str, count: int) -> None:
    lines = []
    for i in range(count):
        lines.append(f"link add {iface(i)} type veth peer name pb{i:08d}")
        lines.append(f"link set {iface(i)} up")
        lines.append(f"link set pb{i:08d} up")
    sh("ip", "-n", ns, "-batch", "-", stdin="\n".join(lines) + "\n")


def policy_rules(i: int, n_sets: int) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
    """Four realistic rules: allow from a selector to web ports, from a CIDR to a range, log+deny ICMP."""
    inbound = (
        Rule("allow", protocol=6, src_ip_set_ids=(f"sel-{i % n_sets}",),
             dst_ports=(PortRange(80, 80), PortRange(443, 443)), rule_id=f"p{i}/ingress/0"),
        Rule("allow", protocol=6, src_nets=(f"10.{100 + i % 100}.0.0/16",), dst_ports=(PortRange(8000, 8100),),
             rule_id=f"p{i}/ingress/1"),
        Rule("deny", protocol=1, icmp_type=8, rule_id=f"p{i}/ingress/2"),
    )
    outbound = (Rule("allow", protocol=17, dst_ip_set_ids=(f"sel-{(i * 7) % n_sets}",),
                     dst_ports=(PortRange(53, 53),), rule_id=f"p{i}/egress/0"),)
    return inbound, outbound


def build_messages(args: argparse.Namespace) -> tuple[list[Message], list[str]]:
    rnd = random.Random(args.seed)
    n_sets = max(1, args.members // 20)
    msgs: list[Message] = [ActiveProfileUpdate("kns.default", (Rule("allow"),), (Rule("allow"),)),
                           IPAMPoolUpdate("default-pool", "10.65.0.0/16", True)]
    addresses = [str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.80.0.0")) + i)) for i in range(args.members)]
    rnd.shuffle(addresses)
    for s in range(n_sets):
        members = frozenset(f"{a}/32" for a in addresses[s::n_sets])
        msgs.append(IPSetUpdate(f"sel-{s}", IPSetType.NET, members))
    names = [f"ns-{i % 50}/policy-{i}" for i in range(args.policies)]
    for i, name in enumerate(names):
        inbound, outbound = policy_rules(i, n_sets)
        msgs.append(ActivePolicyUpdate(PolicyID("default", name), inbound, outbound))
    for e in range(args.endpoints):
        msgs.append(endpoint_update(e, names))
    return msgs, names


def endpoint_update(e: int, names: list[str]) -> WorkloadEndpointUpdate:
    mine = tuple(names[(e * 10 + k) % len(names)] for k in range(10))
    ip = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.65.0.2")) + e)
    return WorkloadEndpointUpdate(
        WorkloadEndpointID("k8s", f"ns-{e % 50}/pod-{e}", "eth0"),
        WorkloadEndpoint(iface(e), None, (f"{ip}/32",), (), ("kns.default",), (TierInfo("default", mine, mine),)),
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def timed(dp: Dataplane, msg: Message) -> float:
    started = time.perf_counter()
    dp.send(msg)
    await dp.settled(30)
    if dp.stats.last_error:
        raise RuntimeError(f"dataplane error: {dp.stats.last_error}")
    return time.perf_counter() - started


async def run(args: argparse.Namespace, ns: str, floor_ns: str) -> dict[str, Any]:
    make_veths(ns, args.endpoints + SPARE)
    msgs, names = build_messages(args)
    settings = DataplaneSettings(refresh_interval=0, route_refresh_interval=0)
    dp = Dataplane(DataplaneOptions(hostname="bench", netns=ns, nft_backend=args.backend, settings=settings))
    task = asyncio.create_task(dp.run())
    time_first_apply()
    try:
        started = time.perf_counter()
        _TIMING[0] = True
        for msg in msgs:
            dp.send(msg)
        dp.send(InSync())
        await dp.settled(300)
        cold = time.perf_counter() - started
        _TIMING[0] = False
        phases = {name: round(seconds, 4) for name, seconds in PHASES.items()}
        if not dp.ready.is_set():
            raise RuntimeError(f"dataplane not ready: {dp.stats.last_error}")
        table = sh("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "calico").stdout
        rules = sum(1 for line in table.splitlines() if 'comment "cali:' in line)
        chains = sum(1 for line in table.splitlines() if line.strip().startswith("chain "))
        floor_times = []
        with tempfile.NamedTemporaryFile("w", suffix=".nft", delete=False) as handle:
            handle.write(table)
            path = handle.name
        try:
            for _ in range(3):
                with contextlib.suppress(RuntimeError):
                    sh("ip", "netns", "exec", floor_ns, "nft", "delete", "table", "inet", "calico")
                t0 = time.perf_counter()
                sh("ip", "netns", "exec", floor_ns, "nft", "-f", path)
                floor_times.append(time.perf_counter() - t0)
        finally:
            os.unlink(path)

        rnd = random.Random(args.seed + 1)
        n_sets = max(1, args.members // 20)
        if args.changes == 0:
            return {"cold_start_s": round(cold, 3), "floor_nft_f_s": round(min(floor_times), 3),
                    "cold_over_floor": round(cold / min(floor_times), 2), "first_apply_cpu_s": phases}
        policy_lat = []
        for k in range(args.changes):
            i = rnd.randrange(len(names))
            inbound, outbound = policy_rules(i, n_sets)
            edited = (Rule("allow", protocol=6, src_ip_set_ids=inbound[0].src_ip_set_ids,
                           dst_ports=(PortRange(80, 80), PortRange(9000 + k, 9000 + k))), *inbound[1:])
            policy_lat.append(await timed(dp, ActivePolicyUpdate(PolicyID("default", names[i]), edited, outbound)))
        member_lat = []
        for k in range(args.changes):
            member = f"10.90.{k // 250}.{k % 250 + 1}/32"
            member_lat.append(await timed(dp, IPSetDeltaUpdate(f"sel-{rnd.randrange(n_sets)}",
                                                               frozenset({member}), frozenset())))
        endpoint_lat = [await timed(dp, endpoint_update(args.endpoints + k, names)) for k in range(SPARE)]
        check = sh("ip", "netns", "exec", ns, "nft", "list", "set", "inet", "calico", "cali40-all-ipam-pools")
        assert "10.65.0.0/16" in check.stdout
        routes = sh("ip", "-n", ns, "route", "show").stdout.count("scope link")
        assert routes >= args.endpoints + SPARE, routes
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {
        "backend": args.backend, "policies": args.policies, "ipset_members": args.members,
        "local_endpoints": args.endpoints, "rules_in_kernel": rules, "chains": chains,
        "cold_start_s": round(cold, 3), "floor_nft_f_s": round(min(floor_times), 3),
        "cold_over_floor": round(cold / min(floor_times), 2), "first_apply_cpu_s": phases,
        "policy_edit_ms": {"p50": round(statistics.median(policy_lat) * 1000, 2),
                           "p99": round(pct(policy_lat, 0.99) * 1000, 2)},
        "member_add_ms": {"p50": round(statistics.median(member_lat) * 1000, 2),
                          "p99": round(pct(member_lat, 0.99) * 1000, 2)},
        "endpoint_add_ms": {"p50": round(statistics.median(endpoint_lat) * 1000, 2),
                            "p99": round(pct(endpoint_lat, 0.99) * 1000, 2)},
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def rounds(args: argparse.Namespace) -> dict[str, Any]:
    """Run ``args.rounds`` cold starts in fresh processes; the medians, with the last one's single changes."""
    base = [sys.executable, __file__, "--policies", str(args.policies), "--members", str(args.members),
            "--endpoints", str(args.endpoints), "--backend", args.backend, "--seed", str(args.seed), "--rounds", "1"]
    runs: list[dict[str, Any]] = []
    for index in range(args.rounds):
        changes = args.changes if index == args.rounds - 1 else 0
        proc = sh(*base, "--changes", str(changes))
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    result = dict(runs[-1])
    result["cold_start_s"] = round(statistics.median(r["cold_start_s"] for r in runs), 3)
    result["floor_nft_f_s"] = round(statistics.median(r["floor_nft_f_s"] for r in runs), 3)
    result["cold_over_floor"] = round(statistics.median(r["cold_over_floor"] for r in runs), 2)
    result["rounds"] = [[r["cold_start_s"], r["floor_nft_f_s"], r["cold_over_floor"]] for r in runs]
    result["first_apply_cpu_s"] = {name: round(statistics.median(r["first_apply_cpu_s"][name] for r in runs), 4)
                                   for name in PHASES}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--endpoints", type=int, default=100)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--backend", choices=("libnftables", "nft"), default="libnftables")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="cold starts, each in a fresh process (medians)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    if args.rounds > 1:
        result = rounds(args)
        if args.changes == 0:  # cold starts only: no single-change figures to print
            print(json.dumps(result))
            return 0
    else:
        tag = f"fdpbench{os.getpid()}"
        ns, floor_ns = f"{tag}-host", f"{tag}-floor"
        sh("ip", "netns", "add", ns)
        try:
            sh("ip", "netns", "add", floor_ns)
            result = asyncio.run(run(args, ns, floor_ns))
        finally:
            for name in (ns, floor_ns):
                subprocess.run(["ip", "netns", "del", name], capture_output=True)
        if args.changes == 0:
            print(json.dumps(result))
            return 0
    print(f"backend {result['backend']}: {result['policies']} policies, {result['ipset_members']} set members, "
          f"{result['local_endpoints']} endpoints -> {result['rules_in_kernel']} rules in {result['chains']} chains")
    if "rounds" in result:
        print(f"  {len(result['rounds'])} rounds (cold s, floor s, ratio): {result['rounds']}; medians below")
    print(f"  cold start (messages -> programmed)   {result['cold_start_s']:8.3f} s")
    print(f"  floor: nft -f of the final ruleset     {result['floor_nft_f_s']:8.3f} s   "
          f"(ratio {result['cold_over_floor']})")
    cpu = result["first_apply_cpu_s"]
    print(f"  first apply CPU: fold IP sets {cpu['fold_ipsets'] * 1000:.1f} ms, render {cpu['render'] * 1000:.1f} ms, "
          f"plan {cpu['plan'] * 1000:.1f} ms")
    for key, label in (("policy_edit_ms", "one policy edited"), ("member_add_ms", "one set member added"),
                       ("endpoint_add_ms", "one endpoint added")):
        print(f"  {label:<24} p50 {result[key]['p50']:7.2f} ms   p99 {result[key]['p99']:7.2f} ms")
    print(f"  max RSS {result['max_rss_mib']} MiB")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
