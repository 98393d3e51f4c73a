"""``calico-lab status``: hosts, services with their health, pods with their addresses."""

from __future__ import annotations

import asyncio
from typing import Any

from rich.console import Console
from rich.table import Table

from libcalico.errors import CalicoError
from libcalico.resources.endpoint import WorkloadEndpoint
from services.lab import namespaces
from services.lab.datastore import open_client
from services.lab.health import http_status
from services.lab.lab import supervisor_ref
from services.lab.layout import plan
from services.lab.matrix import pod_order
from services.lab.namespaces import NetnsSwitch
from services.lab.processes import ProcessRef
from services.lab.roster import load_roster
from services.lab.state import LabDir


async def gather(labdir: LabDir) -> dict[str, Any]:
    """Everything ``status`` shows, as JSON-ready data."""
    state = labdir.load()
    layout = plan(state.spec)
    pids = labdir.pids()
    sup = supervisor_ref(labdir)
    out: dict[str, Any] = {"name": state.spec.name, "dir": str(labdir.root), "phase": state.phase,
                           "spec": state.spec.to_dict(), "supervisor": {"pid": sup.pid if sup else None,
                                                                       "running": sup is not None}}
    out["hosts"] = [{"name": h.name, "netns": h.netns, "address": h.address, "exists": namespaces.exists(h.netns)}
                    for h in layout.hosts]
    switch = NetnsSwitch()
    try:
        entries = load_roster(labdir)

        async def one(e: Any) -> dict[str, Any]:
            info = pids.get(e.key, {})
            ref = ProcessRef(int(info.get("pid") or 0), int(info.get("start") or 0))
            running = bool(ref.pid) and ref.alive()
            code = await http_status(switch, e.netns, e.health_url) if e.health_url and running else None
            health = "ready" if code == 200 else (f"not ready ({code})" if code else
                                                  ("no answer" if running else "down"))
            return {"host": e.host, "service": e.name, "pid": ref.pid if running else None, "running": running,
                    "restarts": int(info.get("restarts") or 0), "health": health, "log": e.log}

        out["services"] = list(await asyncio.gather(*(one(e) for e in entries)))
    finally:
        switch.close()
    weps: dict[str, WorkloadEndpoint] = {}
    try:
        async with open_client(layout, labdir) as client:
            items, _ = await client.list(WorkloadEndpoint, "default")
            weps = {w.spec.pod: w for w in items if isinstance(w, WorkloadEndpoint) and w.spec.pod}
        out["datastore"] = "reachable"
    except (CalicoError, OSError) as exc:
        out["datastore"] = f"unreachable: {exc}"
    pods = []
    for rec in sorted(state.pods.values(), key=lambda r: pod_order(r.name)):
        wep = weps.get(rec.name)
        pods.append({"name": rec.name, "host": rec.host, "ip": rec.ip, "netns": rec.netns,
                     "interface": rec.interface, "endpoint": wep.metadata.name if wep else None,
                     "netns_exists": namespaces.exists(rec.netns)})
    out["pods"] = pods
    return out


def render(console: Console, data: dict[str, Any]) -> None:
    """Three tables: hosts, services, pods."""
    spec = data["spec"]
    sup = data["supervisor"]
    console.print(f"[bold]lab {data['name']}[/] ({data['phase']}) in {data['dir']}: {spec['nodes']} nodes × "
                  f"{spec['pods_per_node']} pods, datastore {spec['datastore']} ({data['datastore']}), "
                  f"encap {spec['encap']}, supervisor "
                  + (f"pid {sup['pid']}" if sup["running"] else "[red]not running[/]"))
    hosts = Table("host", "namespace", "address", "ok", title="hosts", title_justify="left")
    for h in data["hosts"]:
        hosts.add_row(h["name"], h["netns"], h["address"], "[green]yes[/]" if h["exists"] else "[red]missing[/]")
    console.print(hosts)
    services = Table("host", "service", "pid", "restarts", "health", title="services", title_justify="left")
    for s in data["services"]:
        style = "green" if s["health"] == "ready" else "red"
        services.add_row(s["host"], s["service"], str(s["pid"] or "-"), str(s["restarts"]),
                         f"[{style}]{s['health']}[/]")
    console.print(services)
    pods = Table("pod", "host", "address", "endpoint", title="pods", title_justify="left")
    for p in data["pods"]:
        pods.add_row(p["name"], p["host"], p["ip"], p["endpoint"] or "[red](no WorkloadEndpoint)[/]")
    console.print(pods)
