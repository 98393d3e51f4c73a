"""Pure parts of the kubernetes datastore: Calico's k8s conversion rules and the key <-> CR mapping.

Expected values are worked out by hand from Calico's libcalico-go
``k8s/conversion`` (selectors, rules, ports, names) and ``names`` packages.
"""

from __future__ import annotations

import hashlib
import uuid

import pytest

from libcalico.datastore.kube_conversion import (
    convert_uid,
    k8s_network_policy,
    parse_workload_endpoint_name,
    pod_ip_networks,
    pod_workload_endpoint,
    selector_from_k8s,
    simplify_ports,
    workload_endpoint_name,
)
from libcalico.datastore.kube_crd import (
    affinity_name,
    cidr_name,
    decode,
    encode,
    locate,
    object_name,
)
from libcalico.datastore.kube_types import CALICO_CRDS
from libcalico.errors import ValidationError

ROOT = "/calico/resources/v3/projectcalico.org/"


@pytest.mark.parametrize(
    ("selector", "pod", "expected"),
    [
        (None, True, "projectcalico.org/orchestrator == 'k8s'"),
        (None, False, ""),
        ({}, True, "projectcalico.org/orchestrator == 'k8s'"),
        ({}, False, "all()"),
        ({"matchLabels": {"role": "db", "app": "x"}}, True,
         "projectcalico.org/orchestrator == 'k8s' && app == 'x' && role == 'db'"),
        ({"matchLabels": {"team": "a"}}, False, "team == 'a'"),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                               {"key": "env", "operator": "NotIn", "values": ["dev"]},
                               {"key": "x", "operator": "Exists"},
                               {"key": "y", "operator": "DoesNotExist"}]}, False,
         "tier in { 'a', 'b' } && env not in { 'dev' } && has(x) && ! has(y)"),
    ],
)
def test_selector_conversion_matches_calico(selector: dict | None, pod: bool, expected: str) -> None:
    assert selector_from_k8s(selector, pod) == expected


def test_simplify_ports_merges_numbers_and_keeps_names_first() -> None:
    assert simplify_ports([80, 81, 82, 9090, "http"]) == ["http", "80:82", 9090]
    assert simplify_ports(["1000:1005", 1006, 22]) == [22, "1000:1006"]
    assert simplify_ports([443]) == [443]
    assert simplify_ports(["web", 53]) == ["web", 53]


def test_network_policy_conversion_rules() -> None:
    np = {
        "metadata": {"name": "web-policy", "namespace": "prod", "uid": "4c0a3f1e-2b6d-4f7a-9c3e-1a2b3c4d5e6f",
                     "creationTimestamp": "2024-05-01T10:00:00Z", "resourceVersion": "42"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"role": "fe"}}},
                          {"namespaceSelector": {"matchLabels": {"team": "a"}}},
                          {"ipBlock": {"cidr": "10.1.2.3/16", "except": ["10.1.5.0/24"]}}],
                 "ports": [{"port": 80}, {"port": 81}, {"protocol": "UDP", "port": 53},
                           {"port": "metrics"}, {"port": 8000, "endPort": 8010}]},
                {},  # allow everything in
            ],
            "egress": [{"to": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP"}]}],
        },
    }
    converted = k8s_network_policy(np)
    assert converted is not None
    key, value = converted
    assert key == ROOT + "networkpolicies/prod/knp.default.web-policy"
    assert value["metadata"] == {"name": "knp.default.web-policy", "namespace": "prod",
                                 "uid": convert_uid("4c0a3f1e-2b6d-4f7a-9c3e-1a2b3c4d5e6f"),
                                 "creationTimestamp": "2024-05-01T10:00:00Z"}
    spec = value["spec"]
    assert spec["order"] == 1000
    assert spec["selector"] == "projectcalico.org/orchestrator == 'k8s' && app == 'web'"
    assert spec["types"] == ["Ingress", "Egress"]
    tcp_ports = ["metrics", "80:81", "8000:8010"]
    sources = [
        {"selector": "projectcalico.org/orchestrator == 'k8s' && role == 'fe'"},
        {"selector": "projectcalico.org/orchestrator == 'k8s'", "namespaceSelector": "team == 'a'"},
        {"nets": ["10.1.0.0/16"], "notNets": ["10.1.5.0/24"]},
    ]
    expected_ingress = [
        *({"action": "Allow", "protocol": "TCP", "source": s, "destination": {"ports": tcp_ports}} for s in sources),
        *({"action": "Allow", "protocol": "UDP", "source": s, "destination": {"ports": [53]}} for s in sources),
        {"action": "Allow"},
    ]
    assert spec["ingress"] == expected_ingress
    assert spec["egress"] == [{"action": "Allow", "protocol": "TCP",
                               "destination": {"selector": "projectcalico.org/orchestrator == 'k8s'",
                                               "namespaceSelector": "all()"}}]


def test_network_policy_without_types_is_ingress_only_and_drops_bad_rules() -> None:
    np = {"metadata": {"name": "p", "namespace": "ns"},
          "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": "bad:port:x"}]}, {"from": []}]}}
    converted = k8s_network_policy(np)
    assert converted is not None
    spec = converted[1]["spec"]
    assert spec["types"] == ["Ingress"]
    assert spec["ingress"] == [{"action": "Allow"}]  # the unparseable rule is dropped, as Calico does
    assert "egress" not in spec


def test_convert_uid_reverses_bits_but_keeps_version_and_variant() -> None:
    original = str(uuid.uuid4())
    converted = convert_uid(original)
    assert converted != original
    assert convert_uid(converted) == original
    assert uuid.UUID(converted).version == 4 and uuid.UUID(converted).variant == uuid.RFC_4122
    assert convert_uid("00000000-0000-4000-8000-000000000001") == "00000000-0000-4000-8000-000000000080"


@pytest.mark.parametrize(
    ("node", "pod", "name"),
    [("node1", "web", "node1-k8s-web-eth0"),
     ("node-1", "web-0", "node--1-k8s-web--0-eth0"),
     ("ip-10-0-0-1.ec2.internal", "a-b-c", "ip--10--0--0--1.ec2.internal-k8s-a--b--c-eth0")],
)
def test_workload_endpoint_names_escape_dashes(node: str, pod: str, name: str) -> None:
    assert workload_endpoint_name(node, pod) == name
    assert parse_workload_endpoint_name(name) == (node, "k8s", pod, "eth0")


def test_workload_endpoint_name_parse_rejects_other_shapes() -> None:
    assert parse_workload_endpoint_name("node-k8s-pod") is None
    assert parse_workload_endpoint_name("a-b-c-d-e") is None
    with pytest.raises(ValueError, match="must be non-empty and not begin or end"):
        workload_endpoint_name("node-", "pod")


def test_pod_addresses_come_from_status_then_calico_annotations() -> None:
    both = {"status": {"podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}], "podIP": "10.0.0.5"},
            "metadata": {"annotations": {"cni.projectcalico.org/podIPs": "10.9.9.9/32"}}}
    assert pod_ip_networks(both) == ["10.0.0.5/32", "fd00::5/128"]
    annotated = {"metadata": {"annotations": {"cni.projectcalico.org/podIPs": "10.0.0.7/32,fd00::7/128"}}}
    assert pod_ip_networks(annotated) == ["10.0.0.7/32", "fd00::7/128"]
    single = {"metadata": {"annotations": {"cni.projectcalico.org/podIP": "10.0.0.8"}}}
    assert pod_ip_networks(single) == ["10.0.0.8/32"]
    assert pod_ip_networks({"metadata": {}}) == []


def test_pod_conversion_skips_unscheduled_and_host_network_pods() -> None:
    base = {"metadata": {"name": "p", "namespace": "ns"}, "spec": {"containers": []}}
    assert pod_workload_endpoint(base) is None
    assert pod_workload_endpoint({**base, "spec": {"nodeName": "n", "hostNetwork": True}}) is None
    finished = {**base, "spec": {"nodeName": "n"}, "status": {"phase": "Succeeded", "podIP": "10.0.0.1"}}
    converted = pod_workload_endpoint(finished)
    assert converted is not None and "ipNetworks" not in converted[1]["spec"]
    veth = "cali" + hashlib.sha1(b"ns.p").hexdigest()[:11]
    assert converted[1]["spec"]["interfaceName"] == veth


def test_ipam_keys_map_to_calicos_cr_names() -> None:
    block = locate("/calico/ipam/v2/assignment/ipv4/block/10.0.0.0-26")
    assert block is not None and (block.type.plural, block.name) == ("ipamblocks", "10-0-0-0-26")
    v6 = locate("/calico/ipam/v2/assignment/ipv6/block/fd00:1::-122")
    assert v6 is not None and v6.name == "fd00-1---122"
    aff = locate("/calico/ipam/v2/host/node-1/ipv4/block/10.0.0.64-26")
    assert aff is not None and (aff.type.plural, aff.name) == ("blockaffinities", "node-1-10-0-0-64-26")
    handle = locate("/calico/ipam/v2/handle/k8s-pod-network.ABC123")
    assert handle is not None and (handle.type.plural, handle.name) == ("ipamhandles", "k8s-pod-network.abc123")
    config = locate("/calico/ipam/v2/config")
    assert config is not None and (config.type.plural, config.name) == ("ipamconfigs", "default")
    with pytest.raises(ValidationError, match="not an IPAM key"):
        locate("/calico/ipam/v2/assignment/ipv4/other/x")
    assert locate("/calico/felix/v2/no-region/host/h1/status") is None
    assert cidr_name("10.0.0.0/26") == "10-0-0-0-26"
    long_host = "h" * 260
    assert len(affinity_name(long_host, "10.0.0.0-26")) <= 253
    assert object_name("Under_Score") == object_name("Under_Score") and len(object_name("Under_Score")) < 40


def test_resource_values_round_trip_through_the_cr_form() -> None:
    key = ROOT + "networkpolicies/prod/web"
    value = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
             "metadata": {"name": "web", "namespace": "prod", "uid": "u-1", "creationTimestamp": "2024-01-01T00:00:00Z",
                          "labels": {"a": "b"}, "annotations": {"note": "x"}},
             "spec": {"order": 5, "selector": "all()"}}
    slot = locate(key)
    assert slot is not None
    body = encode(slot, value, None)
    assert body["apiVersion"] == "crd.projectcalico.org/v1" and body["kind"] == "NetworkPolicy"
    assert body["metadata"]["labels"] == {"a": "b"} and body["spec"] == value["spec"]
    assert body["metadata"]["annotations"]["projectcalico.org/metadata"] == \
        '{"creationTimestamp":"2024-01-01T00:00:00Z","uid":"u-1"}'
    body["metadata"]["resourceVersion"] = "17"
    decoded = decode(CALICO_CRDS["networkpolicies"], body)
    assert decoded is not None and (decoded.key, decoded.value, decoded.revision) == (key, value, 17)
    # Not resource-shaped (here: no spec): stored raw and still read back exactly.
    odd = {"hello": [1, None, {"x": True}]}
    raw = encode(slot, odd, 1e9)
    raw["metadata"]["resourceVersion"] = "18"
    again = decode(CALICO_CRDS["networkpolicies"], raw)
    assert again is not None and again.value == odd and again.expires_at == pytest.approx(1e9)
