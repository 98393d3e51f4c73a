"""Endpoint chains and the static (base) chains of the ``inet calico`` table.

How a packet is judged (``A`` = accept mark bit, ``P`` = pass mark bit)::

    filter-FORWARD ─ iif cali* ─► vmap cali-from-wl-dispatch ─► cali-fw-<if> ─┐  miss (unknown cali*): drop
                   └ oif cali* ─► vmap cali-to-wl-dispatch   ─► cali-tw-<if> ─┤
                                                                               ▼
    cali-fw/tw/fh/th-<if>:  ct established,related accept · ct invalid drop · clear A,P
                            [failsafe jump] · per tier: clear P, jump each policy unless P,
                            (outbound) return if A · end of tier: drop unless P (tier default
                            Deny) · profiles: jump, (outbound) return if A · drop
    Inbound policy and profile chains (cali-pi-, cali-pri-) accept outright on allow: the
    to-workload and from-host-endpoint chains are the last word in their base chain.
    filter-INPUT  ─ iif cali* ─► cali-wl-to-host (fw chain, then defaultEndpointToHostAction)
                  └ vmap cali-from-hep-dispatch ─► cali-fh-<if> (or the all-interfaces chain)
    filter-OUTPUT ─ oif cali* accept (host → local workloads is not policed, as in Felix)
                  └ vmap cali-to-hep-dispatch ─► cali-th-<if> (or the all-interfaces chain)
    nat-POSTROUTING ─► cali-nat-outgoing: masquerade pool → outside all pools
"""

from __future__ import annotations

from collections.abc import Sequence

from services.felix.dataplane import names
from services.felix.dataplane.rulerender import RuleRenderer
from services.felix.dataplane.ruleset import BaseSpec, Chain, make_chain
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import TierInfo

FILTER_PRIORITY = 0
SRCNAT_PRIORITY = 100
_PROTO_NUMBERS = {"tcp": 6, "udp": 17, "sctp": 132}


def _mask_out(bits: int) -> str:
    return f"meta mark set meta mark & {(~bits) & 0xFFFFFFFF:#010x}"


def _is_set(bit: int) -> str:
    return f"meta mark & {bit:#010x} == {bit:#010x}"


def _is_clear(bit: int) -> str:
    return f"meta mark & {bit:#010x} == 0x00000000"


def endpoint_chain(name: str, renderer: RuleRenderer, tiers: Sequence[TierInfo], profiles: Sequence[str],
                   inbound: bool, failsafe: str | None = None,
                   prologue: Sequence[str] = ()) -> tuple[Chain, set[str]]:
    """One endpoint direction's chain and the policy/profile chains it jumps to.

    ``inbound`` picks ingress policies and inbound profile rules (to a
    workload, or into the host from a host interface); their chains accept
    outright, so no "return if accepted" follows the jumps.
    """
    accept, pass_ = renderer.accept, renderer.pass_
    deny = renderer.deny_verdict()
    rules = [
        "ct state established,related accept",
        "ct state invalid drop",
        _mask_out(accept | pass_),
    ]
    if failsafe:
        rules.append(f"jump {failsafe}")
    rules.extend(prologue)
    refs: set[str] = set()
    if_clear, accepted_return = f"{_is_clear(pass_)} ", f"{_is_set(accept)} return"  # once, not per policy
    for tier in tiers:
        policies = tier.ingress_policies if inbound else tier.egress_policies
        if not policies:
            continue
        rules.append(_mask_out(pass_))
        for policy in policies:
            target = names.policy_chain(tier.name, policy, inbound)
            refs.add(target)
            rules.append(f"{if_clear}jump {target}")
            if not inbound:
                rules.append(accepted_return)
        if tier.default_action.lower() != "pass":
            rules.append(f"{if_clear}{deny}")
    for profile in profiles:
        target = names.profile_chain(profile, inbound)
        refs.add(target)
        rules.append(f"jump {target}")
        if not inbound:
            rules.append(accepted_return)
    rules.append(deny)
    return make_chain(name, rules), refs


def workload_prologue(settings: DataplaneSettings, vxlan_on: bool, ipip_on: bool) -> list[str]:
    """Rules at the top of every from-workload chain: no tunnel packets out of a pod."""
    out = []
    if vxlan_on and not settings.allow_vxlan_from_workloads:
        out.append(f"udp dport {settings.vxlan_port} drop")
    if ipip_on and not settings.allow_ipip_from_workloads:
        out.append("meta l4proto 4 drop")
    return out


def _failsafe_rules(settings: DataplaneSettings, inbound: bool) -> list[str]:
    ports = settings.failsafe_inbound if inbound else settings.failsafe_outbound
    rules = []
    for entry in ports:
        proto = _PROTO_NUMBERS[entry.protocol.lower()]
        match = f"meta l4proto {proto} th dport {entry.port}"
        if entry.net:
            family = "ip6" if ":" in entry.net else "ip"
            match += f" {family} {'saddr' if inbound else 'daddr'} {entry.net}"
        rules.append(f"{match} accept")
    return rules


def static_chains(renderer: RuleRenderer, settings: DataplaneSettings, *, all_hep: bool, vxlan_on: bool
                  ) -> list[Chain]:
    """The base chains and the fixed helper chains."""
    accept = renderer.accept
    prefixes = settings.interface_prefixes
    forward: list[str] = []
    for p in prefixes:
        forward += [f'iifname "{p}*" {_mask_out(accept)}',
                    f'iifname "{p}*" iifname vmap @{names.MAP_FROM_WL}',
                    f'iifname "{p}*" {_is_clear(accept)} drop']
    for p in prefixes:
        forward += [f'oifname "{p}*" {_mask_out(accept)}',
                    f'oifname "{p}*" oifname vmap @{names.MAP_TO_WL}',
                    f'oifname "{p}*" {_is_clear(accept)} drop']
    for p in prefixes:
        forward += [f'iifname "{p}*" accept', f'oifname "{p}*" accept']

    inp = [f'iifname "{p}*" jump {names.CHAIN_WL_TO_HOST}' for p in prefixes]
    if vxlan_on:
        inp.append(f"udp dport {settings.vxlan_port} ip saddr @{names.SET_VXLAN_HOSTS} fib daddr type local accept")
    inp += ['iifname "lo" accept', _mask_out(accept), f"iifname vmap @{names.MAP_FROM_HEP}", f"{_is_set(accept)} accept"]
    if all_hep:
        inp += [f"jump {names.host_chain(names.ALL_INTERFACES, False)}", f"{_is_set(accept)} accept"]

    out = [f'oifname "{p}*" accept' for p in prefixes]
    out.append('oifname "lo" accept')
    if vxlan_on:
        out.append(f"udp dport {settings.vxlan_port} ip daddr @{names.SET_VXLAN_HOSTS} accept")
    out += [_mask_out(accept), f"oifname vmap @{names.MAP_TO_HEP}", f"{_is_set(accept)} accept"]
    if all_hep:
        out += [f"jump {names.host_chain(names.ALL_INTERFACES, True)}", f"{_is_set(accept)} accept"]

    to_host = [
        "meta nfproto ipv6 icmpv6 type { 130, 131, 132, 133, 135, 136, 143 } accept",
        "udp sport 68 udp dport 67 accept",
        _mask_out(accept),
        f"iifname vmap @{names.MAP_FROM_WL}",
        f"{_is_clear(accept)} drop",
    ]
    action = settings.default_endpoint_to_host_action
    to_host.append({"Drop": "drop", "Accept": "accept", "Return": "return"}[action])

    masq = "masquerade fully-random"
    if settings.nat_outgoing_address:
        masq_v4_stmt = f"snat ip to {settings.nat_outgoing_address}"
    else:
        masq_v4_stmt = masq
    nat = [
        f"ip saddr @{names.pool_set(4, True)} ip daddr != @{names.pool_set(4, False)} {masq_v4_stmt}",
        f"ip6 saddr @{names.pool_set(6, True)} ip6 daddr != @{names.pool_set(6, False)} {masq}",
    ]
    return [
        make_chain(names.CHAIN_FORWARD, forward, BaseSpec("filter", "forward", FILTER_PRIORITY)),
        make_chain(names.CHAIN_INPUT, inp, BaseSpec("filter", "input", FILTER_PRIORITY)),
        make_chain(names.CHAIN_OUTPUT, out, BaseSpec("filter", "output", FILTER_PRIORITY)),
        make_chain(names.CHAIN_POSTROUTING, [f"jump {names.CHAIN_NAT_OUTGOING}"],
                   BaseSpec("nat", "postrouting", SRCNAT_PRIORITY)),
        make_chain(names.CHAIN_WL_TO_HOST, to_host),
        make_chain(names.CHAIN_FAILSAFE_IN, _failsafe_rules(settings, True)),
        make_chain(names.CHAIN_FAILSAFE_OUT, _failsafe_rules(settings, False)),
        make_chain(names.CHAIN_NAT_OUTGOING, nat),
    ]


STATIC_SETS = (names.SET_VXLAN_HOSTS, names.pool_set(4, True), names.pool_set(4, False),
               names.pool_set(6, True), names.pool_set(6, False))
STATIC_MAPS = (names.MAP_FROM_WL, names.MAP_TO_WL, names.MAP_FROM_HEP, names.MAP_TO_HEP)
