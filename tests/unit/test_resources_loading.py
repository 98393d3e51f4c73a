"""Loading resources: multi-document YAML, kind: List, JSON, syntax errors, error sources, the kind registry."""

from __future__ import annotations

import json

import pytest

from libcalico.errors import MultiValidationError, ValidationError
from libcalico.resources import (
    GlobalNetworkPolicy,
    IPPool,
    NetworkPolicy,
    Tier,
    all_kinds,
    kind_class,
    kind_for_plural,
    load_documents,
    lookup_kind,
    parse_resource,
)

POOL = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: {name}\nspec:\n  cidr: {cidr}\n"

# calicoctl's resource manager (calicoctl/calicoctl/resourcemgr/*.go): kind -> accepted names.
CALICOCTL_ALIASES = {
    "NetworkPolicy": ["networkpolicy", "networkpolicies", "policy", "np", "policies", "pol", "pols"],
    "GlobalNetworkPolicy": ["globalnetworkpolicy", "globalnetworkpolicies", "gnp", "gnps"],
    "StagedNetworkPolicy": ["stagednetworkpolicy", "stagednetworkpolicies", "stagedpolicy", "snp",
                            "stagedpolicies", "spol", "spols"],
    "StagedGlobalNetworkPolicy": ["stagedglobalnetworkpolicy", "stagedglobalnetworkpolicies", "sgnp", "sgnps"],
    "NetworkSet": ["networkset", "networksets", "netsets"],
    "GlobalNetworkSet": ["globalnetworkset", "globalnetworksets"],
    "HostEndpoint": ["hostendpoint", "hostendpoints", "hep", "heps"],
    "WorkloadEndpoint": ["workloadendpoint", "workloadendpoints", "wep", "weps"],
    "IPPool": ["ippool", "ippools", "ipp", "ipps", "pool", "pools"],
    "IPReservation": ["ipreservation", "ipreservations", "reservation", "reservations"],
    "IPAMConfiguration": ["ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"],
    "BGPPeer": ["bgppeer", "bgppeers", "bgpp", "bgpps", "bp", "bps"],
    "BGPConfiguration": ["bgpconfiguration", "bgpconfigurations", "bgpconfig", "bgpconfigs"],
    "FelixConfiguration": ["felixconfiguration", "felixconfigurations", "felixconfig", "felixconfigs"],
    "Node": ["node", "nodes", "no", "nos"],
    "Profile": ["profile", "profiles", "pro", "pros"],
    "Tier": ["tier", "tiers"],
    "ClusterInformation": ["clusterinformation", "clusterinformations", "clusterinfo", "clusterinfos"],
    "KubeControllersConfiguration": ["kubecontrollersconfiguration", "kubecontrollersconfigurations",
                                     "kubecontrollersconfig", "kubecontrollersconfigs"],
}
NAMESPACED = {"NetworkPolicy", "StagedNetworkPolicy", "NetworkSet", "WorkloadEndpoint"}


def test_registry_has_exactly_the_nineteen_kinds() -> None:
    kinds = {cls.KIND.kind for cls in all_kinds()}
    assert kinds == set(CALICOCTL_ALIASES)
    assert {cls.KIND.kind for cls in all_kinds() if cls.KIND.namespaced} == NAMESPACED


@pytest.mark.parametrize("kind", sorted(CALICOCTL_ALIASES))
def test_calicoctl_aliases_resolve_case_insensitively(kind: str) -> None:
    cls = kind_class(kind)
    for alias in [*CALICOCTL_ALIASES[kind], kind, kind.upper()]:
        assert lookup_kind(alias) is cls
    assert lookup_kind(alias.upper()) is cls
    assert kind_for_plural(cls.KIND.plural) is cls


def test_unknown_alias_is_reported() -> None:
    with pytest.raises(ValidationError, match="resource type 'widgets' is not supported"):
        lookup_kind("widgets")


def test_multi_document_yaml_keeps_order_and_skips_empty_documents() -> None:
    text = POOL.format(name="a", cidr="10.1.0.0/16") + "---\n---\n" + POOL.format(name="b", cidr="10.2.0.0/16")
    pools = load_documents(text, "pools.yaml")
    assert [p.name for p in pools] == ["a", "b"]
    assert all(isinstance(p, IPPool) for p in pools)


def test_kind_list_is_expanded_in_order() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: projectcalico.org/v3\n  kind: Tier\n  metadata: {name: t1}\n  spec: {order: 10}\n"
        "- apiVersion: projectcalico.org/v3\n  kind: GlobalNetworkPolicy\n  metadata: {name: t1.p}\n"
        "  spec: {tier: t1}\n"
    )
    tier, policy = load_documents(text)
    assert isinstance(tier, Tier) and tier.spec.order == 10
    assert isinstance(policy, GlobalNetworkPolicy) and policy.spec.tier == "t1"


def test_error_in_list_item_names_document_and_item() -> None:
    text = (
        "apiVersion: v1\nkind: List\nitems:\n"
        "- apiVersion: projectcalico.org/v3\n  kind: Tier\n  metadata: {name: ok}\n"
        "- apiVersion: projectcalico.org/v3\n  kind: Tier\n  metadata: {name: Bad}\n"
    )
    with pytest.raises(ValidationError) as info:
        load_documents(text, "tiers.yaml")
    assert info.value.source == "tiers.yaml document 1 item 2"
    assert info.value.field == "metadata.name"


def test_list_without_items_is_an_error() -> None:
    with pytest.raises(ValidationError) as info:
        load_documents("apiVersion: v1\nkind: List\n", "l.yaml")
    assert info.value.field == "items"


def test_json_object_and_array_load() -> None:
    one = {"apiVersion": "projectcalico.org/v3", "kind": "NetworkPolicy",
           "metadata": {"name": "np", "namespace": "ns1"}, "spec": {"selector": "all()"}}
    (policy,) = load_documents(json.dumps(one), "np.json")
    assert isinstance(policy, NetworkPolicy) and policy.namespace == "ns1"
    two = load_documents(json.dumps([one, {**one, "metadata": {"name": "np2"}}]), "two.json")
    assert [p.name for p in two] == ["np", "np2"]


def test_yaml_syntax_error_gives_line_and_column() -> None:
    text = "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: [unclosed\nspec: {}\n"
    with pytest.raises(ValidationError) as info:
        load_documents(text, "broken.yaml")
    assert info.value.source == "broken.yaml"
    assert info.value.reason.startswith("invalid YAML at line 5 column 5: ")
    assert "expected ',' or ']'" in info.value.reason


def test_json_syntax_error_gives_line_and_column() -> None:
    with pytest.raises(ValidationError) as info:
        load_documents('{\n  "kind": "IPPool",\n  oops\n}', "broken.json")
    assert "invalid JSON at line 3 column 3" in info.value.reason
    assert str(info.value).startswith("broken.json: ")


def test_errors_in_several_documents_are_all_reported_and_nothing_is_returned() -> None:
    text = (POOL.format(name="ok", cidr="10.1.0.0/16") + "---\n" + POOL.format(name="bad", cidr="10.1.2.3/16")
            + "---\n" + POOL.format(name="Bad", cidr="10.3.0.0/16"))
    with pytest.raises(MultiValidationError) as info:
        load_documents(text, "pools.yaml")
    sources = [(e.source, e.field) for e in info.value.errors]
    assert sources == [("pools.yaml document 2", "spec.cidr"), ("pools.yaml document 3", "metadata.name")]
    assert "pools.yaml document 3: metadata.name:" in str(info.value)


def test_several_problems_in_one_document_are_all_reported() -> None:
    text = ("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: np}\nspec:\n"
            "  ingress:\n  - action: Nope\n  - action: Allow\n    protocol: TCP\n    destination: {ports: ['9:1']}\n"
            "  colour: blue\n")
    with pytest.raises(MultiValidationError) as info:
        load_documents(text, "np.yaml")
    fields = {e.field: e.reason for e in info.value.errors}
    assert fields == {
        "spec.ingress[0].action": "unknown action 'Nope' (expected Allow, Deny, Log or Pass)",
        "spec.ingress[1].destination.ports[0]": "port range 9:1 is reversed",
        "spec.colour": "unknown field",
    }
    assert all(e.source == "np.yaml document 1" for e in info.value.errors)


def test_document_that_is_not_a_map() -> None:
    with pytest.raises(ValidationError, match="a resource must be a map, not list"):
        load_documents("- a\n- b\n", "seq.yaml")


def test_parse_resource_requires_kind_and_metadata() -> None:
    with pytest.raises(ValidationError) as info:
        parse_resource({"apiVersion": "projectcalico.org/v3", "metadata": {"name": "x"}})
    assert info.value.field == "kind"
    with pytest.raises(ValidationError) as info:
        parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "Tier"})
    assert info.value.field == "metadata"


def test_constructing_models_in_python_uses_wire_names() -> None:
    policy = NetworkPolicy.model_validate({
        "metadata": {"name": "np", "namespace": "a"},
        "spec": {"ingress": [{"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 3}}]},
    })
    assert policy.spec.ingress is not None and policy.spec.ingress[0].notICMP is not None
    assert policy.to_dict()["spec"]["ingress"][0] == {"action": "Allow", "protocol": "ICMP", "notICMP": {"type": 3}}
    assert policy.identifier() == "NetworkPolicy(a/np)"
