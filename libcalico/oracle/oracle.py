"""The policy oracle: which policy, rule, profile or default decides a flow, per direction.

How it works::

    resources ──► Inventory (labels, addresses, named ports: what selectors match)
              ──► tiers in order, each with its policies in order (staged, doNotTrack, preDNAT left out)
              ──► profiles (+ projectcalico-default-allow, which Calico always provides)

    evaluate(flow):  egress of the source endpoint (if the source is one)
                     ingress of the destination endpoint
      per direction:  for each tier with a policy whose selector and types apply:
                          rules in order: Allow/Deny decide, Pass → next tier, Log → go on
                          no rule decided → tier default (Deny, or Pass → next tier)
                      then the endpoint's profiles in order: Allow/Deny decide, Pass → next profile,
                          a missing profile denies
                      nothing allowed → deny

Pure: no I/O, no logging. See docs/oracle.md for the semantics and their sources in Calico.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from libcalico.oracle.errors import AmbiguousFlow, FlowError
from libcalico.oracle.flow import (
    ICMP_PROTOCOLS,
    PORT_PROTOCOLS,
    Flow,
    IPNetwork,
    Packet,
    parse_address,
    protocol_text,
)
from libcalico.oracle.inventory import Entity, Inventory, Tri
from libcalico.oracle.policies import CompiledPolicy, TierInfo, compile_policy, ordered_tiers
from libcalico.oracle.rules import CompiledRule
from libcalico.oracle.verdict import Decision, FlowSummary, Reason, Verdict
from libcalico.resources.base import Resource
from libcalico.resources.endpoint import HostEndpoint, WorkloadEndpoint
from libcalico.resources.networkset import GlobalNetworkSet, NetworkSet
from libcalico.resources.policy import GlobalNetworkPolicy, NetworkPolicy, Tier
from libcalico.resources.profile import Profile, ProfileSpec
from libcalico.resources.rules import Rule

DEFAULT_ALLOW_PROFILE = "projectcalico-default-allow"


@dataclass(frozen=True)
class _Profile:
    name: str
    ingress: tuple[CompiledRule, ...]
    egress: tuple[CompiledRule, ...]

    def rules(self, direction: str) -> tuple[CompiledRule, ...]:
        return self.ingress if direction == "ingress" else self.egress


def _compile_profile(profile: Profile) -> _Profile:
    spec = profile.spec
    return _Profile(profile.metadata.name,
                    tuple(CompiledRule.compile(r, i, "") for i, r in enumerate(spec.ingress or ())),
                    tuple(CompiledRule.compile(r, i, "") for i, r in enumerate(spec.egress or ())))


def _means_icmp(flow: Flow) -> bool:
    """Whether the flow names its protocol "icmp" (which on an IPv6 flow means ICMPv6, as ping does)."""
    return isinstance(flow.protocol, str) and flow.protocol.strip().lower() == "icmp"


def _default_allow() -> Profile:
    return Profile.model_validate({
        "metadata": {"name": DEFAULT_ALLOW_PROFILE},
        "spec": ProfileSpec(ingress=[Rule(action="Allow")], egress=[Rule(action="Allow")]).to_dict(),
    })


class Oracle:
    """Explains flows against one snapshot of the datastore."""

    def __init__(self, resources: Iterable[Resource], default_namespace: str = "default") -> None:
        self.default_namespace = default_namespace
        weps: dict[tuple[str, str], WorkloadEndpoint] = {}
        heps: dict[str, HostEndpoint] = {}
        profiles: dict[str, Profile] = {}
        tiers: dict[str, Tier] = {}
        policies: dict[tuple[str, str, str], NetworkPolicy | GlobalNetworkPolicy] = {}
        netsets: dict[tuple[str, str], NetworkSet] = {}
        gnetsets: dict[str, GlobalNetworkSet] = {}
        for res in resources:
            ns = res.metadata.namespace or "default"
            if isinstance(res, WorkloadEndpoint):
                weps[(ns, res.name)] = res
            elif isinstance(res, HostEndpoint):
                heps[res.name] = res
            elif isinstance(res, Profile):
                profiles[res.name] = res
            elif isinstance(res, Tier):
                tiers[res.name] = res
            elif isinstance(res, NetworkPolicy):
                policies[("NetworkPolicy", ns, res.name)] = res
            elif isinstance(res, GlobalNetworkPolicy):
                policies[("GlobalNetworkPolicy", "", res.name)] = res
            elif isinstance(res, NetworkSet):
                netsets[(ns, res.name)] = res
            elif isinstance(res, GlobalNetworkSet):
                gnetsets[res.name] = res
            # Staged policies are not enforced; other kinds do not take part in policy.
        profiles.setdefault(DEFAULT_ALLOW_PROFILE, _default_allow())
        self._weps = weps
        self._inventory = Inventory.build(weps.values(), heps.values(), netsets.values(), gnetsets.values(), profiles)
        self._entities = {e.name: e for e in self._inventory.entities if e.kind == "WorkloadEndpoint"}
        self._profiles = {name: _compile_profile(p) for name, p in profiles.items()}
        compiled = [c for c in (compile_policy(p) for p in policies.values()) if c is not None]
        self._tiers = ordered_tiers(tiers.values(), compiled)
        self._applicable: dict[tuple[str, str], list[tuple[TierInfo, list[CompiledPolicy]]]] = {}
        pods: dict[tuple[str, str], int] = {}
        for (ns, _), wep in weps.items():
            if wep.spec.pod:
                pods[(ns, wep.spec.pod)] = pods.get((ns, wep.spec.pod), 0) + 1
        self._pod_counts = pods

    @classmethod
    def from_resources(cls, resources: Iterable[Resource], default_namespace: str = "default") -> Oracle:
        """Build an oracle from typed resources (other kinds, and staged policies, are ignored)."""
        return cls(resources, default_namespace)

    # ------------------------------------------------------------------ endpoints

    def display_name(self, wep: WorkloadEndpoint) -> str:
        """``namespace/pod`` when the pod has one endpoint, else ``namespace/endpoint-name``."""
        ns = wep.metadata.namespace or "default"
        if wep.spec.pod and self._pod_counts.get((ns, wep.spec.pod)) == 1:
            return f"{ns}/{wep.spec.pod}"
        return f"{ns}/{wep.metadata.name}"

    def endpoint_names(self) -> list[str]:
        """The display names of every workload endpoint, sorted."""
        return sorted(self.display_name(w) for w in self._weps.values())

    def endpoint(self, ref: WorkloadEndpoint | str, namespace: str | None = None) -> WorkloadEndpoint:
        """Find a workload endpoint by object, ``ns/name`` or ``name`` (its name or its pod); raise FlowError."""
        if isinstance(ref, WorkloadEndpoint):
            key = (ref.metadata.namespace or "default", ref.metadata.name)
            if key not in self._weps:
                raise FlowError(f"WorkloadEndpoint {key[0]}/{key[1]} is not among the oracle's resources")
            return self._weps[key]
        text = ref.strip()
        ns = namespace or self.default_namespace
        if "/" in text:
            ns, text = text.split("/", 1)
        by_name = self._weps.get((ns, text))
        if by_name is not None:
            return by_name
        by_pod = [w for (wns, _), w in self._weps.items() if wns == ns and w.spec.pod == text]
        if len(by_pod) == 1:
            return by_pod[0]
        if by_pod:
            names = ", ".join(sorted(w.metadata.name for w in by_pod))
            raise FlowError(f"pod {ns}/{text} has several WorkloadEndpoints ({names}); name one of them")
        raise FlowError(f"no WorkloadEndpoint named {text!r} or for pod {text!r} in namespace {ns!r}")

    # ------------------------------------------------------------------ evaluation

    def evaluate(self, flow: Flow, namespace: str | None = None) -> Verdict:
        """The verdict for a flow and, per direction, exactly what decided it."""
        src_wep, src_net, dst = self._ends(flow, namespace)
        packet = self._packet(flow, src_wep, src_net, dst)
        notes: list[str] = []
        src_address = str(packet.source.network_address if packet.source.num_addresses == 1 else packet.source)
        src_name = self.display_name(src_wep) if src_wep is not None else src_address
        summary = FlowSummary(src_name, src_address,
                              self.display_name(dst), str(packet.destination.network_address),
                              protocol_text(packet.protocol), packet.describe())
        if src_wep is dst:
            same = {d: Decision(d, summary.destination, True, Reason.SAME_ENDPOINT) for d in ("egress", "ingress")}
            return Verdict(summary, True, same["egress"], same["ingress"])
        if src_wep is None:
            owners = [w for w in self._weps.values() if any(
                packet.source.subnet_of(n) for n in self._entity(w).nets if n.version == packet.version)]  # type: ignore[arg-type]
            if owners:
                notes.append(f"{packet.source} is the address of {self.display_name(owners[0])}: name the "
                             "endpoint as the source to also evaluate its egress policy")
        egress = self._decide("egress", src_wep, packet, notes) if src_wep is not None else None
        ingress = self._decide("ingress", dst, packet, notes)
        allowed = ingress.allowed and (egress is None or egress.allowed)
        return Verdict(summary, allowed, egress, ingress, tuple(dict.fromkeys(notes)))

    def matrix(self, pods: Sequence[WorkloadEndpoint | str] | None = None, protocol: int | str = "tcp",
               port: int | None = None, *, icmp_type: int | None = None, icmp_code: int | None = None,
               include_self: bool = False) -> dict[tuple[str, str], Verdict]:
        """The verdict for every (source, destination) pair of pods, keyed by the references given.

        For ICMP the type defaults to echo request (what ping sends). Pairs that share no IP
        version are left out.
        """
        refs = list(pods) if pods is not None else self.endpoint_names()
        keys = [r if isinstance(r, str) else self.display_name(r) for r in refs]
        families = {k: {n.version for n in self._entity(self.endpoint(r)).nets} for k, r in zip(keys, refs, strict=True)}
        out: dict[tuple[str, str], Verdict] = {}
        for src_key, src in zip(keys, refs, strict=True):
            for dst_key, dst in zip(keys, refs, strict=True):
                if (src_key == dst_key and not include_self) or not families[src_key] & families[dst_key]:
                    continue
                flow = Flow(src, dst, protocol, port=port, icmp_type=icmp_type, icmp_code=icmp_code)
                out[(src_key, dst_key)] = self.evaluate(self.with_echo_request(flow))
        return out

    def with_echo_request(self, flow: Flow, namespace: str | None = None) -> Flow:
        """The flow, with ICMP type echo request (8, or 128 for ICMPv6) when it is ICMP without a type."""
        proto = flow.protocol_number
        if proto not in ICMP_PROTOCOLS or flow.icmp_type is not None:
            return flow
        src_wep, src_net, dst = self._ends(flow, namespace)
        version = self._version(flow, src_wep, src_net, dst)
        icmpv6 = proto == 58 or (version == 6 and _means_icmp(flow))
        return dataclasses.replace(flow, icmp_type=128 if icmpv6 else 8)

    def _ends(self, flow: Flow, namespace: str | None) -> tuple[WorkloadEndpoint | None, IPNetwork | None,
                                                                 WorkloadEndpoint]:
        dst = self.endpoint(flow.destination, namespace)
        if isinstance(flow.source, str):
            address = parse_address(flow.source)
            if address is not None:
                return None, address, dst
        return self.endpoint(flow.source, namespace), None, dst

    def _version(self, flow: Flow, src_wep: WorkloadEndpoint | None, src_net: IPNetwork | None,
                 dst: WorkloadEndpoint) -> int:
        dst_versions = {n.version for n in self._entity(dst).nets}
        version: int
        if src_net is not None:
            version = src_net.version
            if flow.ip_version not in (None, version):
                raise FlowError(f"source {src_net} is IPv{version} but the flow asks for IPv{flow.ip_version}")
        else:
            assert src_wep is not None
            common = dst_versions & {n.version for n in self._entity(src_wep).nets}
            if flow.ip_version is not None:
                version = flow.ip_version
            elif common:
                version = 4 if 4 in common else 6
            else:
                raise FlowError(f"{self.display_name(src_wep)} and {self.display_name(dst)} share no IP version")
        if version not in dst_versions:
            raise FlowError(f"{self.display_name(dst)} has no IPv{version} address")
        return version

    def _packet(self, flow: Flow, src_wep: WorkloadEndpoint | None, src_net: IPNetwork | None,
                dst: WorkloadEndpoint) -> Packet:
        version = self._version(flow, src_wep, src_net, dst)
        destination = next(n for n in self._entity(dst).nets if n.version == version)
        if src_wep is not None:
            source_nets = [n for n in self._entity(src_wep).nets if n.version == version]
            if not source_nets:
                raise FlowError(f"{self.display_name(src_wep)} has no IPv{version} address")
            source: IPNetwork = source_nets[0]
        else:
            assert src_net is not None
            source = src_net
        proto = flow.protocol_number
        if version == 6 and _means_icmp(flow):
            proto = 58  # "icmp" on an IPv6 flow means ICMPv6 (ping6).
        if proto not in PORT_PROTOCOLS and (flow.port is not None or flow.source_port is not None):
            raise FlowError(f"ports only apply to tcp, udp and sctp, not {protocol_text(proto)}")
        if proto not in ICMP_PROTOCOLS and flow.icmp_type is not None:
            raise FlowError(f"ICMP type and code only apply to icmp, not {protocol_text(proto)}")
        return Packet(version, proto, source, destination, flow.source_port, flow.port,
                      flow.icmp_type, flow.icmp_code)

    def _entity(self, wep: WorkloadEndpoint) -> Entity:
        key = f"{wep.metadata.namespace or 'default'}/{wep.metadata.name}"
        entity = self._entities.get(key)
        if entity is None:
            raise FlowError(f"WorkloadEndpoint {key} has no ipNetworks: Felix does not police it")
        return entity

    def _applying(self, direction: str, wep: WorkloadEndpoint) -> list[tuple[TierInfo, list[CompiledPolicy]]]:
        entity = self._entity(wep)
        key = (direction, entity.name)
        cached = self._applicable.get(key)
        if cached is None:
            cached = []
            for tier, policies in self._tiers:
                applying = [p for p in policies if p.governs(direction) and p.selector.evaluate(entity.labels)]
                if applying:
                    cached.append((tier, applying))
            self._applicable[key] = cached
        return cached

    def _decide(self, direction: str, wep: WorkloadEndpoint, packet: Packet, notes: list[str]) -> Decision:
        name = self.display_name(wep)
        trail: list[str] = []
        applied = self._applying(direction, wep)
        for tier, policies in applied:
            passed = False
            for policy in policies:
                where = f"{direction}: {policy.display} (tier {tier.name})"
                outcome = self._run_rules(policy.rules(direction), packet, where, trail, notes)
                if outcome is None:
                    continue
                rule, action = outcome
                if action == "Pass":
                    trail.append(f"{policy.display} (tier {tier.name}) rule {rule.index} Pass")
                    passed = True
                    break
                return Decision(direction, name, action == "Allow", Reason.RULE, tier=tier.name,
                                policy=policy.display, policy_kind=policy.kind, rule_index=rule.index,
                                policies_applied=True, trail=tuple(trail))
            if passed:
                continue
            if tier.default_action == "Pass":
                trail.append(f"end of tier '{tier.name}' (default action Pass)")
                continue
            return Decision(direction, name, False, Reason.END_OF_TIER, tier=tier.name, policies_applied=True,
                            trail=tuple(trail))
        policies_applied = bool(applied)
        for profile_name in wep.spec.profiles or ():
            profile = self._profiles.get(profile_name)
            if profile is None:
                return Decision(direction, name, False, Reason.PROFILE_MISSING, profile=profile_name,
                                policies_applied=policies_applied, trail=tuple(trail))
            outcome = self._run_rules(profile.rules(direction), packet, f"{direction}: profile {profile_name}",
                                      trail, notes)
            if outcome is None:
                continue
            rule, action = outcome
            if action == "Pass":
                trail.append(f"profile {profile_name} rule {rule.index} Pass")
                continue
            return Decision(direction, name, action == "Allow", Reason.PROFILE_RULE, profile=profile_name,
                            rule_index=rule.index, policies_applied=policies_applied, trail=tuple(trail))
        return Decision(direction, name, False, Reason.DEFAULT_DENY, policies_applied=policies_applied,
                        trail=tuple(trail))

    def _run_rules(self, rules: Iterable[CompiledRule], packet: Packet, where: str, trail: list[str],
                   notes: list[str]) -> tuple[CompiledRule, str] | None:
        """The first rule that decides (Allow, Deny or Pass) and its action; None when none does."""
        for rule in rules:
            tri, reason = rule.match(packet, self._inventory)
            if rule.action == "Log":
                if tri is Tri.YES:
                    trail.append(f"{where.split(': ', 1)[1]} rule {rule.index} Log")
                continue
            if tri is Tri.MAYBE:
                raise AmbiguousFlow(f"{where} rule {rule.index} {rule.action}", reason)
            if tri is Tri.YES:
                if rule.http:
                    notes.append(f"{where.split(': ', 1)[1]} rule {rule.index} has an HTTP match, which only the "
                                 "application layer enforces; the dataplane matches the rest of the rule")
                return rule, rule.action
        return None
