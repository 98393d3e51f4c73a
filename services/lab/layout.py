"""The shape of a lab, derived from its spec: names, namespaces, addresses and ports (pure).

How it works::

    <lab>-net  (infra namespace: bridge br0 = last address of the underlay, etcd)
       ├── veth ul-node0 ═ eth0 of <lab>-node0  (10.99.0.1/24, default via the bridge)
       │                      └── cali… ═ eth0 of <lab>-node0-pod0 … (made by the CNI plugin)
       └── veth ul-node1 ═ eth0 of <lab>-node1  (10.99.0.2/24)

Hosts are Calico nodes ``node0``…; pods are ``<host>-pod<j>`` in Kubernetes namespace
``default``. Typha replica ``r`` runs on host ``r mod N``, listening on ``5473 + r``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field

from services.lab.errors import LabError

NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
DATASTORES = ("sqlite", "etcd")
ENCAPS = ("vxlan", "none")
MAX_NODES = 100
MAX_PODS_PER_NODE = 60
POD_NAMESPACE = "default"
BRIDGE = "br0"
FELIX_HEALTH_PORT = 9099
TYPHA_PORT = 5473
TYPHA_HEALTH_PORT = 9200
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
ETCD_METRICS_PORT = 2381


@dataclass(frozen=True)
class LabSpec:
    """What the user asked for with ``calico-lab up``."""

    name: str = "lab"
    nodes: int = 2
    pods_per_node: int = 2
    datastore: str = "sqlite"
    typha: int | None = None  # None: 1 when nodes > 1, else 0
    encap: str = "vxlan"
    underlay: str = "10.99.0.0/24"

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise LabError(f"lab name {self.name!r} must be 1-12 lowercase letters and digits, starting with a letter")
        if not 1 <= self.nodes <= MAX_NODES:
            raise LabError(f"--nodes must be between 1 and {MAX_NODES}, not {self.nodes}")
        if not 0 <= self.pods_per_node <= MAX_PODS_PER_NODE:
            raise LabError(f"--pods-per-node must be between 0 and {MAX_PODS_PER_NODE}, not {self.pods_per_node}")
        if self.datastore not in DATASTORES:
            raise LabError(f"--datastore must be one of {', '.join(DATASTORES)}, not {self.datastore!r}")
        if self.encap not in ENCAPS:
            raise LabError(f"--encap must be one of {', '.join(ENCAPS)}, not {self.encap!r}")
        if self.typha is not None and not 0 <= self.typha <= 8:
            raise LabError(f"--typha must be between 0 and 8, not {self.typha}")
        try:
            net = ipaddress.IPv4Network(self.underlay)
        except ValueError as exc:
            raise LabError(f"--underlay {self.underlay!r} is not an IPv4 network: {exc}") from None
        if net.num_addresses - 3 < self.nodes:
            raise LabError(f"--underlay {self.underlay} has room for {max(net.num_addresses - 3, 0)} hosts, "
                           f"not {self.nodes}")

    @property
    def typha_replicas(self) -> int:
        """Replicas to run: as asked, else one when there is more than one node."""
        if self.typha is not None:
            return self.typha
        return 1 if self.nodes > 1 else 0

    def to_dict(self) -> dict[str, object]:
        """JSON form for the state file."""
        return {"name": self.name, "nodes": self.nodes, "pods_per_node": self.pods_per_node,
                "datastore": self.datastore, "typha": self.typha, "encap": self.encap, "underlay": self.underlay}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> LabSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class HostPlan:
    """One "host": a namespace with an uplink on the underlay bridge."""

    index: int
    name: str
    netns: str
    address: str  # without prefix length
    prefixlen: int
    uplink: str  # bridge-side veth name, in the infra namespace

    @property
    def cidr(self) -> str:
        return f"{self.address}/{self.prefixlen}"


@dataclass(frozen=True)
class PodPlan:
    """One pod: its own namespace, wired to its host by the CNI plugin."""

    name: str
    host: str
    netns: str
    container_id: str
    namespace: str = POD_NAMESPACE

    @property
    def labels(self) -> dict[str, str]:
        """The labels its WorkloadEndpoint carries, so that policies can select it."""
        return {"pod": self.name, "host": self.host}


@dataclass(frozen=True)
class TyphaPlan:
    """One Typha replica: where it runs and on which ports."""

    index: int
    host: str
    address: str
    port: int
    health_port: int

    @property
    def name(self) -> str:
        return f"typha-{self.index}"


@dataclass(frozen=True)
class Layout:
    """Everything named and numbered for one lab."""

    spec: LabSpec
    infra_netns: str
    gateway: str
    hosts: list[HostPlan] = field(default_factory=list)
    pods: list[PodPlan] = field(default_factory=list)
    typhas: list[TyphaPlan] = field(default_factory=list)

    @property
    def prefix(self) -> str:
        """Every namespace of this lab starts with this."""
        return f"{self.spec.name}-"

    @property
    def etcd_url(self) -> str:
        return f"http://{self.gateway}:{ETCD_CLIENT_PORT}"

    def host(self, name: str) -> HostPlan:
        """A host by name; raise LabError naming the hosts there are."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(f"no host {name!r} in this lab (hosts: {', '.join(h.name for h in self.hosts)})")

    def typha_for(self, host: HostPlan) -> TyphaPlan | None:
        """The replica a host's Felix connects to (spread round-robin), or None without Typha."""
        if not self.typhas:
            return None
        return self.typhas[host.index % len(self.typhas)]

    def pod_plan(self, host: str, name: str) -> PodPlan:
        """The plan of a (possibly new) pod on a host."""
        h = self.host(host)
        netns = f"{self.spec.name}-{name}"
        return PodPlan(name=name, host=h.name, netns=netns, container_id=container_id(self.spec.name, name))


def container_id(lab: str, pod: str) -> str:
    """A stable 64-hex-digit container id, like a container runtime's."""
    return hashlib.sha256(f"calico-lab/{lab}/{pod}".encode()).hexdigest()


def plan(spec: LabSpec) -> Layout:
    """Name and number everything a lab of this spec has."""
    net = ipaddress.IPv4Network(spec.underlay)
    addresses = list(net.hosts())
    gateway = str(addresses[-1])
    hosts = [HostPlan(i, f"node{i}", f"{spec.name}-node{i}", str(addresses[i]), net.prefixlen, f"ul-node{i}")
             for i in range(spec.nodes)]
    layout = Layout(spec, infra_netns=f"{spec.name}-net", gateway=gateway, hosts=hosts)
    for h in hosts:
        for j in range(spec.pods_per_node):
            layout.pods.append(layout.pod_plan(h.name, f"{h.name}-pod{j}"))
    for r in range(spec.typha_replicas):
        h = hosts[r % len(hosts)]
        layout.typhas.append(TyphaPlan(r, h.name, h.address, TYPHA_PORT + r, TYPHA_HEALTH_PORT + r))
    return layout
