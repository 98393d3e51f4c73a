"""The lab directory: state file, service roster, pids, logs and data, written atomically.

Layout of ``<dir>``::

    .calico-lab        marker: this directory belongs to a lab (down removes it whole)
    state.json         spec, phase, pods and their addresses
    services.json      the supervisor's roster (what runs where, with which env)
    pids.json          written by the supervisor: pid, start time, restarts per service
    supervisor.pid     the supervisor's pid and start time
    calico.db          the sqlite datastore (--datastore sqlite)
    etcd/              etcd's data (--datastore etcd)
    logs/<host>/<service>.log, logs/supervisor.log
    hosts/<host>/      per-host files of the services (endpoint status…)
    cni/               the CNI network configuration used for every pod
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.lab.errors import LabError
from services.lab.layout import LabSpec

MARKER = ".calico-lab"
DEFAULT_ROOT = Path("/run/calico-lab")


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """Read a JSON file; raise LabError naming it when it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read {path}: {exc}") from None


@dataclass
class PodRecord:
    """A pod the lab made, with what the CNI plugin gave it."""

    name: str
    host: str
    netns: str
    container_id: str
    namespace: str = "default"
    ip: str = ""
    mac: str = ""
    interface: str = ""  # host side veth


@dataclass
class LabState:
    """What ``state.json`` holds."""

    spec: LabSpec
    phase: str = "creating"  # creating → up; failed when up could not finish
    pods: dict[str, PodRecord] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"spec": self.spec.to_dict(), "phase": self.phase,
                "pods": {name: asdict(p) for name, p in sorted(self.pods.items())}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        """Inverse of :meth:`to_dict`."""
        return cls(spec=LabSpec.from_dict(data["spec"]), phase=str(data.get("phase", "")),
                   pods={name: PodRecord(**p) for name, p in (data.get("pods") or {}).items()})


class LabDir:
    """Paths of one lab's directory, and its state file."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def roster_file(self) -> Path:
        return self.root / "services.json"

    @property
    def pids_file(self) -> Path:
        return self.root / "pids.json"

    @property
    def supervisor_pid_file(self) -> Path:
        return self.root / "supervisor.pid"

    @property
    def sqlite_file(self) -> Path:
        return self.root / "calico.db"

    @property
    def etcd_dir(self) -> Path:
        return self.root / "etcd"

    @property
    def cni_dir(self) -> Path:
        return self.root / "cni"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def log_file(self, host: str, service: str) -> Path:
        """Where one service's output goes."""
        return self.logs / host / f"{service}.log"

    def host_dir(self, host: str) -> Path:
        """Per-host files of the services running on ``host``."""
        return self.root / "hosts" / host

    def exists(self) -> bool:
        """True when a lab was created here."""
        return self.marker.exists()

    def create(self) -> None:
        """Make the directory for a new lab; refuse one that holds anything else."""
        if self.exists():
            raise LabError(f"a lab already exists in {self.root}: run 'calico-lab down' first", step="lab directory")
        if self.root.exists() and any(self.root.iterdir()):
            raise LabError(f"{self.root} exists and is not empty: choose another --dir", step="lab directory")
        self.root.mkdir(parents=True, exist_ok=True)
        self.marker.write_text("calico-lab\n", encoding="utf-8")
        for sub in (self.logs, self.cni_dir, self.root / "hosts"):
            sub.mkdir(exist_ok=True)

    def load(self) -> LabState:
        """The lab's state; raise LabError when there is no lab here."""
        if not self.exists():
            raise LabError(f"no lab in {self.root}: run 'calico-lab up' first")
        try:
            return LabState.from_dict(read_json(self.state_file))
        except FileNotFoundError:
            raise LabError(f"no lab state in {self.root} (was 'up' interrupted? run 'calico-lab down')") from None
        except (KeyError, TypeError) as exc:
            raise LabError(f"{self.state_file} is damaged ({exc}): run 'calico-lab down'") from None

    def save(self, state: LabState) -> None:
        """Write the state file atomically."""
        write_json(self.state_file, state.to_dict())

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the lab's lock (one state-changing command at a time)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a+", encoding="utf-8") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def pids(self) -> dict[str, Any]:
        """What the supervisor last wrote about its services (empty when nothing yet)."""
        try:
            data = read_json(self.pids_file)
        except FileNotFoundError:
            return {}
        return data if isinstance(data, dict) else {}
