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
from typing import Any

from libcalico.syncer import SyncStatus, Update
from services.felix.calc.active_rules import ActiveRules
from services.felix.calc.config import ConfigMerger
from services.felix.calc.dirty import Dirty
from services.felix.calc.dispatcher import IPAM_BLOCK, Dispatcher, KeyInfo
from services.felix.calc.endpoints import (
    EndpointData,
    decode_workload,
    host_endpoint,
    network_set,
    workload_endpoint,
)
from services.felix.calc.inheritance import InheritanceIndex
from services.felix.calc.ipsets import IPSetDef, IPSetIndex
from services.felix.calc.policy_sorter import PolicySorter, policy_record
from services.felix.calc.routes import RouteResolver
from services.felix.calc.rule_scanner import RuleScanner
from services.felix.calc.sequencer import EndpointUpdate, EventSequencer
from services.felix.messages import HostEndpointUpdate, Message, WorkloadEndpointUpdate


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

    def __init__(self, hostname: str, sink: Callable[[list[Message]], None] | None = None) -> None:
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
        d = self._dispatcher = Dispatcher()
        d.register("WorkloadEndpoint", self._on_workload, decode_workload)
        d.register("HostEndpoint", self._on_host)
        d.register("NetworkSet", self._on_network_set)
        d.register("GlobalNetworkSet", self._on_network_set)
        d.register("Profile", self._on_profile)
        d.register("NetworkPolicy", self._on_policy)
        d.register("GlobalNetworkPolicy", self._on_policy)
        d.register("Tier", self._on_tier)
        d.register("IPPool", self._on_pool)
        d.register("Node", self._on_node)
        d.register(IPAM_BLOCK, self._on_block)
        d.register("FelixConfiguration", self._on_config)

    # ---------------------------------------------------------------- the API

    def on_status(self, status: SyncStatus) -> None:
        """The syncer's status changed; the first ``in-sync`` lets the graph start sending."""
        if status is SyncStatus.IN_SYNC:
            self._in_sync = True
        self._deliver()

    def on_updates(self, updates: list[Update]) -> None:
        """Apply a batch of syncer updates, in order."""
        dispatch = self._dispatcher.dispatch
        for update in updates:
            dispatch(update)
        self._deliver()

    def flush(self) -> list[Message]:
        """The messages for everything that changed since the last flush, in dataplane order."""
        return self._seq.flush(self._in_sync)

    def _deliver(self) -> None:
        if self._sink is not None:
            messages = self.flush()
            if messages:
                self._sink(messages)

    def stats(self) -> GraphStats:
        """Current sizes of the graph's state."""
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
        return self._ipsets.definition(set_id)

    def ipset_members(self, set_id: str) -> frozenset[str]:
        """The current members of an active IP set (for diagnostics and tests)."""
        return self._ipsets.members(set_id)

    # -------------------------------------------------------------- endpoints

    def _on_workload(self, key: str, info: KeyInfo, value: Any) -> None:
        self._update_item(key, None if value is None else workload_endpoint(key, value, self.hostname))

    def _on_host(self, key: str, info: KeyInfo, value: Any) -> None:
        self._update_item(key, None if value is None else host_endpoint(key, value, self.hostname))

    def _on_network_set(self, key: str, info: KeyInfo, value: Any) -> None:
        self._update_item(key, None if value is None else network_set(key, value))

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
        self._inherit.update_parent(info.name, None if value is None else value.spec.labelsToApply)

    def _on_policy(self, key: str, info: KeyInfo, value: Any) -> None:
        self._active.update_policy(key, None if value is None else policy_record(key, value))

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
