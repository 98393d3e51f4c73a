"""Policy, profile, IP set, endpoint and pool messages → the desired ``inet calico`` table, incrementally.

How it works: each message re-renders only what it touches (one policy's two
chains, one endpoint's chains and dispatch-map entries, one IP set's two
nftables sets) into a :class:`DesiredTable`, which records the dirty names.
Policy and profile chains are rendered lazily: a message records the rules and
marks the chain pending; reading :attr:`FilterState.table` (or calling
:meth:`FilterState.render_pending`) renders what is pending, with the IP sets
as they are then. So a policy sent twice before an apply renders once, and the
driver can render while nft loads the sets (see :mod:`dataplane`).
References are counted: an endpoint chain that jumps to a policy or profile
chain we have not been told about gets a stub chain that drops (fail closed);
a rule that names an IP set we have not been sent gets an empty set, so a
batch never refers to something missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection

import structlog

from services.felix.dataplane import names
from services.felix.dataplane.chainrender import (
    STATIC_MAPS,
    endpoint_chain,
    static_chains,
    workload_prologue,
)
from services.felix.dataplane.errors import RenderError
from services.felix.dataplane.ipsets import IPSetMembers, MapDef, net_elements, setdef_for
from services.felix.dataplane.rulerender import RuleRenderer
from services.felix.dataplane.ruleset import Chain, DesiredTable, make_chain
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import (
    ActivePolicyRemove,
    ActivePolicyUpdate,
    ActiveProfileRemove,
    ActiveProfileUpdate,
    HostEndpoint,
    HostEndpointRemove,
    HostEndpointUpdate,
    IPAMPoolRemove,
    IPAMPoolUpdate,
    IPSetDeltaUpdate,
    IPSetRemove,
    IPSetUpdate,
    PolicyID,
    Rule,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)

log = structlog.get_logger("felix.dataplane.filter")

FilterMessage = (
    ActivePolicyUpdate | ActivePolicyRemove | ActiveProfileUpdate | ActiveProfileRemove | IPSetUpdate
    | IPSetDeltaUpdate | IPSetRemove | WorkloadEndpointUpdate | WorkloadEndpointRemove | HostEndpointUpdate
    | HostEndpointRemove | IPAMPoolUpdate | IPAMPoolRemove
)


class FilterState:
    """The desired filter and NAT table, kept up to date message by message."""

    def __init__(self, settings: DataplaneSettings) -> None:
        self.settings = settings
        self.renderer = RuleRenderer(settings, self._set_interval)
        self._table = DesiredTable()
        self.policies: dict[PolicyID, ActivePolicyUpdate] = {}
        self.profiles: dict[str, ActiveProfileUpdate] = {}
        self.ipsets: dict[str, IPSetMembers] = {}
        self.workloads: dict[WorkloadEndpointID, WorkloadEndpoint] = {}
        self.wl_claims: dict[str, set[WorkloadEndpointID]] = {}
        self.heps: dict[str, HostEndpoint] = {}
        self.pools: dict[str, IPAMPoolUpdate] = {}
        self.vxlan_on = False
        self.vxlan_hosts: frozenset[str] = frozenset()
        self.ipip_on = False
        self._render_errors: dict[str, str] = {}
        self.changed_ifaces: set[str] = set()  # workload interfaces whose owner changed (taken by the driver)
        self._explicit: dict[str, tuple[Chain, frozenset[str]]] = {}
        self._sources: dict[str, tuple[tuple[Rule, ...], str, bool]] = {}  # explicit chain → how to render it again
        self._pending: dict[str, None] = {}  # explicit chains to (re-)render, in arrival order
        self._chain_refs: Counter[str] = Counter()
        self._set_users: dict[str, set[str]] = {}  # nft set name → the explicit chains that match on it
        self._set_owner: dict[str, str] = {}  # nft set name → IP set id (long ids make hashed names)
        self._endpoint_deps: dict[str, frozenset[str]] = {}
        self._hep_keys: set[str] = set()
        for name in STATIC_MAPS:
            self._table.ensure_map(MapDef(name))
        self._render_static()
        self._render_pools()
        self._table.put_set(setdef_for(names.SET_VXLAN_HOSTS), frozenset())

    # Reading ---------------------------------------------------------------
    @property
    def table(self) -> DesiredTable:
        """The desired table, with every pending chain rendered."""
        if self._pending:
            self.render_pending()
        return self._table

    @property
    def unrendered_table(self) -> DesiredTable:
        """The desired table as it is now: pending policy and profile chains are not in it yet."""
        return self._table

    @property
    def render_errors(self) -> dict[str, str]:
        """Chain (or ``ipset <id>``) → why it could not be rendered (such chains drop)."""
        if self._pending:
            self.render_pending()
        return self._render_errors

    @property
    def pending(self) -> int:
        """How many policy and profile chains wait to be rendered."""
        return len(self._pending)

    @property
    def pending_chains(self) -> Collection[str]:
        """The policy and profile chains waiting to be rendered (a view)."""
        return self._pending.keys()

    @property
    def unknown_chains(self) -> set[str]:
        """The policy and profile chains an endpoint jumps to that no message brought yet (stubs that drop)."""
        return {name for name, count in self._chain_refs.items() if count > 0 and name not in self._sources}

    def unfilled_sets(self) -> set[str]:
        """The sets rules name whose IP set has not arrived (in the table, empty, until it does)."""
        unfilled = set()
        owner, ipsets = self._set_owner, self.ipsets
        for name in self._set_users:
            set_id = owner.get(name)
            members = ipsets.get(set_id) if set_id is not None else None
            if members is None or name not in members.set_names():
                unfilled.add(name)
        return unfilled

    def render_pending(self, limit: int | None = None) -> None:
        """Render pending policy and profile chains (at most ``limit`` of them; None: all)."""
        pending = self._pending
        count = len(pending) if limit is None else min(limit, len(pending))
        for _ in range(count):
            name = next(iter(pending))
            del pending[name]
            self._render_explicit(name)

    # Messages -------------------------------------------------------------
    def apply(self, msg: FilterMessage) -> None:
        """Fold one message into the desired table."""
        if isinstance(msg, ActivePolicyUpdate):
            self.policies[msg.id] = msg
            where = f"policy {msg.id.tier}/{msg.id.name}"
            self._set_explicit(names.policy_chain(msg.id.tier, msg.id.name, True), msg.inbound_rules, where + " inbound",
                               final=True)
            self._set_explicit(names.policy_chain(msg.id.tier, msg.id.name, False), msg.outbound_rules,
                               where + " outbound")
        elif isinstance(msg, ActivePolicyRemove):
            self.policies.pop(msg.id, None)
            self._drop_explicit(names.policy_chain(msg.id.tier, msg.id.name, True))
            self._drop_explicit(names.policy_chain(msg.id.tier, msg.id.name, False))
        elif isinstance(msg, ActiveProfileUpdate):
            self.profiles[msg.id] = msg
            self._set_explicit(names.profile_chain(msg.id, True), msg.inbound_rules, f"profile {msg.id} inbound",
                               final=True)
            self._set_explicit(names.profile_chain(msg.id, False), msg.outbound_rules, f"profile {msg.id} outbound")
        elif isinstance(msg, ActiveProfileRemove):
            self.profiles.pop(msg.id, None)
            self._drop_explicit(names.profile_chain(msg.id, True))
            self._drop_explicit(names.profile_chain(msg.id, False))
        elif isinstance(msg, IPSetUpdate | IPSetDeltaUpdate | IPSetRemove):
            self._apply_ipset(msg)
        elif isinstance(msg, WorkloadEndpointUpdate | WorkloadEndpointRemove):
            self._apply_workload(msg)
        elif isinstance(msg, HostEndpointUpdate):
            self.heps[msg.id] = msg.endpoint
            self._render_heps()
        elif isinstance(msg, HostEndpointRemove):
            self.heps.pop(msg.id, None)
            self._render_heps()
        elif isinstance(msg, IPAMPoolUpdate):
            self.pools[msg.id] = msg
            self._render_pools()
        elif isinstance(msg, IPAMPoolRemove):
            self.pools.pop(msg.id, None)
            self._render_pools()

    def set_settings(self, settings: DataplaneSettings) -> None:
        """New configuration: re-render everything that depends on it."""
        if settings == self.settings:
            return
        self.settings = settings
        self.renderer = RuleRenderer(settings, self._set_interval)
        for policy in list(self.policies.values()):
            self.apply(policy)
        for profile in list(self.profiles.values()):
            self.apply(profile)
        self._render_all_endpoints()

    def set_tunnels(self, vxlan_on: bool, vxlan_hosts: frozenset[str], ipip_on: bool) -> None:
        """VXLAN/IPIP state: which remote hosts may send us VXLAN, and whether pods may not send tunnels."""
        if vxlan_hosts != self.vxlan_hosts:
            self.vxlan_hosts = vxlan_hosts
            self._table.put_set(setdef_for(names.SET_VXLAN_HOSTS), net_elements(sorted(vxlan_hosts), 4))
        if (vxlan_on, ipip_on) != (self.vxlan_on, self.ipip_on):
            self.vxlan_on, self.ipip_on = vxlan_on, ipip_on
            self._render_all_endpoints()

    @property
    def workload_ifaces(self) -> dict[str, WorkloadEndpoint]:
        """Each programmed workload interface and the endpoint that owns it."""
        return {iface: self.workloads[min(ids, key=_id_key)] for iface, ids in self.wl_claims.items() if ids}

    # Policies and profiles --------------------------------------------------
    def _set_explicit(self, name: str, rules: tuple[Rule, ...], where: str, final: bool = False) -> None:
        """Want a policy or profile chain rendered from ``rules`` (``final``: an inbound chain, where
        ``allow`` accepts outright); it renders when the table is next read."""
        self._sources[name] = (rules, where, final)
        self._pending[name] = None

    def _render_explicit(self, name: str) -> None:
        rules, where, final = self._sources[name]
        try:
            rendered = self.renderer.render_rules(rules, where, final)
            chain = make_chain(name, rendered.rules)
            refs = frozenset(rendered.set_refs)
            self._render_errors.pop(name, None)
        except RenderError as exc:
            log.error("render failed", chain=name, error=str(exc))
            self._render_errors[name] = str(exc)
            chain, refs = make_chain(name, ["drop"]), frozenset()  # fail closed
        old = self._explicit.get(name)
        self._explicit[name] = (chain, refs)
        self._retarget_sets(name, old[1] if old else frozenset(), refs)
        self._refresh_chain(name)

    def _drop_explicit(self, name: str) -> None:
        old = self._explicit.pop(name, None)
        self._sources.pop(name, None)
        self._pending.pop(name, None)
        self._render_errors.pop(name, None)
        if old is not None:
            self._retarget_sets(name, old[1], frozenset())
        self._refresh_chain(name)

    def _retarget_sets(self, chain: str, old: frozenset[str], new: frozenset[str]) -> None:
        if old == new:
            return
        flipped: list[str] = []  # sets that gained their first user or lost their last: only they can change
        for name in new - old:
            users = self._set_users.setdefault(name, set())
            if not users:
                flipped.append(name)
            users.add(chain)
        for name in old - new:
            left = self._set_users.get(name)
            if left is not None:
                left.discard(chain)
                if not left:
                    del self._set_users[name]
                    flipped.append(name)
        for name in flipped:
            self._refresh_set(name)

    def _refresh_chain(self, name: str) -> None:
        if name in self._pending:
            return  # its render puts it
        explicit = self._explicit.get(name)
        if explicit is not None:
            self._table.put_chain(explicit[0])
        elif self._chain_refs.get(name, 0) > 0:
            self._table.put_chain(make_chain(name, ["drop"]))  # referenced but unknown: fail closed
        else:
            self._table.drop_chain(name)

    # IP sets ----------------------------------------------------------------
    def _apply_ipset(self, msg: IPSetUpdate | IPSetDeltaUpdate | IPSetRemove) -> None:
        old = self.ipsets.get(msg.id)
        old_names = old.set_names() if old is not None else ()  # (an empty IPSetMembers is falsy)
        try:
            if isinstance(msg, IPSetUpdate):
                members = old if old is not None and old.type is msg.type else IPSetMembers(msg.type, msg.id)
                members.replace(msg.members)
                self.ipsets[msg.id] = members
            elif isinstance(msg, IPSetDeltaUpdate):
                if old is None:
                    log.error("delta for unknown ip set", set_id=msg.id)
                    return
                old.update(msg.added, msg.removed)
            else:
                self.ipsets.pop(msg.id, None)
        except RenderError as exc:
            log.error("bad ip set member", set_id=msg.id, error=str(exc))
            self._render_errors[f"ipset {msg.id}"] = str(exc)
            return
        current = self.ipsets.get(msg.id)
        variants = current.variants if current is not None else names.ipset_variants(msg.id)
        now: tuple[str, ...] = current.set_names() if current is not None else ()
        # Rules must name the set of the kind the members need now (plain or interval; an unknown id:
        # plain): re-render the chains that name another kind (the set gained its first net, lost its
        # last one, or went away), so the table is the same whatever the history.
        if current is not None:
            self._set_owner.update(dict.fromkeys(variants, msg.id))
            unneeded = [name for name in variants if name not in now]
        else:
            unneeded = [names.ipset_name(msg.id, version, False, True) for version in (4, 6)]
        users = self._set_users
        stale = {chain for name in unneeded if name in users for chain in users[name]}
        for chain in sorted(stale):
            self._set_explicit(chain, *self._sources[chain])
        if current is not None:  # (its two sets directly: 649 sets, ~3 ms less than _refresh_set's look-ups)
            self._table.put_set(setdef_for(now[0]), current.elements(4))
            self._table.put_set(setdef_for(now[1]), current.elements(6))
        for name in old_names:
            if name not in now:
                self._refresh_set(name)
        if current is None:
            for name in variants:
                self._set_owner.pop(name, None)

    def _set_interval(self, set_id: str, version: int) -> bool:
        members = self.ipsets.get(set_id)
        return members is not None and members.interval(version)

    def _refresh_set(self, name: str) -> None:
        set_id = self._set_owner.get(name)
        members = self.ipsets.get(set_id) if set_id is not None else None
        if members is not None and name in members.set_names():
            self._table.put_set(setdef_for(name), members.elements(4 if name.startswith("cali4") else 6))
        elif name in self._set_users:
            self._table.put_set(setdef_for(name), frozenset())  # referenced but unknown (or no longer): empty
        else:
            self._table.drop_set(name)

    # Endpoints --------------------------------------------------------------
    def _apply_workload(self, msg: WorkloadEndpointUpdate | WorkloadEndpointRemove) -> None:
        old = self.workloads.get(msg.id)
        touched = {old.name} if old else set()
        if isinstance(msg, WorkloadEndpointUpdate):
            self.workloads[msg.id] = msg.endpoint
            touched.add(msg.endpoint.name)
        else:
            self.workloads.pop(msg.id, None)
        if old is not None:
            self.wl_claims.get(old.name, set()).discard(msg.id)
        if isinstance(msg, WorkloadEndpointUpdate):
            self.wl_claims.setdefault(msg.endpoint.name, set()).add(msg.id)
        self.changed_ifaces |= touched
        for iface in touched:
            if len(self.wl_claims.get(iface, ())) > 1:
                log.warning("interface claimed by several endpoints", iface=iface,
                            endpoints=sorted(str(i) for i in self.wl_claims[iface]))
            self._render_workload(iface)
            if not self.wl_claims.get(iface):
                self.wl_claims.pop(iface, None)

    def _render_workload(self, iface: str) -> None:
        tw, fw = names.workload_chain(iface, True), names.workload_chain(iface, False)
        ids = self.wl_claims.get(iface)
        if not ids or not names.valid_iface(iface):
            if ids:
                log.error("invalid workload interface name", iface=iface)
            for chain in (tw, fw):
                self._uninstall_endpoint_chain(chain)
            self._table.put_map_entry(MapDef(names.MAP_TO_WL), iface, None)
            self._table.put_map_entry(MapDef(names.MAP_FROM_WL), iface, None)
            return
        endpoint = self.workloads[min(ids, key=_id_key)]
        prologue = workload_prologue(self.settings, self.vxlan_on, self.ipip_on)
        self._install_endpoint_chain(*endpoint_chain(tw, self.renderer, endpoint.tiers, endpoint.profile_ids, True))
        self._install_endpoint_chain(*endpoint_chain(fw, self.renderer, endpoint.tiers, endpoint.profile_ids, False,
                                                     prologue=prologue))
        self._table.put_map_entry(MapDef(names.MAP_TO_WL), iface, f"jump {tw}")
        self._table.put_map_entry(MapDef(names.MAP_FROM_WL), iface, f"jump {fw}")

    def _render_heps(self) -> None:
        by_key: dict[str, str] = {}
        for hep_id in sorted(self.heps):
            iface = self.heps[hep_id].name
            if iface == "*":
                by_key.setdefault(names.ALL_INTERFACES, hep_id)
            elif iface and names.valid_iface(iface):
                by_key.setdefault(iface, hep_id)
            else:
                log.warning("host endpoint without a usable interfaceName is not programmed", hep=hep_id,
                            iface=iface)
        for key in self._hep_keys - set(by_key):
            for chain in (names.host_chain(key, True), names.host_chain(key, False)):
                self._uninstall_endpoint_chain(chain)
            if key != names.ALL_INTERFACES:
                self._table.put_map_entry(MapDef(names.MAP_FROM_HEP), key, None)
                self._table.put_map_entry(MapDef(names.MAP_TO_HEP), key, None)
        for key, hep_id in by_key.items():
            hep = self.heps[hep_id]
            fh, th = names.host_chain(key, False), names.host_chain(key, True)
            self._install_endpoint_chain(*endpoint_chain(fh, self.renderer, hep.tiers, hep.profile_ids, True,
                                                         failsafe=names.CHAIN_FAILSAFE_IN))
            self._install_endpoint_chain(*endpoint_chain(th, self.renderer, hep.tiers, hep.profile_ids, False,
                                                         failsafe=names.CHAIN_FAILSAFE_OUT))
            if key != names.ALL_INTERFACES:
                self._table.put_map_entry(MapDef(names.MAP_FROM_HEP), key, f"jump {fh}")
                self._table.put_map_entry(MapDef(names.MAP_TO_HEP), key, f"jump {th}")
        all_before = names.ALL_INTERFACES in self._hep_keys
        self._hep_keys = set(by_key)
        if all_before != (names.ALL_INTERFACES in by_key):
            self._render_static()

    def _render_all_endpoints(self) -> None:
        self._render_static()
        for iface in list(self.wl_claims):
            self._render_workload(iface)
        self._render_heps()

    def _install_endpoint_chain(self, chain: Chain, refs: set[str]) -> None:
        old = self._endpoint_deps.get(chain.name, frozenset())
        new = frozenset(refs)
        self._endpoint_deps[chain.name] = new
        counts = self._chain_refs
        flipped: list[str] = []  # chains that gained their first user or lost their last: only they can change
        for name in new - old:
            counts[name] += 1
            if counts[name] == 1:
                flipped.append(name)
        for name in old - new:
            counts[name] -= 1
            if counts[name] == 0:
                flipped.append(name)
        self._table.put_chain(chain)
        for name in flipped:  # (the e2e world's 100 endpoints share targets: 4,649 refreshes → 883)
            self._refresh_chain(name)

    def _uninstall_endpoint_chain(self, name: str) -> None:
        old = self._endpoint_deps.pop(name, frozenset())
        for dep in old:
            self._chain_refs[dep] -= 1
        self._table.drop_chain(name)
        for dep in old:
            self._refresh_chain(dep)

    # Static parts -------------------------------------------------------------
    def _render_static(self) -> None:
        for chain in static_chains(self.renderer, self.settings, all_hep=names.ALL_INTERFACES in self._hep_keys,
                                   vxlan_on=self.vxlan_on):
            self._table.put_chain(chain)

    def _render_pools(self) -> None:
        for version in (4, 6):
            cidrs = [p.cidr for p in self.pools.values()]
            masq = [p.cidr for p in self.pools.values() if p.masquerade]
            try:
                all_elems, masq_elems = net_elements(cidrs, version), net_elements(masq, version)
            except RenderError as exc:
                log.error("bad pool cidr", error=str(exc))
                continue
            self._table.put_set(setdef_for(names.pool_set(version, False)), all_elems)
            self._table.put_set(setdef_for(names.pool_set(version, True)), masq_elems)


def _id_key(endpoint_id: WorkloadEndpointID) -> tuple[str, str, str]:
    return endpoint_id.orchestrator, endpoint_id.workload, endpoint_id.endpoint  # (astuple deep-copies: ~3 us)
