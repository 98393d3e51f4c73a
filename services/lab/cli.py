"""calico-lab's command line: the only module that reads argv and the environment."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console

from libcalico.runtime import configure_logging
from services.lab import namespaces
from services.lab.errors import LabError
from services.lab.layout import DATASTORES, ENCAPS, LabSpec, plan
from services.lab.prober import DEFAULT_TIMEOUT, PROTOCOLS
from services.lab.progress import Reporter
from services.lab.roster import Binaries, datastore_env, load_roster
from services.lab.state import LabDir

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class Context:
    """Options shared by every command."""

    def __init__(self, name: str, directory: Path | None, bin_dir: Path | None) -> None:
        self.name = name
        self.labdir = LabDir(directory or Path("/run/calico-lab") / name)
        self.bins = Binaries(bin_dir)

    def enter(self) -> Any:
        """Load the lab's state and move into its infra namespace (where its datastore is reached)."""
        state = self.labdir.load()
        namespaces.enter(plan(state.spec).infra_netns)
        return state


def _fail(exc: LabError) -> NoReturn:
    Console(stderr=True).print(f"[bold red]calico-lab: error:[/] {exc}", highlight=False, soft_wrap=True)
    sys.exit(1)


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except LabError as exc:
        _fail(exc)


@click.group(context_settings=CONTEXT)
@click.option("--name", default="lab", envvar="CALICO_LAB_NAME", show_default=True,
              help="lab name; its namespaces are <name>-…")
@click.option("--dir", "directory", type=click.Path(path_type=Path), envvar="CALICO_LAB_DIR",
              help="lab directory (default /run/calico-lab/<name>)")
@click.option("--bin-dir", type=click.Path(path_type=Path, file_okay=False), envvar="CALICO_LAB_BIN_DIR",
              help="where calico-felix, calico-typha and the CNI plugins are (default: next to this Python)")
@click.pass_context
def cli(ctx: click.Context, name: str, directory: Path | None, bin_dir: Path | None) -> None:
    """A whole Calico-py cluster on one machine: hosts and pods in network namespaces, the real services."""
    if os.geteuid() != 0:
        _fail(LabError("calico-lab needs root (it creates network namespaces)"))
    configure_logging("calico-lab", os.environ.get("CALICO_LAB_LOG_LEVEL", "Warning"))
    ctx.obj = Context(name, directory, bin_dir)


@cli.command(context_settings=CONTEXT)
@click.option("--nodes", type=int, default=2, show_default=True, help="hosts node0…")
@click.option("--pods-per-node", type=int, default=2, show_default=True, help="pods <host>-pod0… per host")
@click.option("--datastore", type=click.Choice(DATASTORES), default="sqlite", show_default=True)
@click.option("--typha", type=int, default=None, help="Typha replicas (default 1 when nodes > 1, else 0)")
@click.option("--encap", type=click.Choice(ENCAPS), default="vxlan", show_default=True)
@click.option("--underlay", default="10.99.0.0/24", show_default=True, help="the hosts' network")
@click.option("--pool", "pool_file", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="IPPool manifest (default docs/examples/01-ippool.yaml)")
@click.pass_obj
def up(obj: Context, nodes: int, pods_per_node: int, datastore: str, typha: int | None, encap: str,
       underlay: str, pool_file: Path | None) -> None:
    """Create the hosts, start the datastore, Typha and Felix, and create pods through the CNI plugin."""
    from services.lab.datastore import DEFAULT_POOL_FILE
    from services.lab.lab import Lab

    try:
        spec = LabSpec(obj.name, nodes, pods_per_node, datastore, typha, encap, underlay)
    except LabError as exc:
        _fail(exc)
    reporter = Reporter()
    state = _run(Lab(obj.labdir, reporter, obj.bins).up(spec, pool_file or DEFAULT_POOL_FILE))
    reporter.console.print(f"lab [bold]{spec.name}[/] is up: {len(state.pods)} pods on {nodes} hosts "
                           f"({obj.labdir.root}). Try: calico-lab matrix", highlight=False)


@cli.command(context_settings=CONTEXT)
@click.pass_obj
def down(obj: Context) -> None:
    """Remove every namespace, interface, process and file of the lab (fine to run twice)."""
    from services.lab.lab import Lab

    name = obj.name
    if obj.labdir.exists():
        try:
            name = obj.labdir.load().spec.name
        except LabError:
            pass
    _run(Lab(obj.labdir, Reporter(), obj.bins).down(name))


@cli.command(context_settings=CONTEXT)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.pass_obj
def status(obj: Context, output: str) -> None:
    """Hosts, services with their health, pods with their addresses."""
    import json

    from services.lab.status import gather, render

    try:
        obj.enter()
    except LabError as exc:
        _fail(exc)
    data = _run(gather(obj.labdir))
    if output == "json":
        click.echo(json.dumps(data, indent=2))
    else:
        render(Console(), data)


def _calicoctl(obj: Context, args: list[str]) -> None:
    state = obj.enter()
    env = dict(os.environ) | datastore_env(plan(state.spec), obj.labdir)
    program = obj.bins.find("calicoctl")
    os.execve(program, [program, *args], env)


@cli.command(context_settings=CONTEXT)
@click.option("-f", "--filename", required=True, help="file or directory of resources (or - for stdin)")
@click.pass_obj
def apply(obj: Context, filename: str) -> None:
    """Apply resources to the lab's datastore (calicoctl apply -f)."""
    try:
        _calicoctl(obj, ["apply", "-f", filename])
    except LabError as exc:
        _fail(exc)


@cli.command(context_settings=CONTEXT | {"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def calicoctl(obj: Context, args: tuple[str, ...]) -> None:
    """Run calicoctl against the lab's datastore: calico-lab calicoctl -- get ippools -o wide."""
    try:
        _calicoctl(obj, list(args))
    except LabError as exc:
        _fail(exc)


@cli.command(name="exec", context_settings=CONTEXT | {"ignore_unknown_options": True})
@click.argument("pod")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(obj: Context, pod: str, command: tuple[str, ...]) -> None:
    """Run a command inside a pod's network namespace: calico-lab exec node0-pod0 -- ip addr."""
    try:
        state = obj.labdir.load()
        rec = state.pods.get(pod)
        if rec is None:
            raise LabError(f"no pod {pod!r} (pods: {', '.join(sorted(state.pods))})")
    except LabError as exc:
        _fail(exc)
    os.execvp("ip", ["ip", "netns", "exec", rec.netns, *command])


@cli.command(context_settings=CONTEXT)
@click.argument("service")
@click.option("--host", help="only this host's instance")
@click.option("--tail", type=int, default=0, help="only the last N lines of each log")
@click.pass_obj
def logs(obj: Context, service: str, host: str | None, tail: int) -> None:
    """Print a service's log: felix, typha-0, etcd or supervisor."""
    try:
        obj.labdir.load()
        files: list[tuple[str, Path]] = []
        if service == "supervisor":
            files.append(("supervisor", obj.labdir.logs / "supervisor.log"))
        for e in load_roster(obj.labdir):
            if e.name == service and (host is None or e.host == host):
                files.append((e.key, Path(e.log)))
        if not files:
            names = sorted({e.name for e in load_roster(obj.labdir)} | {"supervisor"})
            raise LabError(f"no service {service!r}" + (f" on host {host}" if host else "")
                           + f" (services: {', '.join(names)})")
    except LabError as exc:
        _fail(exc)
    for key, path in files:
        if len(files) > 1:
            click.echo(f"==> {key} ({path}) <==")
        try:
            lines = path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            lines = ["(no output yet)"]
        for line in lines[-tail:] if tail else lines:
            click.echo(line)


@cli.command(context_settings=CONTEXT)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--proto", type=click.Choice(PROTOCOLS), default="tcp", show_default=True)
@click.option("-o", "--output", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--explain", is_flag=True, help="add the policy oracle's verdict and deciding rule")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True, help="seconds per probe")
@click.pass_obj
def matrix(obj: Context, port: int, proto: str, output: str, explain: bool, timeout: float) -> None:
    """Try every pod → pod connection with real traffic. Exit 3 when --explain finds a disagreement."""
    from services.lab.matrix import render_json, render_table, run_matrix

    try:
        obj.enter()
    except LabError as exc:
        _fail(exc)
    result = _run(run_matrix(obj.labdir, proto, port, explain=explain, timeout=timeout))
    if output == "json":
        click.echo(render_json(result))
    else:
        render_table(Console(), result, explain=explain)
    if explain and result.mismatches():
        sys.exit(3)


@cli.group(context_settings=CONTEXT)
def pod() -> None:
    """Add or delete pods after 'up'."""


@pod.command(name="add", context_settings=CONTEXT)
@click.argument("host")
@click.argument("name")
@click.pass_obj
def pod_add(obj: Context, host: str, name: str) -> None:
    """Create pod NAME on HOST through the CNI plugin."""
    from services.lab.lab import Lab

    try:
        obj.enter()
    except LabError as exc:
        _fail(exc)
    rec = _run(Lab(obj.labdir, Reporter(), obj.bins).add_pod(host, name))
    click.echo(f"pod {rec.name} on {rec.host}: {rec.ip}")


@pod.command(name="delete", context_settings=CONTEXT)
@click.argument("name")
@click.pass_obj
def pod_delete(obj: Context, name: str) -> None:
    """Delete pod NAME through the CNI plugin (its address goes back to IPAM)."""
    from services.lab.lab import Lab

    try:
        obj.enter()
    except LabError as exc:
        _fail(exc)
    rec = _run(Lab(obj.labdir, Reporter(), obj.bins).delete_pod(name))
    click.echo(f"pod {rec.name} deleted; {rec.ip} released")


@cli.command(context_settings=CONTEXT)
@click.option("--datastore", type=click.Choice(DATASTORES), default="sqlite", show_default=True)
@click.option("--keep", is_flag=True, help="leave the lab up at the end")
@click.pass_obj
def demo(obj: Context, datastore: str, keep: bool) -> None:
    """Up with 3 nodes × 2 pods, the matrix, then docs/examples/ one by one with the matrix after each."""
    from services.lab.demo import run_demo

    _run(run_demo(obj.labdir, obj.name, obj.bins, datastore=datastore, keep=keep))


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``calico-lab``."""
    try:
        cli.main(args=argv, prog_name="calico-lab", standalone_mode=True)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    return 0
