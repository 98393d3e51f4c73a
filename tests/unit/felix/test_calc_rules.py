"""Rule compilation and selector scoping: v3 rules → dataplane rules with IP-set ids."""

from __future__ import annotations

from typing import Any

import pytest

from libcalico.resources import Rule as V3Rule
from libcalico.resources.rules import EntityRule, ServiceAccountMatch
from libcalico.selector import make_unique_id, parse
from services.felix.calc.ipsets import IPSetDef
from services.felix.calc.rules import compile_rule, compile_rules, deny_all, normalise_net
from services.felix.calc.scoping import entity_selector, namespace_scope, policy_selector
from services.felix.messages import IPSetType, PortRange


def rule(**fields: Any) -> V3Rule:
    return V3Rule.model_validate(fields)


def compile_one(namespace: str | None = None, **fields: Any) -> tuple[Any, dict[str, IPSetDef]]:
    sets: dict[str, IPSetDef] = {}
    out = compile_rule(rule(**fields), namespace, "x/ingress/0", sets)
    return out, sets


def sel_id(text: str) -> str:
    return parse(text).unique_id()


# ----------------------------------------------------------------- scoping


def test_namespace_selector_gets_pcns_prefix() -> None:
    assert namespace_scope("team == 'a' && has(env)") == '(pcns.team == "a" && has(pcns.env))'


def test_namespace_selector_all_means_any_namespaced_thing() -> None:
    assert namespace_scope("all()") == "has(projectcalico.org/namespace)"


def test_namespace_selector_global_means_nothing_namespaced() -> None:
    assert namespace_scope("global()") == "!has(projectcalico.org/namespace)"


def test_namespaced_rule_selector_is_scoped_to_the_policy_namespace() -> None:
    got = entity_selector(EntityRule(selector="app == 'db'"), "prod")
    assert got == parse("projectcalico.org/namespace == 'prod' && app == 'db'")


def test_global_rule_selector_is_not_scoped() -> None:
    assert entity_selector(EntityRule(selector="app == 'db'"), None) == parse("app == 'db'")
    assert entity_selector({"selector": "app == 'db'"}, None) == parse("app == 'db'")


def test_namespace_selector_replaces_the_policy_namespace() -> None:
    got = entity_selector(EntityRule(selector="app == 'db'", namespaceSelector="team == 'x'"), "prod")
    assert got == parse("pcns.team == 'x' && app == 'db'")


def test_nets_only_rule_has_no_selector_even_in_a_namespace() -> None:
    assert entity_selector(EntityRule(nets=["10.0.0.0/8"]), "prod") is None


def test_not_selector_alone_scopes_positive_side_to_namespace() -> None:
    assert str(entity_selector(EntityRule(notSelector="app == 'x'"), "prod")) == \
        "projectcalico.org/namespace == \"prod\""


def test_service_account_names_and_selector() -> None:
    got = entity_selector(EntityRule(serviceAccounts=ServiceAccountMatch(names=["b", "a"], selector="role == 'x'")),
                          None)
    assert got == parse("pcsa.role == 'x' && projectcalico.org/serviceaccount in {'a', 'b'}")


def test_network_policy_selector_scoped_to_namespace_and_service_accounts() -> None:
    got = policy_selector("app == 'web'", "prod", None, "role == 'fe'")
    assert got == parse("((app == 'web') && projectcalico.org/namespace == 'prod') && pcsa.role == 'fe'")
    assert got.evaluate({"app": "web", "projectcalico.org/namespace": "prod", "pcsa.role": "fe"})
    assert not got.evaluate({"app": "web", "projectcalico.org/namespace": "dev", "pcsa.role": "fe"})


def test_global_policy_namespace_selector_all_excludes_host_endpoints() -> None:
    got = policy_selector(None, None, "all()", None)
    assert got.evaluate({"projectcalico.org/namespace": "x"})
    assert not got.evaluate({"host": "yes"})


def test_global_policy_with_no_selector_selects_all() -> None:
    assert policy_selector(None, None).is_all


# ------------------------------------------------------------------- rules


def test_action_protocol_and_icmp() -> None:
    out, sets = compile_one(action="Deny", protocol="ICMP", icmp={"type": 8, "code": 0},
                            notICMP={"type": 3})
    assert (out.action, out.protocol, out.icmp_type, out.icmp_code, out.not_icmp_type) == ("deny", 1, 8, 0, 3)
    assert sets == {}


@pytest.mark.parametrize(("name", "number"), [("TCP", 6), ("UDP", 17), ("SCTP", 132), ("UDPLite", 136),
                                             ("ICMPv6", 58), (47, 47)])
def test_protocol_names_become_numbers(name: str | int, number: int) -> None:
    fields: dict[str, Any] = {"action": "Allow", "protocol": name}
    if name == "ICMPv6":
        fields["ipVersion"] = 6
    out, _ = compile_one(**fields)
    assert out.protocol == number


def test_pass_and_log_actions() -> None:
    assert compile_one(action="Pass")[0].action == "pass"
    assert compile_one(action="Log")[0].action == "log"


def test_not_protocol() -> None:
    assert compile_one(action="Allow", notProtocol="UDP")[0].not_protocol == 17


def test_ports_and_ranges() -> None:
    out, sets = compile_one(action="Allow", protocol="TCP",
                            destination={"ports": [80, "8000:8080"], "notPorts": [8081]},
                            source={"ports": ["1024:65535"]})
    assert out.dst_ports == (PortRange(80, 80), PortRange(8000, 8080))
    assert out.not_dst_ports == (PortRange(8081, 8081),)
    assert out.src_ports == (PortRange(1024, 65535),)
    assert sets == {}


def test_nets_are_normalised() -> None:
    out, _ = compile_one(action="Allow", source={"nets": ["10.1.0.0/16", "10.9.9.9"]},
                         destination={"notNets": ["192.168.0.0/24"]})
    assert out.src_nets == ("10.1.0.0/16", "10.9.9.9/32")
    assert out.not_dst_nets == ("192.168.0.0/24",)
    v6, _ = compile_one(action="Allow", destination={"nets": ["fd00:0::/64"]})
    assert v6.dst_nets == ("fd00::/64",)
    assert normalise_net("192.168.0.7") == "192.168.0.7/32"
    assert normalise_net("10.1.2.3/16") == "10.1.0.0/16"


def test_selector_becomes_one_ip_set() -> None:
    out, sets = compile_one(action="Allow", source={"selector": "app == 'db'"})
    want = sel_id('app == "db"')
    assert out.src_ip_set_ids == (want,)
    assert sets[want].type is IPSetType.NET
    assert str(sets[want].selector) == 'app == "db"'


def test_namespaced_selector_set_is_keyed_by_the_combined_selector() -> None:
    out, sets = compile_one("prod", action="Allow", source={"selector": "app == 'db'"})
    combined = parse("(projectcalico.org/namespace == 'prod') && (app == 'db')")
    assert out.src_ip_set_ids == (combined.unique_id(),)
    assert set(sets) == {combined.unique_id()}


def test_not_selector_folds_into_positive_selector() -> None:
    out, sets = compile_one(action="Allow", source={"selector": "app == 'db'", "notSelector": "env == 'dev'"})
    want = sel_id("(app == 'db') && (!(env == 'dev'))")
    assert out.src_ip_set_ids == (want,)
    assert out.not_src_ip_set_ids == ()
    assert set(sets) == {want}


def test_not_selector_alone_becomes_not_set() -> None:
    out, sets = compile_one(action="Deny", destination={"notSelector": "app == 'db'"})
    assert out.dst_ip_set_ids == ()
    assert out.not_dst_ip_set_ids == (sel_id("app == 'db'"),)


def test_named_port_set_keyed_by_selector_protocol_and_name() -> None:
    out, sets = compile_one(action="Allow", protocol="UDP", destination={"selector": "app == 'dns'",
                                                                         "ports": ["dns"]})
    sid = sel_id("app == 'dns'")
    want = make_unique_id("n", f"{sid},udp,dns")
    assert out.dst_named_port_ip_set_ids == (want,)
    # All ports are named: the plain selector set would be redundant, as in Calico.
    assert out.dst_ip_set_ids == ()
    defn = sets[want]
    assert (defn.named_port, defn.protocol, defn.type) == ("dns", "udp", IPSetType.IP_AND_PORT)


def test_named_and_numeric_ports_keep_selector_set() -> None:
    out, sets = compile_one(action="Allow", protocol="TCP", destination={"selector": "a == 'b'",
                                                                         "ports": ["http", 443]})
    assert out.dst_ip_set_ids == (sel_id("a == 'b'"),)
    assert out.dst_ports == (PortRange(443, 443),)
    assert len(out.dst_named_port_ip_set_ids) == 1
    assert len(sets) == 2


def test_named_port_without_selector_uses_all() -> None:
    out, sets = compile_one(action="Allow", protocol="TCP", destination={"ports": ["http"]})
    (defn,) = sets.values()
    assert defn.selector.is_all
    assert defn.id == make_unique_id("n", f"{parse('all()').unique_id()},tcp,http")


def test_negated_named_port_uses_positive_selector() -> None:
    out, sets = compile_one(action="Deny", protocol="SCTP", source={"selector": "x == 'y'", "notPorts": ["p"]})
    sid = sel_id("x == 'y'")
    want = make_unique_id("n", f"{sid},sctp,p")
    assert out.not_src_named_port_ip_set_ids == (want,)
    assert out.src_ip_set_ids == (sel_id("x == 'y'"),)


def test_http_allow_rule_is_left_out() -> None:
    out, sets = compile_one(action="Allow", http={"methods": ["GET"]})
    assert out is None and sets == {}


def test_service_allow_rule_is_left_out_but_deny_keeps_the_rest() -> None:
    allow, _ = compile_one(action="Allow", destination={"services": {"name": "web", "namespace": "x"}})
    assert allow is None
    deny, _ = compile_one(action="Deny", protocol="TCP",
                          destination={"services": {"name": "web", "namespace": "x"}})
    assert deny is not None and deny.action == "deny" and deny.protocol == 6


def test_compile_rules_ids_and_shared_sets() -> None:
    ingress = [rule(action="Allow", source={"selector": "a == 'b'"}),
               rule(action="Deny", source={"selector": "a == 'b'"})]
    egress = [rule(action="Allow", destination={"selector": "c == 'd'"})]
    out = compile_rules(ingress, egress, None, "gp")
    assert [r.rule_id for r in out.inbound] == ["gp/ingress/0", "gp/ingress/1"]
    assert [r.rule_id for r in out.outbound] == ["gp/egress/0"]
    assert {d.id for d in out.ipsets} == {sel_id("a == 'b'"), sel_id("c == 'd'")}


def test_deny_all_profile_rules() -> None:
    out = deny_all("kns.missing")
    assert [r.action for r in out.inbound + out.outbound] == ["deny", "deny"]
    assert all(r == type(r)(action="deny", rule_id=r.rule_id) for r in out.inbound + out.outbound)
