"""The daemon's spine: syncer callbacks → calculation graph → dataplane, and what health and status see of it.

How it works::

    syncer / Typha ──on_status/on_updates──► Pipeline ──► CalcGraph.flush() ──► [messages]
                                                │  ConfigUpdate: ConfigTracker (restart? merge local overlay)
                                                │  endpoint updates: remembered for status reporting
                                                ▼
                                            Dataplane.send(msg) (queued; one nft batch per turn)
    monitor task: wait for the dataplane to settle ─► applied revision, apply-time metric,
                                                      endpoint statuses (up / gone) ─► status sinks

The pipeline is the syncer's callback object; its callbacks are synchronous
(the graph is pure and the dataplane queues), so the syncer's backpressure is
the graph's own speed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import structlog

from libcalico.runtime import SettingsError, SettingsSpec
from libcalico.syncer import SyncStatus, Update
from services.felix.config import FelixSettings, known_fields, restart_reasons
from services.felix.messages import (
    ConfigUpdate,
    HostEndpoint,
    HostEndpointRemove,
    HostEndpointUpdate,
    InSync,
    Message,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)
from services.felix.metrics import FelixMetrics

if TYPE_CHECKING:
    from services.felix.calc import CalcGraph
    from services.felix.dataplane.dataplane import Dataplane

log = structlog.get_logger("felix.pipeline")

EARLY_START_WAIT = 1.0  # longest the rest of the first snapshot waits for nft to start on the endpoints (or policies)
RECHECK_INTERVAL = 0.2  # how often the monitor looks again while an endpoint's interface is missing
_TRACKED = frozenset({ConfigUpdate, WorkloadEndpointUpdate, WorkloadEndpointRemove, HostEndpointUpdate,
                      HostEndpointRemove, InSync})  # the message types _forward looks into


class EndpointStatus(NamedTuple):
    """One local endpoint as programmed: ``up`` once its rules (and, for a workload, its route) are in."""

    workload_id: WorkloadEndpointID | None
    host_id: str | None
    status: str
    workload: WorkloadEndpoint | None = None
    host: HostEndpoint | None = None


class StatusSink(Protocol):
    """Something that reports endpoint statuses (files, the datastore).

    A sink with ``blocking = True`` does its I/O in ``update``: the pipeline calls it in a worker thread,
    so that a readiness probe is not held behind it (the first apply writes one file per local endpoint).
    """

    def update(self, statuses: Mapping[str, EndpointStatus]) -> None:
        """The complete current statuses, keyed by a stable endpoint id."""


class ConfigTracker:
    """Turns the graph's datastore config into the dataplane's, and asks for a restart when a daemon
    parameter changed (as Calico's Felix restarts on a config change)."""

    def __init__(self, spec: SettingsSpec[FelixSettings], argv: Sequence[str], environ: Mapping[str, str],
                 running: FelixSettings, overlay: Mapping[str, Any],
                 on_restart: Callable[[list[str], dict[str, Any]], None]) -> None:
        self.spec = spec
        self.argv = list(argv)
        self.environ = dict(environ)
        self.running = running
        self.overlay = dict(overlay)
        self.on_restart = on_restart
        self.datastore: dict[str, Any] = {}
        self.restart_requested = False

    def apply(self, msg: ConfigUpdate) -> ConfigUpdate:
        """Check a datastore config for restart-worthy changes; return the dataplane's config."""
        self.datastore = dict(msg.config)
        if not self.restart_requested:
            try:
                candidate = self.spec.load(self.argv, self.environ,
                                           [("FelixConfiguration", known_fields(self.datastore))]).settings
            except SettingsError as exc:
                log.error("datastore config rejected; keeping the running settings", error=str(exc))
            else:
                reasons = restart_reasons(self.running, candidate)
                if reasons:
                    self.restart_requested = True
                    log.warning("config changed; restarting", changed=reasons)
                    self.on_restart(reasons, self.datastore)
        return ConfigUpdate({**self.datastore, **self.overlay})


class Pipeline:
    """Syncer callbacks that drive the calculation graph and feed the dataplane."""

    def __init__(self, graph: CalcGraph, dataplane: Dataplane, config: ConfigTracker, metrics: FelixMetrics,
                 sinks: Sequence[StatusSink] = (), on_change: Callable[[], None] | None = None) -> None:
        self.graph = graph
        self.dataplane = dataplane
        self.config = config
        self.metrics = metrics
        self.sinks = list(sinks)
        self.on_change = on_change
        self.status: SyncStatus | None = None
        self.revision = 0  # newest datastore revision handed to the graph
        self.applied_revision = 0  # newest revision known to be in the kernel
        self.workloads: dict[WorkloadEndpointID, WorkloadEndpoint] = {}
        self.hosts: dict[str, HostEndpoint] = {}
        self._wake = asyncio.Event()
        self._reported: dict[str, EndpointStatus] | None = None  # None: report even when empty
        self.ever_in_sync = False
        self._finisher: asyncio.Task[None] | None = None  # sends the rest of the first snapshot

    # ------------------------------------------------------------ syncer callbacks

    def on_status(self, status: SyncStatus) -> None:
        """The stream's status changed."""
        if status is SyncStatus.RESYNC_IN_PROGRESS and self.status is not status:
            self.metrics.resyncs_started.inc()
        self.status = status
        self.ever_in_sync = self.ever_in_sync or status is SyncStatus.IN_SYNC
        self.metrics.resync_state(status)
        self.complete_snapshot()
        self.graph.on_status(status)
        if self.graph.snapshot_pending:
            # The first in-sync: the endpoints go first, so that the dataplane starts nft on their chains
            # while the graph works out the policies and IP sets (see complete_snapshot).
            self._forward(self.graph.flush_early())
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside the event loop (tests): no one to overlap with
                self.complete_snapshot()
            else:
                self._finisher = loop.create_task(self._finish_snapshot(), name="felix-snapshot")
        else:
            self._forward(self.graph.flush())
        if self.on_change is not None:
            self.on_change()

    async def _finish_snapshot(self) -> None:
        """Let the dataplane hand the endpoints' chains to nft, then send the policies and profiles and let it
        hand their chains to nft too, then send the rest of the first snapshot (the IP sets: ~0.1 s of the
        graph's work, while nft loads the chains)."""
        if await self._started(self.dataplane.early_started, "endpoints") and self.graph.snapshot_pending:
            policies = self.graph.flush_policies()
            if policies:
                self._forward(policies)
                await self._started(self.dataplane.policies_started, "policies")
        self.complete_snapshot()
        if self.on_change is not None:
            self.on_change()

    async def _started(self, event: asyncio.Event, what: str) -> bool:
        """Wait (at most EARLY_START_WAIT) for the dataplane to start nft on ``what``; whether it did."""
        try:
            async with asyncio.timeout(EARLY_START_WAIT):
                await event.wait()
        except TimeoutError:
            log.warning("dataplane did not start nft in time; sending the rest", on=what, waited=EARLY_START_WAIT)
            return False
        return True

    def complete_snapshot(self) -> None:
        """Send the rest of the first snapshot (policies, profiles, IP sets, InSync) if it is pending.

        Called before anything else reaches the graph, so later updates follow the snapshot in order.
        """
        if self.graph.snapshot_pending:
            self._forward(self.graph.flush())

    def on_updates(self, updates: list[Update]) -> None:
        """A batch of datastore updates."""
        self.complete_snapshot()
        started = time.perf_counter()
        self.graph.on_updates(updates)
        messages = self.graph.flush()
        self.metrics.calc_graph_update_time.observe(time.perf_counter() - started)
        self.metrics.calc_graph_updates.inc(len(updates))
        self.metrics.calc_graph_output_events.inc(len(messages))
        self.revision = max(self.revision, max(u.revision for u in updates))
        self._forward(messages)

    @property
    def in_sync(self) -> bool:
        """Whether the stream is in sync now."""
        return self.status is SyncStatus.IN_SYNC

    def _forward(self, messages: list[Message]) -> None:
        send = self.dataplane.send
        counts: dict[str, int] = {}
        for msg in messages:
            kind = type(msg)
            if kind in _TRACKED:  # one set lookup for most messages (policies, IP sets), not six isinstance
                msg = self._track(msg)
            send(msg)
            counts[kind.__name__] = counts.get(kind.__name__, 0) + 1
        for name, count in counts.items():  # one labelled increment per type, not per message
            self.metrics.dataplane_messages.labels(name).inc(count)
        self._wake.set()

    def _track(self, msg: Message) -> Message:
        """Remember what status reporting needs of ``msg``; the message to send on (config: merged)."""
        if isinstance(msg, ConfigUpdate):
            return self.config.apply(msg)
        if isinstance(msg, WorkloadEndpointUpdate):
            self.workloads[msg.id] = msg.endpoint
        elif isinstance(msg, WorkloadEndpointRemove):
            self.workloads.pop(msg.id, None)
        elif isinstance(msg, HostEndpointUpdate):
            self.hosts[msg.id] = msg.endpoint
        elif isinstance(msg, HostEndpointRemove):
            self.hosts.pop(msg.id, None)
        elif isinstance(msg, InSync):
            log.info("calculation graph in sync", **dataclasses.asdict(self.graph.stats()))
        return msg

    # ------------------------------------------------------------ monitor task

    async def monitor(self, settle_timeout: float = 30.0) -> None:
        """Follow the dataplane: applied revision, apply times, endpoint statuses. Runs until cancelled."""
        dp = self.dataplane
        batches_seen = 0
        failed_at: tuple[int, int] | None = None  # (batches, failures) when an apply failed
        for _ in iter(int, 1):  # until cancelled
            if not self._wake.is_set():
                try:
                    async with asyncio.timeout(RECHECK_INTERVAL if self._needs_recheck(failed_at) else None):
                        await self._wake.wait()
                except TimeoutError:
                    pass
            self._wake.clear()
            target = self.revision
            failures = dp.stats.nft_failures
            try:
                await dp.settled(settle_timeout)
            except TimeoutError:
                self._wake.set()  # the watchdog reports a stuck dataplane; look again
                continue
            if not dp.ready.is_set():
                continue
            if dp.stats.nft_failures != failures:
                failed_at = (dp.stats.nft_batches, dp.stats.nft_failures)
                continue
            if failed_at is not None:
                if not (dp.stats.nft_batches > failed_at[0] and dp.stats.nft_failures == failed_at[1]):
                    continue
                failed_at = None
            if dp.stats.nft_batches != batches_seen:
                batches_seen = dp.stats.nft_batches
                self.metrics.apply_time.observe(dp.stats.last_apply_seconds)
            self.applied_revision = max(self.applied_revision, target)
            self.metrics.applied_revision.set(self.applied_revision)
            if self.on_change is not None:
                self.on_change()
            await self._report_endpoints()

    def _needs_recheck(self, failed_at: tuple[int, int] | None) -> bool:
        pending = self.dataplane.routes.pending if self.dataplane.routes is not None else set()
        return failed_at is not None or any(ep.name in pending for ep in self.workloads.values())

    def endpoint_statuses(self) -> dict[str, EndpointStatus]:
        """What each local endpoint's status is now (only meaningful once the dataplane is programmed)."""
        pending = self.dataplane.routes.pending if self.dataplane.routes is not None else set()
        out: dict[str, EndpointStatus] = {}
        for wid, wep in self.workloads.items():
            status = "down" if wep.name in pending else "up"
            out[f"wep {wid.orchestrator} {wid.workload} {wid.endpoint}"] = EndpointStatus(
                wid, None, status, workload=wep)
        for hid, hep in self.hosts.items():
            out[f"hep {hid}"] = EndpointStatus(None, hid, "up", host=hep)
        return out

    async def _report_endpoints(self) -> None:
        statuses = self.endpoint_statuses()
        if statuses == self._reported:
            return
        self._reported = statuses
        for sink in self.sinks:
            if getattr(sink, "blocking", False):
                await asyncio.to_thread(sink.update, statuses)  # (one at a time: the monitor waits for it)
            else:
                sink.update(statuses)
