"""Bringing a lab up and down.

``up``: lab directory → check programs → namespaces and the underlay bridge → supervisor
(and etcd) → seed the datastore (cluster info, namespace profile, IP pool, nodes) → Typha
and Felix, each until healthy → pods through the CNI plugin → wait until pods reach each
other. Any failure names the host and step, and everything made so far is removed.

``down``: stop the supervisor (which stops the services), kill whatever still runs in the
lab's namespaces, delete the namespaces (their interfaces and nftables go with them) and
the lab directory. Safe to run again, and without a state file.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from libcalico.resources.ippool import IPPool
from services.lab import namespaces, pods
from services.lab.command import base_env
from services.lab.datastore import DEFAULT_POOL_FILE, add_node, load_pool, open_client, seed
from services.lab.errors import LabError
from services.lab.health import wait_healthy
from services.lab.layout import BRIDGE, HostPlan, LabSpec, Layout, PodPlan, plan
from services.lab.namespaces import NetnsSwitch
from services.lab.prober import Endpoint, Prober
from services.lab.processes import ProcessRef, terminate
from services.lab.progress import Reporter
from services.lab.roster import (
    Binaries,
    ServiceEntry,
    etcd_entry,
    load_roster,
    node_entries,
    save_roster,
)
from services.lab.state import DEFAULT_ROOT, LabDir, LabState, PodRecord, read_json
from services.lab.supervisor import LOG_MARK

T = TypeVar("T")
SERVICE_TIMEOUT = 90.0
DATAPLANE_TIMEOUT = 90.0
CNI_PARALLEL = 4


def default_dir(name: str) -> Path:
    """Where a lab keeps its state unless ``--dir`` says otherwise."""
    return DEFAULT_ROOT / name


async def run_all(jobs: list[Callable[[], Awaitable[T]]], limit: int = 64) -> list[T]:
    """Run jobs concurrently (at most ``limit`` at once); the first failure cancels the rest and is raised."""
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(j)) for j in jobs]
    except BaseExceptionGroup as eg:
        first = eg.exceptions[0]
        for exc in eg.exceptions:
            if isinstance(exc, LabError):
                first = exc
                break
        raise first from None
    return [t.result() for t in tasks]


# ------------------------------------------------------------------ supervisor

def supervisor_ref(labdir: LabDir) -> ProcessRef | None:
    """The running supervisor of a lab, or None."""
    try:
        data = read_json(labdir.supervisor_pid_file)
    except (FileNotFoundError, LabError):
        return None
    ref = ProcessRef(int(data.get("pid", 0)), int(data.get("start", 0)))
    return ref if ref.pid and ref.alive() else None


async def start_supervisor(labdir: LabDir) -> ProcessRef:
    """Start the supervisor in its own session; wait until it has written its pid."""
    labdir.logs.mkdir(parents=True, exist_ok=True)
    with open(labdir.logs / "supervisor.log", "ab") as out:
        env = base_env() | {"PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "services.lab.supervisor", str(labdir.root)],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=str(labdir.root),
                                env=env, start_new_session=True)
    deadline = time.monotonic() + 20.0
    while time.monotonic() < deadline:
        ref = supervisor_ref(labdir)
        if ref is not None and ref.pid == proc.pid:
            return ref
        if proc.poll() is not None:
            raise LabError(f"the supervisor exited with code {proc.returncode} "
                           f"(see {labdir.logs / 'supervisor.log'})", step="start supervisor")
        await asyncio.sleep(0.05)
    raise LabError("the supervisor did not start within 20s", step="start supervisor")


def reload_supervisor(labdir: LabDir) -> None:
    """Tell the supervisor to re-read services.json."""
    ref = supervisor_ref(labdir)
    if ref is None or not ref.signal(signal.SIGHUP):
        raise LabError("the lab's supervisor is not running (run 'calico-lab down' and 'up' again)",
                       step="supervisor")


def service_problem(labdir: LabDir, entry: ServiceEntry) -> str:
    """What is wrong with a supervised service ("" when it runs): exit code and last log line."""
    info = labdir.pids().get(entry.key)
    if not info or (info.get("state") not in ("backoff", "exited") and not info.get("restarts")):
        return ""
    last = ""
    try:
        lines = [ln for ln in Path(entry.log).read_text(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith(LOG_MARK)]
        last = lines[-1][-300:] if lines else ""
    except OSError:
        pass
    return f"exited with code {info.get('last_exit')} (log {entry.log}; last line: {last})"


# ------------------------------------------------------------------ up

@dataclass
class Lab:
    """One lab: its directory, its name and where its programs are."""

    labdir: LabDir
    reporter: Reporter
    bins: Binaries = field(default_factory=Binaries)

    async def up(self, spec: LabSpec, pool_file: Path = DEFAULT_POOL_FILE) -> LabState:
        """Build the whole lab; on failure remove everything made so far and raise LabError."""
        layout = plan(spec)
        pool = load_pool(pool_file, spec.encap)
        leftovers = namespaces.lab_namespaces(layout.prefix)
        if leftovers:
            raise LabError(f"network namespaces of a lab named {spec.name!r} already exist "
                           f"({', '.join(leftovers[:5])}{'…' if len(leftovers) > 5 else ''}): "
                           f"run 'calico-lab down --name {spec.name}' first", step="check namespaces")
        self._check_programs(layout)
        self.labdir.create()
        state = LabState(spec)
        self.labdir.save(state)
        try:
            await self._build(layout, pool, state)
        except BaseException as exc:
            self.reporter.close()
            self.reporter.note(f"up failed: {exc}; removing what was made")
            await Lab(self.labdir, self.reporter, self.bins).down(spec.name, quiet=True)
            raise
        state.phase = "up"
        self.labdir.save(state)
        self.reporter.close()
        return state

    def _check_programs(self, layout: Layout) -> None:
        needed = ["calico-felix", "calico", "calico-ipam"] + (["calico-typha"] if layout.typhas else [])
        for name in needed:
            try:
                self.bins.find(name)
            except LabError as exc:
                raise exc.at(step="check programs") from None
        if layout.spec.datastore == "etcd" and not os.access("/usr/bin/etcd", os.X_OK):
            raise LabError("/usr/bin/etcd is not installed (Debian package etcd-server)", step="check programs")

    async def _build(self, layout: Layout, pool: IPPool, state: LabState) -> None:
        rep = self.reporter
        spec = layout.spec
        rep.begin("network", 1 + len(layout.hosts))
        await namespaces.create(layout.infra_netns)
        namespaces.enter(layout.infra_netns)  # the datastore and the services are reached from here
        await namespaces.make_bridge(layout.infra_netns, BRIDGE, f"{layout.gateway}/{layout.hosts[0].prefixlen}")
        rep.step("network", "lab", f"namespace {layout.infra_netns} with bridge {BRIDGE} {layout.gateway}")

        async def make_host(h: HostPlan) -> None:
            try:
                await namespaces.create(h.netns)
                await namespaces.attach_host(layout.infra_netns, BRIDGE, h.netns, h.uplink, h.cidr, layout.gateway)
                await namespaces.sysctl(h.netns, "net.ipv4.ip_forward", "1")
            except LabError as exc:
                raise exc.at(host=h.name, step="create host namespace") from None
            self.labdir.host_dir(h.name).mkdir(parents=True, exist_ok=True)
            rep.step("network", h.name, f"namespace {h.netns}, eth0 {h.cidr}")

        await run_all([functools.partial(make_host, h) for h in layout.hosts])
        rep.end("network")

        rep.begin("datastore", 3 + len(layout.hosts))
        await start_supervisor(self.labdir)
        rep.step("datastore", "lab", "supervisor started")
        switch = NetnsSwitch()
        try:
            if spec.datastore == "etcd":
                entry = etcd_entry(layout, self.labdir)
                save_roster(self.labdir, [entry])
                reload_supervisor(self.labdir)
                took = await self._healthy(switch, entry)
                rep.step("datastore", "lab", f"etcd healthy at {layout.etcd_url} ({took:.1f}s)")
            else:
                rep.step("datastore", "lab", f"sqlite {self.labdir.sqlite_file}")
            async with open_client(layout, self.labdir) as client:
                await seed(client, layout, pool)
                rep.step("datastore", "lab", "cluster information, profile kns.default, IP pool")
                for h in layout.hosts:
                    node = await add_node(client, layout, h)
                    tunnel = getattr(node.spec, "ipv4VXLANTunnelAddr", None)
                    rep.step("datastore", h.name, f"Node {h.name}" + (f", VXLAN tunnel {tunnel}" if tunnel else ""))
            rep.end("datastore")

            entries = load_roster(self.labdir) + node_entries(layout, self.labdir, self.bins)
            save_roster(self.labdir, entries)
            reload_supervisor(self.labdir)
            waiting = [e for e in entries if e.health_url and e.name != "etcd"]
            rep.begin("services", len(waiting))

            async def healthy(e: ServiceEntry) -> None:
                took = await self._healthy(switch, e)
                rep.step("services", e.host, f"{e.name} ready ({took:.1f}s)")

            # Typha first: Felix waits for it anyway, and a Typha failure is clearer on its own.
            await run_all([functools.partial(healthy, e) for e in waiting if e.name.startswith("typha")])
            await run_all([functools.partial(healthy, e) for e in waiting if not e.name.startswith("typha")])
            rep.end("services")

            rep.begin("pods", len(layout.pods))

            async def make_pod(p: PodPlan) -> PodRecord:
                record = await pods.add(layout, self.labdir, self.bins, p)
                state.pods[p.name] = record
                self.labdir.save(state)
                rep.step("pods", p.host, f"{p.name} {record.ip}")
                return record

            await run_all([functools.partial(make_pod, p) for p in layout.pods], CNI_PARALLEL)
            rep.end("pods")
            await self._wait_dataplane(layout, state)
        finally:
            switch.close()

    async def _healthy(self, switch: NetnsSwitch, entry: ServiceEntry) -> float:
        try:
            return await wait_healthy(switch, entry.netns, entry.health_url, entry.name, SERVICE_TIMEOUT,
                                      alive=lambda: service_problem(self.labdir, entry))
        except LabError as exc:
            raise exc.at(host=entry.host, step=f"start {entry.name}") from None

    async def _wait_dataplane(self, layout: Layout, state: LabState) -> None:
        """Wait until each pod pings a pod on its own host and one on the next host."""
        records = sorted(state.pods.values(), key=lambda r: r.name)
        if len(records) < 2:
            return
        by_host: dict[str, list[PodRecord]] = {}
        for r in records:
            by_host.setdefault(r.host, []).append(r)
        hosts = [h.name for h in layout.hosts if h.name in by_host]
        pairs: set[tuple[str, str]] = set()
        for i, h in enumerate(hosts):
            mine = by_host[h]
            other = by_host[hosts[(i + 1) % len(hosts)]]
            for k, r in enumerate(mine):
                if len(mine) > 1:
                    pairs.add((r.name, mine[(k + 1) % len(mine)].name))
                if other is not mine:
                    pairs.add((r.name, other[k % len(other)].name))
        self.reporter.begin("dataplane", 1)
        eps = [Endpoint(r.name, r.netns, r.ip) for r in records]
        left = sorted(pairs)
        started = time.monotonic()
        deadline = started + DATAPLANE_TIMEOUT
        async with Prober(eps, "icmp", None, timeout=1.0) as prober:
            while left:
                seen = await prober.probe_all(left)
                left = [(o.src, o.dst) for o in seen if not o.allowed]
                if left and time.monotonic() >= deadline:
                    src, dst = left[0]
                    raise LabError(f"{len(left)} pod pairs still cannot reach each other after "
                                   f"{DATAPLANE_TIMEOUT:.0f}s, e.g. {src} → {dst} "
                                   f"(see 'calico-lab logs felix --host {self._host_of(state, src)}')",
                                   host=self._host_of(state, src), step="dataplane")
                if left:
                    await asyncio.sleep(0.2)
        self.reporter.step("dataplane", "lab", f"{len(pairs)} pod pairs on and across hosts ping each other "
                                               f"({time.monotonic() - started:.1f}s)")
        self.reporter.end("dataplane")

    @staticmethod
    def _host_of(state: LabState, pod: str) -> str:
        rec = state.pods.get(pod)
        return rec.host if rec else "?"

    # ------------------------------------------------------------------ pods after up

    async def add_pod(self, host: str, name: str) -> PodRecord:
        """Create one more pod on a host through the CNI plugin."""
        with self.labdir.locked():
            state = self.labdir.load()
            layout = plan(state.spec)
            if name in state.pods:
                raise LabError(f"pod {name} already exists", step="add pod")
            p = layout.pod_plan(host, name)
            record = await pods.add(layout, self.labdir, self.bins, p)
            state.pods[name] = record
            self.labdir.save(state)
            return record

    async def delete_pod(self, name: str) -> PodRecord:
        """Delete a pod through the CNI plugin (DEL), then its namespace."""
        with self.labdir.locked():
            state = self.labdir.load()
            layout = plan(state.spec)
            record = state.pods.get(name)
            if record is None:
                raise LabError(f"no pod {name!r} in this lab (pods: {', '.join(sorted(state.pods))})",
                               step="delete pod")
            p = PodPlan(record.name, record.host, record.netns, record.container_id, record.namespace)
            await pods.delete(layout, self.labdir, self.bins, p)
            del state.pods[name]
            self.labdir.save(state)
            return record

    # ------------------------------------------------------------------ down

    async def down(self, name: str, quiet: bool = False) -> list[str]:
        """Remove every process, namespace and file of the lab; return what was removed."""
        removed: list[str] = []
        ref = supervisor_ref(self.labdir)
        if ref is not None:
            left = await terminate([ref], timeout=20.0)
            removed.append(f"supervisor (pid {ref.pid})" + (" — would not die" if left else ""))
        prefix = f"{name}-"
        names = namespaces.lab_namespaces(prefix)
        me = os.getpid()
        stray: list[ProcessRef] = []
        for ns in names:
            for pid in await namespaces.pids(ns):
                r = ProcessRef.of(pid)
                if r is not None and pid != me:
                    stray.append(r)
        if stray:
            stubborn = await terminate(stray, timeout=10.0)
            removed.append(f"{len(stray)} process(es) in the lab's namespaces")
            if stubborn:
                raise LabError(f"processes {', '.join(str(r.pid) for r in stubborn)} would not die", step="down")
        # Pods first, then hosts, then the infra namespace holding the bridge.
        order = sorted(names, key=lambda n: (n.count("-pod") == 0, n.endswith("-net"), n))
        for ns in order:
            await namespaces.delete(ns)
        if names:
            removed.append(f"{len(names)} network namespace(s)")
        still = namespaces.lab_namespaces(prefix)
        if still:
            raise LabError(f"could not delete namespaces {', '.join(still)}", step="down")
        root = self.labdir.root
        if self.labdir.exists():
            shutil.rmtree(root)
            removed.append(f"lab directory {root}")
        elif root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        if root.parent == DEFAULT_ROOT and DEFAULT_ROOT.is_dir() and not any(DEFAULT_ROOT.iterdir()):
            DEFAULT_ROOT.rmdir()
        if not quiet:
            for line in removed or ["nothing to remove"]:
                self.reporter.note(f"removed {line}" if removed else line)
        return removed
