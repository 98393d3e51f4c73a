"""Namespaces, namespaceSelector, global(), service accounts and label inheritance, as Calico scopes them."""

from __future__ import annotations

import pytest

from libcalico.oracle import Reason
from libcalico.oracle.scoping import entity_selectors, policy_selector
from libcalico.resources.rules import EntityRule
from libcalico.selector import parse

from .cluster import gnp, namespace_profile, np, pod, res, sa_profile, verdict

PROFILES = [namespace_profile("default"), namespace_profile("prod", {"env": "prod"}),
            namespace_profile("dev", {"env": "dev"})]
CLIENT = pod("client", "10.0.0.1", labels={"role": "client"})
SERVER = pod("server", "10.0.0.2", labels={"role": "server"})
PROD_CLIENT = pod("client", "10.0.1.1", namespace="prod", labels={"role": "client"})
DEV_CLIENT = pod("client", "10.0.2.1", namespace="dev", labels={"role": "client"})
ALL = [*PROFILES, CLIENT, SERVER, PROD_CLIENT, DEV_CLIENT]


def only_from(source: dict[str, object], namespace: str = "default", kind: str = "np") -> object:
    spec = {"selector": "role == 'server'", "ingress": [{"action": "Allow", "source": source}]}
    return np("only", spec, namespace) if kind == "np" else gnp("only", spec)


# ---------------------------------------------------------------- the rewritten selectors themselves


def test_network_policy_selector_is_limited_to_its_namespace() -> None:
    policy = np("p", {"selector": "app == 'web'"}, "prod")
    assert policy_selector(policy) == parse("(app == 'web') && projectcalico.org/namespace == 'prod'")  # type: ignore[arg-type]
    empty = np("p", {}, "prod")
    assert policy_selector(empty) == parse("projectcalico.org/namespace == 'prod'")  # type: ignore[arg-type]


def test_global_policy_namespace_selector_is_prefixed_and_all_means_any_namespace() -> None:
    policy = gnp("p", {"selector": "app == 'web'", "namespaceSelector": "env == 'prod'"})
    assert policy_selector(policy) == parse("(app == 'web') && pcns.env == 'prod'")  # type: ignore[arg-type]
    any_ns = gnp("p", {"namespaceSelector": "all()"})
    assert policy_selector(any_ns) == parse("has(projectcalico.org/namespace)")  # type: ignore[arg-type]


def test_service_account_selectors_are_prefixed() -> None:
    policy = gnp("p", {"serviceAccountSelector": "role == 'admin'"})
    assert policy_selector(policy) == parse("pcsa.role == 'admin'")  # type: ignore[arg-type]
    ns_policy = np("p", {"selector": "all()", "serviceAccountSelector": "all()"}, "prod")
    assert policy_selector(ns_policy) == parse(  # type: ignore[arg-type]
        "((all()) && projectcalico.org/namespace == 'prod') && all()")


@pytest.mark.parametrize(("entity", "namespace", "positive", "negated"), [
    ({"selector": "a == 'b'"}, "prod", "(projectcalico.org/namespace == 'prod') && (a == 'b')", None),
    ({"selector": "a == 'b'"}, "", "a == 'b'", None),
    ({"notSelector": "a == 'b'"}, "prod", "(projectcalico.org/namespace == 'prod') && (!(a == 'b'))", None),
    ({"notSelector": "a == 'b'"}, "", None, "a == 'b'"),
    ({"selector": "x == '1'", "notSelector": "a == 'b'"}, "",
     "(x == '1') && (!(a == 'b'))", None),
    ({"namespaceSelector": "env == 'dev'"}, "prod", "pcns.env == 'dev'", None),
    ({"namespaceSelector": "all()", "selector": "a == 'b'"}, "prod",
     "(has(projectcalico.org/namespace)) && (a == 'b')", None),
    ({"namespaceSelector": "global()"}, "", "!has(projectcalico.org/namespace)", None),
    ({"serviceAccounts": {"names": ["sa2", "sa1"]}}, "prod",
     "(projectcalico.org/namespace == 'prod') && (projectcalico.org/serviceaccount in {'sa1', 'sa2'})", None),
    ({"serviceAccounts": {"selector": "team == 'x'", "names": ["a"]}, "selector": "k == 'v'"}, "",
     "((pcsa.team == 'x') && (projectcalico.org/serviceaccount in {'a'})) && (k == 'v')", None),
    ({"nets": ["10.0.0.0/8"]}, "prod", None, None),
])
def test_rule_entity_selectors(entity: dict[str, object], namespace: str, positive: str | None,
                               negated: str | None) -> None:
    pos, neg = entity_selectors(EntityRule.model_validate(entity), namespace)
    assert (str(pos) if pos else None) == (str(parse(positive)) if positive else None)
    assert (str(neg) if neg else None) == (str(parse(negated)) if negated else None)


# ---------------------------------------------------------------- their effect on verdicts


def test_network_policy_applies_only_in_its_namespace() -> None:
    deny = np("deny", {"selector": "all()", "ingress": [{"action": "Deny"}]}, "prod")
    prod_server = pod("server", "10.0.1.2", namespace="prod", labels={"role": "server"})
    assert verdict([*ALL, prod_server, deny], "client", "server").allowed
    assert not verdict([*ALL, prod_server, deny], "prod/client", "prod/server").allowed


def test_network_policy_rule_selector_only_matches_its_own_namespace() -> None:
    resources = [*ALL, only_from({"selector": "role == 'client'"})]
    assert verdict(resources, "client", "server").allowed
    v = verdict(resources, "prod/client", "server")
    assert not v.allowed and v.ingress.reason is Reason.END_OF_TIER


def test_global_policy_rule_selector_matches_every_namespace() -> None:
    resources = [*ALL, only_from({"selector": "role == 'client'"}, kind="gnp")]
    assert verdict(resources, "prod/client", "server").allowed
    assert verdict(resources, "dev/client", "server").allowed


def test_not_selector_in_network_policy_is_namespace_limited_positive() -> None:
    # notSelector alone: positive becomes "in my namespace", the notSelector itself is global.
    resources = [*ALL, only_from({"notSelector": "role == 'server'"})]
    assert verdict(resources, "client", "server").allowed
    assert not verdict(resources, "prod/client", "server").allowed
    assert not verdict(resources, "192.0.2.1", "server").allowed


def test_not_selector_in_global_policy_matches_unknown_addresses() -> None:
    resources = [*ALL, only_from({"notSelector": "role == 'client'"}, kind="gnp")]
    assert verdict(resources, "192.0.2.1", "server").allowed
    assert not verdict(resources, "prod/client", "server").allowed


def test_namespace_selector_uses_namespace_profile_labels() -> None:
    resources = [*ALL, only_from({"namespaceSelector": "env == 'prod'"})]
    assert verdict(resources, "prod/client", "server").allowed
    assert not verdict(resources, "dev/client", "server").allowed
    assert not verdict(resources, "client", "server").allowed


def test_namespace_selector_by_namespace_name_label() -> None:
    resources = [*ALL, only_from({"namespaceSelector": "projectcalico.org/name == 'dev'",
                                  "selector": "role == 'client'"})]
    assert verdict(resources, "dev/client", "server").allowed
    assert not verdict(resources, "prod/client", "server").allowed


def test_namespace_selector_all_selects_every_namespace_but_no_global_set() -> None:
    gset = res("GlobalNetworkSet", "outside", {"nets": ["192.0.2.0/24"]}, labels={"role": "client"})
    resources = [*ALL, gset, only_from({"namespaceSelector": "all()", "selector": "role == 'client'"})]
    assert verdict(resources, "dev/client", "server").allowed
    assert not verdict(resources, "192.0.2.9", "server").allowed


def test_global_namespace_selector_matches_global_network_sets_not_pods() -> None:
    gset = res("GlobalNetworkSet", "outside", {"nets": ["192.0.2.0/24"]}, labels={"role": "client"})
    resources = [*ALL, gset, only_from({"namespaceSelector": "global()", "selector": "role == 'client'"})]
    assert verdict(resources, "192.0.2.9", "server").allowed
    assert not verdict(resources, "client", "server").allowed


def test_global_namespace_selector_matches_host_endpoints() -> None:
    hep = res("HostEndpoint", "node1-eth0", {"node": "node1", "interfaceName": "eth0",
                                             "expectedIPs": ["172.18.0.5"]}, labels={"role": "client"})
    resources = [*ALL, hep, only_from({"namespaceSelector": "global()", "selector": "role == 'client'"})]
    assert verdict(resources, "172.18.0.5", "server").allowed
    assert not verdict(resources, "172.18.0.6", "server").allowed


def test_network_set_in_namespace_matches_network_policy_selector() -> None:
    nset = res("NetworkSet", "partners", {"nets": ["198.51.100.0/24"]}, namespace="default",
               labels={"role": "partner"})
    other_ns = res("NetworkSet", "partners", {"nets": ["203.0.113.0/24"]}, namespace="prod",
                   labels={"role": "partner"})
    resources = [*ALL, nset, other_ns, only_from({"selector": "role == 'partner'"})]
    assert verdict(resources, "198.51.100.20", "server").allowed
    assert not verdict(resources, "203.0.113.20", "server").allowed


def test_network_set_inherits_namespace_labels() -> None:
    nset = res("NetworkSet", "partners", {"nets": ["198.51.100.0/24"]}, namespace="prod")
    resources = [*ALL, nset, only_from({"namespaceSelector": "env == 'prod'"})]
    assert verdict(resources, "198.51.100.20", "server").allowed


def test_global_policy_namespace_selector_selects_endpoints_by_namespace() -> None:
    deny_prod = gnp("deny-prod", {"namespaceSelector": "env == 'prod'", "ingress": [{"action": "Deny"}]})
    prod_server = pod("server", "10.0.1.2", namespace="prod", labels={"role": "server"})
    resources = [*ALL, prod_server, deny_prod]
    assert not verdict(resources, "client", "prod/server").allowed
    assert verdict(resources, "prod/client", "server").allowed


def test_service_account_names_and_selector() -> None:
    resources = [*ALL, sa_profile("default", "api", {"tier": "front"}), sa_profile("default", "batch"),
                 pod("api", "10.0.0.10", service_account="api"), pod("batch", "10.0.0.11", service_account="batch")]
    by_name = [*resources, only_from({"serviceAccounts": {"names": ["api"]}})]
    assert verdict(by_name, "api", "server").allowed
    assert not verdict(by_name, "batch", "server").allowed
    assert not verdict(by_name, "client", "server").allowed
    by_labels = [*resources, only_from({"serviceAccounts": {"selector": "tier == 'front'"}})]
    assert verdict(by_labels, "api", "server").allowed
    assert not verdict(by_labels, "batch", "server").allowed


def test_service_account_names_in_network_policy_stay_in_namespace() -> None:
    prod_api = pod("api", "10.0.1.10", namespace="prod", service_account="api")
    resources = [*ALL, sa_profile("prod", "api"), prod_api, only_from({"serviceAccounts": {"names": ["api"]}})]
    assert not verdict(resources, "prod/api", "server").allowed


def test_policy_service_account_selector() -> None:
    resources = [*ALL, sa_profile("default", "api", {"tier": "front"}),
                 pod("api", "10.0.0.10", labels={"role": "server"}, service_account="api"),
                 gnp("sa-deny", {"serviceAccountSelector": "tier == 'front'", "ingress": [{"action": "Deny"}]})]
    assert not verdict(resources, "client", "api").allowed
    assert verdict(resources, "client", "server").allowed


def test_endpoint_cannot_claim_another_namespace_with_pcns_labels() -> None:
    # Felix drops pcns./pcsa. labels from workload endpoints; the namespace label is Calico's.
    spoof = pod("spoof", "10.0.2.9", namespace="dev",
                labels={"pcns.env": "prod", "projectcalico.org/namespace": "prod"})
    resources = [*ALL, spoof, only_from({"namespaceSelector": "env == 'prod'"})]
    assert not verdict(resources, "dev/spoof", "server").allowed


def test_endpoint_labels_win_over_profile_labels_and_first_profile_wins() -> None:
    labels = res("Profile", "labels-1", {"labelsToApply": {"color": "red", "shape": "round"}})
    labels2 = res("Profile", "labels-2", {"labelsToApply": {"color": "blue", "size": "big"}})
    resources = [*ALL, labels, labels2,
                 pod("x", "10.0.0.20", profiles=["kns.default", "labels-1", "labels-2"], labels={"shape": "square"})]
    for source, expected in [({"selector": "color == 'red'"}, True), ({"selector": "size == 'big'"}, True),
                             ({"selector": "shape == 'square'"}, True), ({"selector": "shape == 'round'"}, False),
                             ({"selector": "color == 'blue'"}, False)]:
        assert verdict([*resources, only_from(source)], "x", "server").allowed is expected, source


def test_calico_adds_orchestrator_label() -> None:
    resources = [*ALL, pod("vm", "10.0.0.30", orchestrator="openstack"),
                 only_from({"selector": "projectcalico.org/orchestrator == 'k8s'"})]
    assert verdict(resources, "client", "server").allowed
    assert not verdict(resources, "vm", "server").allowed


def test_not_selector_is_folded_into_positive_selector_per_endpoint() -> None:
    # A network set covers the client's address too. With selector && !notSelector evaluated per
    # entity, the set (role=client, not excluded) keeps the address in the IP set: allowed.
    cover = res("NetworkSet", "cover", {"nets": ["10.0.0.0/24"]}, namespace="default", labels={"role": "client"})
    excluded = pod("excluded", "10.0.0.40", labels={"role": "client", "blocked": "yes"})
    resources = [*ALL, cover, excluded, only_from({"selector": "role == 'client'", "notSelector": "blocked == 'yes'"})]
    assert verdict(resources, "excluded", "server").allowed
    without_cover = [r for r in resources if r is not cover]
    assert not verdict(without_cover, "excluded", "server").allowed
