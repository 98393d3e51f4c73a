"""Block, handle, affinity and config values: Calico's JSON shapes and the pure block operations."""

from __future__ import annotations

import ipaddress

import pytest

from libcalico.ipam.errors import CorruptIPAMData
from libcalico.ipam.keys import (
    affinity_key,
    block_key,
    handle_key,
    parse_affinity_key,
    parse_block_key,
    parse_handle_key,
)
from libcalico.ipam.model import Affinity, AffinityState, Attribute, Block, Handle, IPAMSettings

NET = ipaddress.ip_network("10.0.0.0/30")

# A block as Calico's etcd backend stores it (two addresses to one pod, one free, one tunnel).
CALICO_BLOCK = {
    "cidr": "10.0.0.0/30",
    "affinity": "host:node-1",
    "allocations": [0, None, 1, 0],
    "unallocated": [1],
    "attributes": [
        {"handle_id": "k8s-pod-network.abc", "secondary": {"namespace": "default", "node": "node-1", "pod": "p"}},
        {"handle_id": "vxlan-tunnel-addr-node-1", "secondary": {"node": "node-1", "type": "vxlanTunnelAddress"}},
    ],
    "sequenceNumber": 7,
    "sequenceNumberForAllocation": {"0": 3, "2": 5, "3": 6},
    "deleted": False,
}


def test_keys_round_trip_in_calicos_layout() -> None:
    v6 = ipaddress.ip_network("fd00::/122")
    assert block_key(NET) == "/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-30"
    assert block_key(v6) == "/calico/ipam/v2/assignment/ipv6/block/fd00::-122"
    assert affinity_key("node-1", NET) == "/calico/ipam/v2/host/node-1/ipv4/block/10.0.0.0-30"
    assert handle_key("k8s-pod-network.abc") == "/calico/ipam/v2/handle/k8s-pod-network.abc"
    assert parse_block_key(block_key(v6)) == v6
    assert parse_affinity_key(affinity_key("node-1", v6)) == ("node-1", v6)
    assert parse_handle_key(handle_key("h")) == "h"
    for bad in ("/calico/ipam/v2/host/n/ipv4/x/10.0.0.0-30", "/calico/ipam/v2/handle/a/b"):
        with pytest.raises(ValueError):
            (parse_affinity_key if "host" in bad else parse_handle_key)(bad)
    with pytest.raises(ValueError):
        handle_key("a/b")


def test_calico_block_decodes_and_encodes_unchanged() -> None:
    block = Block.from_value("k", CALICO_BLOCK)
    assert block.host == "node-1"
    assert block.in_use() == 3
    assert block.ordinals_of_handle("k8s-pod-network.abc") == [0, 3]
    assert block.attribute_of(2) == Attribute.of("vxlan-tunnel-addr-node-1",
                                                 {"node": "node-1", "type": "vxlanTunnelAddress"})
    assert block.sequence_of(3) == 6
    out = block.to_value()
    for field in CALICO_BLOCK:
        assert out[field] == CALICO_BLOCK[field], field


def test_allocation_is_fifo_skips_refused_ordinals_and_records_sequence() -> None:
    block = Block.for_host(NET, "n1")
    block.sequence = 4
    attr = Attribute.of("h1", {"pod": "a"})
    assert block.allocate(2, attr, skip=lambda o: o == 0) == [1, 2]
    assert block.unallocated == [0, 3]
    assert block.sequence_for == {"1": 4, "2": 4}
    assert block.release([1]) == {1: "h1"}
    assert block.unallocated == [0, 3, 1]  # freed last, handed out last
    assert block.allocate(3, Attribute.of("h2", None)) == [0, 3, 1]
    assert block.allocate(1, attr) == []


def test_release_prunes_and_reindexes_attributes() -> None:
    block = Block.for_host(NET, None)
    block.allocate(1, Attribute.of("a", None))
    block.allocate(1, Attribute.of("b", None))
    block.allocate(1, Attribute.of("a", None))
    assert len(block.attributes) == 2
    assert block.release([0, 2]) == {0: "a", 2: "a"}
    assert [a.handle for a in block.attributes] == ["b"]
    assert block.allocations == [None, 0, None, None]
    assert block.release([0]) == {}  # already free: nothing


def test_assign_specific_ordinal_refuses_taken_one() -> None:
    block = Block.for_host(NET, "n1")
    assert block.assign(2, Attribute.of("h", None))
    assert not block.assign(2, Attribute.of("other", None))
    assert 2 not in block.unallocated


@pytest.mark.parametrize("value, reason", [
    ({"cidr": "nonsense"}, "cidr"),
    ({"cidr": "10.0.0.0/30", "allocations": [None] * 3}, "allocations has 3 entries"),
    ({"cidr": "10.0.0.0/30", "allocations": [5, None, None, None], "attributes": []}, "missing attribute 5"),
    ({"cidr": "10.0.0.0/30", "attributes": "x"}, "attributes must be a list"),
])
def test_corrupt_blocks_name_the_problem(value: dict[str, object], reason: str) -> None:
    with pytest.raises(CorruptIPAMData, match=reason):
        Block.from_value("/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-30", value)


def test_handle_affinity_and_config_shapes() -> None:
    handle = Handle.from_value("k", "h", {"block": {"10.0.0.0/26": 2}, "deleted": False})
    assert handle.blocks == {"10.0.0.0/26": 2}
    assert handle.to_value() == {"block": {"10.0.0.0/26": 2}, "deleted": False}
    with pytest.raises(CorruptIPAMData):
        Handle.from_value("k", "h", {"block": {"10.0.0.0/26": "two"}})
    assert Affinity("n", NET, AffinityState.PENDING).to_value() == {"state": "pending", "deleted": False}
    assert Affinity.state_of("k", {}) is AffinityState.CONFIRMED
    with pytest.raises(CorruptIPAMData, match="unknown affinity state"):
        Affinity.state_of("k", {"state": "bogus"})
    cfg = IPAMSettings.from_v2({"strict_affinity": True, "maxBlocksPerHost": 4})
    assert cfg == IPAMSettings(strict_affinity=True, auto_allocate_blocks=False, max_blocks_per_host=4)
    assert cfg.to_v2() == {"strict_affinity": True, "auto_allocate_blocks": False, "maxBlocksPerHost": 4}
    assert IPAMSettings().block_limit == 20
