"""Pure parts of calico-lab: the plan of a lab and its state file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.lab.errors import LabError
from services.lab.layout import LabSpec, container_id, plan
from services.lab.state import LabDir, LabState, PodRecord


def test_plan_names_and_numbers_everything() -> None:
    layout = plan(LabSpec("demo", nodes=3, pods_per_node=2, typha=2))
    assert [h.name for h in layout.hosts] == ["node0", "node1", "node2"]
    assert [h.netns for h in layout.hosts] == ["demo-node0", "demo-node1", "demo-node2"]
    assert [h.cidr for h in layout.hosts] == ["10.99.0.1/24", "10.99.0.2/24", "10.99.0.3/24"]
    assert layout.gateway == "10.99.0.254" and layout.infra_netns == "demo-net"
    assert [p.name for p in layout.pods] == ["node0-pod0", "node0-pod1", "node1-pod0", "node1-pod1",
                                             "node2-pod0", "node2-pod1"]
    pod = layout.pods[3]
    assert pod.netns == "demo-node1-pod1" and pod.labels == {"pod": "node1-pod1", "host": "node1"}
    assert len(pod.container_id) == 64 and pod.container_id == container_id("demo", "node1-pod1")
    # Typha replicas spread over the hosts; each host's Felix picks one round-robin.
    assert [(t.host, t.port, t.health_port) for t in layout.typhas] == [("node0", 5473, 9200),
                                                                       ("node1", 5474, 9201)]
    assert [getattr(layout.typha_for(h), "name", None) for h in layout.hosts] == ["typha-0", "typha-1", "typha-0"]
    assert all(p.netns.startswith(layout.prefix) for p in layout.pods)


def test_typha_defaults_to_one_replica_only_with_several_nodes() -> None:
    assert plan(LabSpec(nodes=1)).typhas == []
    assert len(plan(LabSpec(nodes=2)).typhas) == 1
    assert plan(LabSpec(nodes=2, typha=0)).typhas == []
    assert plan(LabSpec(nodes=1)).typha_for(plan(LabSpec(nodes=1)).hosts[0]) is None


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "Bad_Name"}, "lab name 'Bad_Name'"),
    ({"nodes": 0}, "--nodes must be between 1 and 100, not 0"),
    ({"pods_per_node": 61}, "--pods-per-node must be between 0 and 60, not 61"),
    ({"datastore": "kubernetes"}, "--datastore must be one of sqlite, etcd"),
    ({"encap": "ipip"}, "--encap must be one of vxlan, none"),
    ({"typha": 9}, "--typha must be between 0 and 8"),
    ({"underlay": "10.99.0.0/33"}, "--underlay '10.99.0.0/33' is not an IPv4 network"),
    ({"underlay": "10.99.0.0/30", "nodes": 2}, "--underlay 10.99.0.0/30 has room for 1 hosts, not 2"),
])
def test_bad_spec_says_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LabError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LabSpec(**kwargs)  # type: ignore[arg-type]


def test_unknown_host_is_named() -> None:
    layout = plan(LabSpec(nodes=2))
    with pytest.raises(LabError, match=r"no host 'node7' in this lab \(hosts: node0, node1\)"):
        layout.host("node7")


def test_state_round_trip_and_refusals(tmp_path: Path) -> None:
    labdir = LabDir(tmp_path / "lab")
    with pytest.raises(LabError, match="no lab in"):
        labdir.load()
    labdir.create()
    state = LabState(LabSpec("x1", nodes=1, pods_per_node=1, datastore="etcd"), phase="up")
    state.pods["node0-pod0"] = PodRecord("node0-pod0", "node0", "x1-node0-pod0", "c" * 64, ip="10.244.1.2")
    labdir.save(state)
    again = labdir.load()
    assert again.to_dict() == state.to_dict()
    assert again.spec.datastore == "etcd" and again.pods["node0-pod0"].ip == "10.244.1.2"
    assert json.loads(labdir.state_file.read_text())["phase"] == "up"
    assert not list(labdir.root.glob(".*.tmp"))  # atomic writes leave no temporary file
    with pytest.raises(LabError, match="a lab already exists"):
        labdir.create()


def test_create_refuses_a_directory_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(LabError, match="exists and is not empty"):
        LabDir(tmp_path).create()
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_damaged_state_is_reported(tmp_path: Path) -> None:
    labdir = LabDir(tmp_path / "lab")
    labdir.create()
    labdir.state_file.write_text("{not json")
    with pytest.raises(LabError, match="cannot read .*state.json"):
        labdir.load()
