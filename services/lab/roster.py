"""What the supervisor runs: one entry per service process, with its namespace, command, env and log.

The lab starts the real services the way an operator would, configured by Calico's own
environment variables (``FELIX_*``, ``TYPHA_*``, ``DATASTORE_TYPE``/``CALICO_DB``/``ETCD_ENDPOINTS``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.lab.command import base_env
from services.lab.errors import LabError
from services.lab.layout import (
    ETCD_CLIENT_PORT,
    ETCD_METRICS_PORT,
    ETCD_PEER_PORT,
    FELIX_HEALTH_PORT,
    HostPlan,
    Layout,
    TyphaPlan,
)
from services.lab.state import LabDir, write_json

ETCD_BINARY = "/usr/bin/etcd"
INFRA = "net"  # the "host" name under which the infra namespace's services are listed


@dataclass(frozen=True)
class ServiceEntry:
    """One supervised process."""

    host: str
    name: str
    netns: str
    argv: list[str]
    env: dict[str, str]
    log: str
    health_url: str = ""  # polled inside ``netns``; empty when the service has none
    cwd: str = "/"

    @property
    def key(self) -> str:
        return f"{self.host}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form for services.json."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServiceEntry:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass
class Binaries:
    """Where the lab finds the programs it runs (``--bin-dir``, else next to this Python, else PATH)."""

    bin_dir: Path | None = None
    found: dict[str, str] = field(default_factory=dict)

    def find(self, name: str) -> str:
        """The path of a program; raise LabError saying where it was looked for."""
        if name in self.found:
            return self.found[name]
        if self.bin_dir is not None:
            candidate = self.bin_dir / name
            if not (candidate.is_file() and os.access(candidate, os.X_OK)):
                raise LabError(f"{name} not found in --bin-dir {self.bin_dir}")
            path = str(candidate)
        else:
            here = Path(sys.executable).parent / name
            if here.is_file() and os.access(here, os.X_OK):
                path = str(here)
            else:
                which = shutil.which(name)
                if which is None:
                    raise LabError(f"{name} is not installed (looked next to {sys.executable} and on PATH; "
                                   "install the project with 'pip install -e .')")
                path = which
        self.found[name] = path
        return path

    @property
    def cni_path(self) -> str:
        """The CNI_PATH the plugins are found on."""
        return str(self.bin_dir) if self.bin_dir is not None else str(Path(self.find("calico")).parent)


def datastore_env(layout: Layout, labdir: LabDir) -> dict[str, str]:
    """Calico's datastore variables for this lab (as seen from any namespace of it)."""
    if layout.spec.datastore == "etcd":
        return {"DATASTORE_TYPE": "etcdv3", "ETCD_ENDPOINTS": layout.etcd_url}
    return {"DATASTORE_TYPE": "sqlite", "CALICO_DB": str(labdir.sqlite_file)}


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = base_env()
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def etcd_entry(layout: Layout, labdir: LabDir) -> ServiceEntry:
    """etcd in the infra namespace, on the underlay gateway address and loopback."""
    gw = layout.gateway
    argv = [
        ETCD_BINARY, f"--name={layout.spec.name}", f"--data-dir={labdir.etcd_dir}",
        f"--listen-client-urls=http://{gw}:{ETCD_CLIENT_PORT},http://127.0.0.1:{ETCD_CLIENT_PORT}",
        f"--advertise-client-urls={layout.etcd_url}",
        f"--listen-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--initial-cluster={layout.spec.name}=http://127.0.0.1:{ETCD_PEER_PORT}",
        f"--listen-metrics-urls=http://127.0.0.1:{ETCD_METRICS_PORT}",
        "--initial-cluster-state=new", "--initial-cluster-token=calico-lab",
        "--heartbeat-interval=50", "--election-timeout=500", "--logger=zap", "--log-outputs=stderr",
        "--log-level=warn",
    ]
    return ServiceEntry(INFRA, "etcd", layout.infra_netns, argv, _env({}),
                        str(labdir.log_file(INFRA, "etcd")),
                        health_url=f"http://127.0.0.1:{ETCD_METRICS_PORT}/health")


def typha_entry(layout: Layout, labdir: LabDir, bins: Binaries, typha: TyphaPlan) -> ServiceEntry:
    """One Typha replica in its host's namespace."""
    host = layout.host(typha.host)
    env = _env(datastore_env(layout, labdir) | {
        "TYPHA_SERVERPORT": str(typha.port),
        "TYPHA_HEALTHENABLED": "true",
        "TYPHA_HEALTHHOST": "127.0.0.1",
        "TYPHA_HEALTHPORT": str(typha.health_port),
        "TYPHA_REPLICANAME": f"{layout.spec.name}-{typha.name}",
        "TYPHA_LOGSEVERITYSCREEN": "Info",
        "TYPHA_SHUTDOWNTIMEOUTSECS": "2",  # a lab going down has no clients worth handing over
    })
    return ServiceEntry(host.name, typha.name, host.netns, [bins.find("calico-typha")], env,
                        str(labdir.log_file(host.name, typha.name)),
                        health_url=f"http://127.0.0.1:{typha.health_port}/readiness")


def felix_entry(layout: Layout, labdir: LabDir, bins: Binaries, host: HostPlan) -> ServiceEntry:
    """Felix for one host, in the host's namespace."""
    extra = datastore_env(layout, labdir) | {
        "FELIX_FELIXHOSTNAME": host.name,
        "FELIX_HEALTHENABLED": "true",
        "FELIX_HEALTHHOST": "127.0.0.1",
        "FELIX_HEALTHPORT": str(FELIX_HEALTH_PORT),
        "FELIX_LOGSEVERITYSCREEN": "Info",
        "FELIX_ENDPOINTSTATUSPATHPREFIX": str(labdir.host_dir(host.name)),
    }
    typha = layout.typha_for(host)
    if typha is not None:
        extra["FELIX_TYPHAADDR"] = f"{typha.address}:{typha.port}"
    return ServiceEntry(host.name, "felix", host.netns, [bins.find("calico-felix")], _env(extra),
                        str(labdir.log_file(host.name, "felix")),
                        health_url=f"http://127.0.0.1:{FELIX_HEALTH_PORT}/readiness")


def node_entries(layout: Layout, labdir: LabDir, bins: Binaries) -> list[ServiceEntry]:
    """The per-node services and Typha replicas (Felix now; confd and bird-bgp when they exist)."""
    out = [typha_entry(layout, labdir, bins, t) for t in layout.typhas]
    out += [felix_entry(layout, labdir, bins, h) for h in layout.hosts]
    return out


def load_roster(labdir: LabDir) -> list[ServiceEntry]:
    """The entries in services.json (empty when there is none yet)."""
    try:
        data = json.loads(labdir.roster_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except ValueError as exc:
        raise LabError(f"{labdir.roster_file} is damaged: {exc}") from None
    try:
        return [ServiceEntry.from_dict(d) for d in data.get("services", [])]
    except (TypeError, AttributeError) as exc:
        raise LabError(f"{labdir.roster_file} has a bad entry: {exc}") from None


def save_roster(labdir: LabDir, entries: list[ServiceEntry]) -> None:
    """Write services.json atomically."""
    write_json(labdir.roster_file, {"services": [e.to_dict() for e in entries]})
