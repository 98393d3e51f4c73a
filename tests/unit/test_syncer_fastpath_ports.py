"""The fast path remembers lists of named ports it found valid: a remembered list vouches only for the same list.

Endpoints of one workload carry the same ports; a list of several named ports
(each exactly ``name``, ``protocol``, ``port``) is checked once and then
recognised. The key is made of exact types, so nothing the model rejects can
be taken for a remembered list.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from libcalico.syncer import fastpath
from tests.unit.test_syncer_fastpath import model_accepts

API = "projectcalico.org/v3"
GOOD = [{"name": "http", "protocol": "TCP", "port": 80}, {"name": "metrics", "protocol": "TCP", "port": 9090}]


def endpoint(ports: list[Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "WorkloadEndpoint",
            "metadata": {"name": "a", "namespace": "ns", "labels": {"app": "x"}},
            "spec": {"node": "n1", "orchestrator": "k8s", "pod": "a", "endpoint": "eth0", "interfaceName": "cali1",
                     "ipNetworks": ["10.0.0.1/32"], "profiles": ["kns.ns"], "ports": ports}}


@pytest.mark.parametrize("bad", [
    [GOOD[0], {"name": "http", "protocol": "UDP", "port": 81}],  # a name twice
    [GOOD[0], {"name": "metrics", "protocol": "TCP", "port": True}],  # True is not a port number
    [GOOD[0], {"name": "metrics", "protocol": "ICMP", "port": 9090}],
    [GOOD[0], {"name": "metrics", "protocol": "TCP", "port": 0}],
    [GOOD[0], {"name": "Metrics!", "protocol": "TCP", "port": 9090}],
])
def test_a_remembered_list_vouches_for_nothing_else(bad: list[Any]) -> None:
    assert fastpath.accepts("WorkloadEndpoint", endpoint(copy.deepcopy(GOOD)))
    assert fastpath.accepts("WorkloadEndpoint", endpoint(copy.deepcopy(GOOD)))  # now remembered
    assert fastpath._ports_key(GOOD) in fastpath._PORTS_OK
    value = endpoint(bad)
    assert not model_accepts(value)
    assert not fastpath.accepts("WorkloadEndpoint", value)


PORT = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["http", "dns", "web", "metrics"]),
                           "protocol": st.sampled_from(["TCP", "UDP", "SCTP"]),
                           "port": st.sampled_from([80, 53, 8080])}),
    st.fixed_dictionaries({"name": st.sampled_from(["http", "Web", ""]),
                           "protocol": st.sampled_from(["TCP", "ICMP", "6"]),
                           "port": st.sampled_from([80, 0, 65536, True])}),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(PORT, min_size=2, max_size=3), min_size=1, max_size=4))
def test_remembered_lists_agree_with_the_model(lists: list[list[dict[str, Any]]]) -> None:
    for ports in lists + lists:  # each list twice: the second time it may be remembered
        value = endpoint(copy.deepcopy(ports))
        if fastpath.accepts("WorkloadEndpoint", value):
            assert model_accepts(value), ports
