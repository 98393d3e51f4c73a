"""Reading Typha's replicas out of Kubernetes Endpoints and EndpointSlices (pure parsing), and local-first order."""

from __future__ import annotations

import random

from libcalico.typha.client import Address, order_addresses
from libcalico.typha.discovery import TyphaEndpoint, endpoints_from_endpoints, endpoints_from_slices

TYPHA_PORT = {"name": "calico-typha", "port": 5473, "protocol": "TCP"}
OTHER_PORT = {"name": "metrics", "port": 9093, "protocol": "TCP"}


def test_endpoints_object_ready_addresses_on_the_named_port() -> None:
    obj = {"subsets": [
        {"addresses": [{"ip": "10.0.0.5", "nodeName": "n1"}, {"ip": "10.0.0.6", "nodeName": "n2"}],
         "notReadyAddresses": [{"ip": "10.0.0.7", "nodeName": "n3"}], "ports": [TYPHA_PORT, OTHER_PORT]},
        {"addresses": [{"ip": "10.0.0.9"}], "ports": [OTHER_PORT]},  # no Typha port: not a replica
        {"addresses": [{"ip": "fd00::5", "nodeName": "n4"}, {"ip": "10.0.0.5", "nodeName": "n1"}],
         "ports": [TYPHA_PORT]},
    ]}
    found = endpoints_from_endpoints(obj, "calico-typha")
    assert found == [TyphaEndpoint("10.0.0.5", 5473, "n1"), TyphaEndpoint("10.0.0.6", 5473, "n2"),
                     TyphaEndpoint("fd00::5", 5473, "n4")]
    assert [e.address for e in found] == ["10.0.0.5:5473", "10.0.0.6:5473", "[fd00::5]:5473"]
    assert endpoints_from_endpoints(obj, "no-such-port") == []
    assert endpoints_from_endpoints({}, "calico-typha") == []


def test_endpoint_slices_skip_not_ready_and_count_unknown_readiness_as_ready() -> None:
    slices = [
        {"ports": [TYPHA_PORT], "endpoints": [
            {"addresses": ["10.0.0.5"], "conditions": {"ready": True}, "nodeName": "n1"},
            {"addresses": ["10.0.0.6"], "conditions": {"ready": False}, "nodeName": "n2"},
            {"addresses": ["10.0.0.7"], "nodeName": "n3"},  # readiness unknown: ready
        ]},
        {"ports": [OTHER_PORT], "endpoints": [{"addresses": ["10.0.0.8"], "conditions": {"ready": True}}]},
        {"ports": [{**TYPHA_PORT, "port": 6000}], "endpoints": [
            {"addresses": ["10.0.0.9"], "conditions": {"ready": True}, "nodeName": "n9"}]},
    ]
    assert endpoints_from_slices(slices, "calico-typha") == [
        TyphaEndpoint("10.0.0.5", 5473, "n1"), TyphaEndpoint("10.0.0.7", 5473, "n3"),
        TyphaEndpoint("10.0.0.9", 6000, "n9")]


def test_an_address_marked_local_comes_first_whatever_its_host() -> None:
    addrs = [Address(f"10.0.0.{i}", 5473) for i in range(1, 9)] + [Address("10.0.1.1", 5473, local=True)]
    for seed in range(20):
        chosen = order_addresses(addrs, local_hosts=set(), rng=random.Random(seed))
        assert chosen[0] == Address("10.0.1.1", 5473) and chosen[0].local
    assert Address("10.0.1.1", 5473, local=True) == Address("10.0.1.1", 5473)  # locality is not identity
