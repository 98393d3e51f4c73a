"""The calculation graph: syncer updates in, ordered dataplane messages out. Pure and synchronous.

How it works (Calico's ``calc_graph``)::

    on_updates([Update]) ──► Dispatcher ──┬─ WEP / HEP / (Global)NetworkSet ──► endpoint records
                                          │        │ (local filter: spec.node == hostname)
                                          │        ▼
                                          │   InheritanceIndex (own labels over profile labelsToApply)
                                          │        │ effective labels
                                          │        ├──► IPSetIndex (every item, cluster-wide)
                                          │        └──► ActiveRules (local endpoints only)
                                          ├─ Profile ──► InheritanceIndex (labels), ActiveRules (rules)
                                          ├─ (Global)NetworkPolicy ──► ActiveRules ──► RuleScanner ──► IPSetIndex
                                          ├─ Tier ──► PolicySorter
                                          ├─ IPPool / Node / IPAM block ──► RouteResolver
                                          └─ FelixConfiguration ──► ConfigMerger
    flush() ──► EventSequencer ──► [messages]   (nothing before the first in-sync; then InSync)

Cold start: until the first in-sync nothing can be sent, so the graph only
keeps the latest update of each key. At in-sync it loads that snapshot in
bulk, in two parts. Part A (``on_status(IN_SYNC)``) does only what the local
endpoints' messages need: tiers, config, routes and profiles; the local
endpoints (found by their stored ``spec.node`` before any decoding, then
decoded, labels inherited); the policies, whose selectors the label index of
the local endpoints answers by set algebra -- the rules' compilation is
deferred. ``flush_early()`` then sends the config, pools and local endpoints
(final) and EndpointsReady, so the dataplane can start on them;
``flush_policies()`` compiles the active policies and profiles and sends them,
then PoliciesReady, so the dataplane can start on their chains too. Part B (the
next ``flush()``, or any other call first) loads every other endpoint and
network set at once (before any selector of theirs exists), compiles the
active policies and profiles (unless flush_policies did), then activates the IP sets their rules need
(held until here, so every label key their selectors read is indexed in one
pass over the items), each with its whole membership counted in one go; the
flush sends the rest and InSync. The parts together send exactly what one
flush after ``on_status`` sends (the old way, still what a plain ``flush()``
gives), and the result is the state that applying the updates one by one
gives (the tests compare them); after the first in-sync every update goes
through the incremental paths.

Staged policies (StagedNetworkPolicy, StagedGlobalNetworkPolicy,
StagedKubernetesNetworkPolicy) are never enforced and never reach the graph's
nodes. Use it as a syncer callback object::

    graph = CalcGraph("node-1")
    graph.on_status(SyncStatus.IN_SYNC); graph.on_updates(batch)
    messages = graph.flush()

or pass ``sink`` to have every call flush into it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

from libcalico.collector import collector_paused
from libcalico.datastore.keys import RESOURCE_ROOT
from libcalico.syncer import SyncStatus, Update
from services.felix.calc.active_rules import ActiveRules
from services.felix.calc.config import ConfigMerger
from services.felix.calc.dirty import Dirty
from services.felix.calc.dispatcher import (
    FASTPATH,
    IPAM_BLOCK,
    NOT_SURE,
    Accepts,
    Dispatcher,
    KeyInfo,
    classify,
)
from services.felix.calc.endpoints import (
    EndpointData,
    host_endpoint,
    network_set,
    network_set_from_stored,
    workload_from_fields,
    workload_record,
)
from services.felix.calc.inheritance import InheritanceIndex
from services.felix.calc.ipsets import IPSetDef, IPSetIndex
from services.felix.calc.policies import (
    policy_from_stored,
    policy_record,
    profile_from_stored,
    profile_record,
)
from services.felix.calc.policy_sorter import PolicySorter, tier_from_stored, tier_record
from services.felix.calc.routes import RouteResolver
from services.felix.calc.rule_scanner import RuleScanner
from services.felix.calc.sequencer import EndpointUpdate, EventSequencer
from services.felix.messages import HostEndpointUpdate, Message, WorkloadEndpointUpdate

_KEY = attrgetter("key")
_LABELS = attrgetter("labels")
_PARENTS = attrgetter("parents")
_NETS = attrgetter("nets")
_PORTS = itemgetter(0, 4)  # an EndpointData's key and named ports
_PORTS_OF = itemgetter(4)
WORKLOAD_ENDPOINT = "WorkloadEndpoint"
_WORKLOAD_PREFIX = RESOURCE_ROOT + "workloadendpoints/"
ITEM_KINDS = frozenset({"WorkloadEndpoint", "HostEndpoint", "NetworkSet", "GlobalNetworkSet"})
POLICY_KINDS = frozenset({"NetworkPolicy", "GlobalNetworkPolicy"})
ROUTE_KINDS = frozenset({"Node", IPAM_BLOCK})  # what only routes and VTEPs need (not the pools)


@dataclass(slots=True)
class _Rest:
    """What part B of the first snapshot still has to load."""

    workloads: list[Update]  # not local by their spec.node: still to decode
    items: list[tuple[Update, KeyInfo, Any]]  # network sets: still to decode
    records: list[EndpointData]  # remote host endpoints (decoded in part A)
    local: list[EndpointData]  # the local endpoints (loaded in part A)
    effective: dict[str, Any]  # their effective labels
    routing: list[tuple[Update, KeyInfo, Any]]  # Nodes and IPAM blocks: still to apply


@dataclass(frozen=True, slots=True)
class GraphStats:
    """Sizes for metrics (``felix_active_local_endpoints``, ``felix_active_local_policies``, ...)."""

    local_endpoints: int
    active_policies: int
    active_profiles: int
    active_ipsets: int
    items: int


class CalcGraph:
    """Felix's calculation graph for one node; see the module docstring."""

    def __init__(self, hostname: str, sink: Callable[[list[Message]], None] | None = None, *,
                 accepts: Accepts | None | object = FASTPATH, validate_workloads: bool = False) -> None:
        """``accepts(kind, map)`` vouches for stored maps read without the models (default: the syncer's
        fast path, when it has one; None: always the models).

        ``validate_workloads``: validate WorkloadEndpoints here as well (they are
        then among :meth:`validated_kinds`, so a direct syncer need not): the fast
        path's check of a map also reads it for the graph (10,100 endpoints:
        ~42 ms here, against ~34 ms in the syncer plus ~31 ms here). Off, the
        stream in front is trusted to have validated them (Typha does).
        """
        if not hostname:
            raise ValueError("the calculation graph needs this node's hostname (Node name), got an empty one")
        self.hostname = hostname
        self._sink = sink
        self._in_sync = False
        self._dirty = Dirty()
        self._ipsets = IPSetIndex()
        self._scanner = RuleScanner(self._ipsets)
        self._active = ActiveRules(self._scanner, self._dirty)
        self._sorter = PolicySorter()
        self._routes = RouteResolver(hostname)
        self._config = ConfigMerger(hostname)
        self._endpoints: dict[str, EndpointData] = {}
        self._local: set[str] = set()
        self._inherit = InheritanceIndex(self._labels_changed)
        self._seq = EventSequencer(self._dirty, self._ipsets, self._active, self._endpoint_update,
                                   self._routes, self._config)
        self._ipsets.listen(self._seq.member_added, self._seq.member_removed)
        self._scanner.listen(self._seq.set_activated, self._seq.set_deactivated)
        self._pending: dict[str, Update] | None = {}  # before the first in-sync: the latest update per key
        self._rest: _Rest | None = None  # part B of the first snapshot, while it waits
        self._early_sent = False
        self._policies_sent = False  # flush_policies sent the middle part of the first snapshot
        d = self._dispatcher = Dispatcher(accepts)
        self._workload_fields: Callable[[Any], tuple[Any, ...] | None] | None = None
        d.register("WorkloadEndpoint", self._on_item, self._decode_workload, validate=validate_workloads,
                   checked=self._check_workload)
        d.register("HostEndpoint", self._on_item, from_model=self._host_endpoint)
        d.register("NetworkSet", self._on_item, stored=network_set_from_stored, from_model=network_set)
        d.register("GlobalNetworkSet", self._on_item, stored=network_set_from_stored, from_model=network_set)
        d.register("Profile", self._on_profile, stored=profile_from_stored, from_model=profile_record)
        d.register("NetworkPolicy", self._on_policy, stored=policy_from_stored, from_model=policy_record)
        d.register("GlobalNetworkPolicy", self._on_policy, stored=policy_from_stored, from_model=policy_record)
        d.register("Tier", self._on_tier, stored=tier_from_stored, from_model=tier_record)
        d.register("IPPool", self._on_pool)
        d.register("Node", self._on_node)
        d.register(IPAM_BLOCK, self._on_block)
        d.register("FelixConfiguration", self._on_config)

    # ---------------------------------------------------------------- the API

    def on_status(self, status: SyncStatus) -> None:
        """The syncer's status changed; the first ``in-sync`` lets the graph start sending.

        The first ``in-sync`` does part A of the snapshot's work only (see
        :attr:`snapshot_pending`); anything else completes it first.
        """
        self._complete_snapshot()
        if status is SyncStatus.IN_SYNC:
            self._in_sync = True
            if self._pending is not None:
                with collector_paused():  # no cycles, only long-lived state (collected: ~1/3 more time)
                    self._load_snapshot()
        self._deliver()

    def on_updates(self, updates: list[Update]) -> None:
        """Apply a batch of syncer updates, in order."""
        if self._pending is not None:
            self._pending.update(zip(map(_KEY, updates), updates, strict=True))
            return
        self._complete_snapshot()
        dispatch = self._dispatcher.dispatch
        for update in updates:
            dispatch(update)
        self._deliver()

    @property
    def snapshot_pending(self) -> bool:
        """Whether the first complete snapshot is loaded (its part A at least) but not yet flushed."""
        return self._in_sync and not self._seq.in_sync_sent

    def flush_early(self) -> list[Message]:
        """Part A of the first snapshot: ConfigUpdate, IPAMPoolUpdates, every local endpoint's message (final,
        with its tiers), then EndpointsReady; [] when that is not pending. The next :meth:`flush` sends the
        rest: the two together are what that flush alone would have sent (less EndpointsReady)."""
        if self._rest is None or self._early_sent:
            return []
        self._early_sent = True
        return self._seq.flush_early()

    def flush_policies(self) -> list[Message]:
        """The middle part of the first snapshot, after :meth:`flush_early`: the active policies and profiles,
        compiled (their IP sets are activated in part B), then PoliciesReady; [] when that is not pending.
        The next :meth:`flush` sends the rest; the three parts together are what one flush would have sent
        (less the two markers), the policies before the IP sets their rules name."""
        if self._rest is None or not self._early_sent or self._policies_sent:
            return []
        self._policies_sent = True
        with collector_paused():
            self._active.compile_deferred()
        return self._seq.flush_policies()

    def flush(self) -> list[Message]:
        """The messages for everything that changed since the last flush, in dataplane order."""
        self._complete_snapshot()
        return self._seq.flush(self._in_sync)

    def _deliver(self) -> None:
        if self._sink is not None:
            messages = self.flush()
            if messages:
                self._sink(messages)

    def stats(self) -> GraphStats:
        """Current sizes of the graph's state."""
        self._complete_snapshot()
        return GraphStats(
            local_endpoints=len(self._local),
            active_policies=len(self._active.desired_policies),
            active_profiles=len(self._active.desired_profiles),
            active_ipsets=len(self._ipsets),
            items=len(self._endpoints),
        )

    def validated_kinds(self) -> frozenset[str]:
        """Kinds the graph validates itself (full model; a bad value counts as deleted), so a stream
        in front of it need not validate them too."""
        return self._dispatcher.parsed_kinds()

    def ipset_definition(self, set_id: str) -> IPSetDef | None:
        """What an active IP set holds (for diagnostics and tests)."""
        self._complete_snapshot()
        return self._ipsets.definition(set_id)

    def ipset_members(self, set_id: str) -> frozenset[str]:
        """The current members of an active IP set (for diagnostics and tests)."""
        self._complete_snapshot()
        return self._ipsets.members(set_id)

    # -------------------------------------------------------------- cold start

    def _load_snapshot(self) -> None:
        """Part A of the first snapshot: what the local endpoints' messages need (see the module docstring)."""
        pending, self._pending = self._pending, None
        assert pending is not None
        dispatcher = self._dispatcher
        hostname = self.hostname
        local: list[Update] = []
        remote: list[Update] = []
        items: list[tuple[Update, KeyInfo, Any]] = []
        policies: list[tuple[Update, KeyInfo, Any]] = []
        routing: list[tuple[Update, KeyInfo, Any]] = []
        for update in pending.values():
            value = update.value
            if value is None:
                continue  # deleted before in-sync: nothing to do
            if update.key.startswith(_WORKLOAD_PREFIX):
                # Local or not by the stored spec.node, which every reader takes ``local`` from, so that only
                # the local ~1% are decoded now (decoding all 10,100 took ~40 ms of part A; this test ~2 ms).
                spec = value.get("spec")
                (local if spec.__class__ is dict and spec.get("node") == hostname else remote).append(update)
                continue
            info = classify(update.key)
            entry = None if info is None else dispatcher.kind_of(info)
            if info is None or entry is None:
                continue
            if info.kind in ITEM_KINDS:
                items.append((update, info, entry))
            elif info.kind in POLICY_KINDS:
                policies.append((update, info, entry))
            elif info.kind in ROUTE_KINDS:  # routes and VTEPs only: part B (101 Nodes: ~2 ms)
                routing.append((update, info, entry))
            else:  # tiers, config, pools, profiles: applied as they come
                value = dispatcher.decode(update, info, entry)
                for handler in entry.handlers:
                    handler(update.key, info, value)
        loaded: list[EndpointData] = dispatcher.decode_batch(WORKLOAD_ENDPOINT, _WORKLOAD_PREFIX, local)
        later: list[tuple[Update, KeyInfo, Any]] = []  # network sets: IP-set members only
        for item in items:
            if item[1].kind == "HostEndpoint":  # few: decoded now, the local ones are endpoints
                data = dispatcher.decode(*item)
                if data is not None:
                    loaded.append(data)
            else:
                later.append(item)
        # IP sets are activated at the end of part B, their label keys indexed in one pass; the active
        # policies and profiles are compiled there too (the endpoints' tiers need only which ones apply).
        self._scanner.hold()
        self._active.defer_compiling()
        mine = [d for d in loaded if d.local]
        effective = self._load_items(mine)
        for update, info, entry in policies:
            self._on_policy(update.key, info, dispatcher.decode(update, info, entry))
        self._rest = _Rest(remote, later, [d for d in loaded if not d.local], mine, effective, routing)

    def _load_rest(self) -> None:
        """Part B of the first snapshot: every other endpoint and network set, the rules, the IP sets."""
        rest, self._rest = self._rest, None
        assert rest is not None
        dispatcher = self._dispatcher
        for update, info, entry in rest.routing:
            value = dispatcher.decode(update, info, entry)
            for handler in entry.handlers:
                handler(update.key, info, value)
        loaded = dispatcher.decode_batch(WORKLOAD_ENDPOINT, _WORKLOAD_PREFIX, rest.workloads)
        for update, info, entry in rest.items:
            data = dispatcher.decode(update, info, entry)
            if data is not None:
                loaded.append(data)
        loaded += rest.records
        effective = self._load_items(loaded)  # (all remote: part A took every local one)
        effective.update(rest.effective)
        loaded += rest.local
        self._ipsets.load(effective, dict(zip(map(_KEY, loaded), map(_NETS, loaded), strict=True)),
                          dict(map(_PORTS, filter(_PORTS_OF, loaded))))
        self._active.compile_deferred()
        self._scanner.release()

    def _complete_snapshot(self) -> None:
        """Run part B of the first snapshot if it is pending."""
        if self._rest is not None:
            with collector_paused():  # no cycles, only long-lived state (collected: ~1/3 more time)
                self._load_rest()

    def _load_items(self, loaded: list[EndpointData]) -> dict[str, Any]:
        """New endpoints and network sets, before any IP set is active: recorded, labels inherited (returned,
        for the IP-set index), the local ones matched against the policies."""
        keys = list(map(_KEY, loaded))
        self._endpoints.update(zip(keys, loaded, strict=True))  # one update per key: keys are unique
        local = [d.key for d in loaded if d.local]
        self._local.update(local)
        self._dirty.endpoints.update(local)
        effective = self._inherit.load(keys, list(map(_LABELS, loaded)), list(map(_PARENTS, loaded)))
        for key in sorted(local):
            self._active.update_endpoint(key, effective[key], self._endpoints[key].parents)
        return effective

    # -------------------------------------------------------------- endpoints

    def _decode_workload(self, key: str, value: dict[str, Any]) -> EndpointData | None:
        return workload_record(key, value, self.hostname)

    def _check_workload(self, key: str, value: dict[str, Any]) -> EndpointData | None:
        """A WorkloadEndpoint the fast path vouches for, read as it checked it (NOT_SURE: it cannot vouch)."""
        fields_of = self._workload_fields
        if fields_of is None:
            # Imported on first use, as the dispatcher's fast path is.
            from libcalico.syncer.fastpath import workload_endpoint_fields

            fields_of = self._workload_fields = workload_endpoint_fields
        fields = fields_of(value)
        if fields is None or fields[1] is None or key != _WORKLOAD_PREFIX + fields[1] + "/" + fields[0]:
            return NOT_SURE  # (a key that does not name the map: the dispatcher's slow way says so)
        return workload_from_fields(key, fields, self.hostname)

    def _host_endpoint(self, key: str, value: Any) -> EndpointData:
        return host_endpoint(key, value, self.hostname)

    def _on_item(self, key: str, info: KeyInfo, data: EndpointData | None) -> None:
        self._update_item(key, data)

    def _update_item(self, key: str, data: EndpointData | None) -> None:
        old = self._endpoints.get(key)
        if data is None:
            if old is None:
                return
            del self._endpoints[key]
            self._inherit.delete_item(key)
            self._ipsets.delete_item(key)
            if old.local:
                self._local.discard(key)
                self._active.delete_endpoint(key)
            return
        if old == data:
            return
        self._endpoints[key] = data
        if old is not None and old.local and not data.local:
            self._local.discard(key)
            self._active.delete_endpoint(key)
        if data.local:
            self._local.add(key)
            self._dirty.endpoints.add(key)
        self._inherit.update_item(key, data.labels, data.parents)

    def _labels_changed(self, key: str, labels: dict[str, str]) -> None:
        data = self._endpoints[key]
        self._ipsets.update_item(key, labels, data.nets, data.ports)
        if data.local:
            self._active.update_endpoint(key, labels, data.parents)

    def _endpoint_update(self, key: str) -> EndpointUpdate | None:
        data = self._endpoints.get(key)
        if data is None or not data.local:
            return None
        policies = self._active.policies_of(key)
        if data.workload is not None and data.workload_id is not None:
            tiers = self._sorter.workload_tiers(policies)
            return WorkloadEndpointUpdate(data.workload_id, dataclasses.replace(data.workload, tiers=tiers))
        assert data.host is not None
        lists = self._sorter.host_tiers(policies)
        return HostEndpointUpdate(data.host_id, dataclasses.replace(
            data.host, tiers=lists.normal, untracked_tiers=lists.untracked, pre_dnat_tiers=lists.pre_dnat,
            forward_tiers=lists.forward))

    # ------------------------------------------------------- policy and rules

    def _on_profile(self, key: str, info: KeyInfo, value: Any) -> None:
        self._active.update_profile(info.name, value)
        self._inherit.update_parent(info.name, None if value is None else value.labels)

    def _on_policy(self, key: str, info: KeyInfo, value: Any) -> None:
        self._active.update_policy(key, value)

    def _on_tier(self, key: str, info: KeyInfo, value: Any) -> None:
        if self._sorter.update_tier(info.name, value):
            self._dirty.endpoints.update(self._local)

    # ------------------------------------------------------ routes and config

    def _on_pool(self, key: str, info: KeyInfo, value: Any) -> None:
        self._routes.update_pool(info.name, value)
        self._dirty.routes = True

    def _on_node(self, key: str, info: KeyInfo, value: Any) -> None:
        self._routes.update_node(info.name, value)
        self._dirty.routes = True

    def _on_block(self, key: str, info: KeyInfo, value: Any) -> None:
        self._routes.update_block(key, value)
        self._dirty.routes = True

    def _on_config(self, key: str, info: KeyInfo, value: Any) -> None:
        if self._config.update(info.name, value):
            self._dirty.config = True
