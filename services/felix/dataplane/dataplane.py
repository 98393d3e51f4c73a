"""The dataplane driver: messages in, one atomic nftables batch (plus routes) per loop turn.

How it works::

    send(msg) ──► queue ──► turn: drain every queued message ─► FilterState / RouteManager (desired)
                                   │  (nothing touches the kernel before the first InSync)
                                   ▼
                 EndpointsReady before InSync (the graph's first snapshot in parts): read the
                 table and launch the endpoint chains at once, then set ``early_started``;
                 PoliciesReady: render the policy and profile chains, launch them, ``policies_started``
                 first turn after InSync: start-up sweep = read the table (unless EndpointsReady did),
                 then program it in stages (chains while the IP sets fold; see stages.py) ending in ONE
                 hooking batch, then sweep stale routes; readiness listeners hear of it at once
                 later turns: plan_incremental(dirty names) ─► one nft batch ─► commit ─► routes
                 timers: refresh (read back, repair drift) · route resync · retry pending interfaces

While a batch is in nft's hands (libnftables in the namespace thread, or an
``nft`` process for bulk work) this thread reads the kernel's routes when a
resync is due. On the first apply, once the messages are folded and the chains
rendered while nft is still loading, it runs ``while_programming``, opens the
route socket, reads the kernel's routes and prepares the routes (see
``RouteManager.prepare``); routes and the interface sysctls that let traffic
through change only after the rules are in (the last batch, small, goes
through libnftables). pyroute2 is imported only for tunnel devices (see
routes.py); the link monitor starts after the first apply.

A failed batch leaves the kernel as it was (nft is transactional); the next
turn reads the kernel and replaces the table, with backoff while it keeps failing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog

from services.felix.dataplane import names
from services.felix.dataplane.errors import DataplaneError, NftablesError, RenderError
from services.felix.dataplane.filterstate import FilterState
from services.felix.dataplane.kernelstate import parse_table
from services.felix.dataplane.namespace import NamespaceThread
from services.felix.dataplane.nft import NftBackend, open_backend
from services.felix.dataplane.options import DataplaneOptions, DataplaneStats
from services.felix.dataplane.routes import RouteManager
from services.felix.dataplane.rtnl import watch_links
from services.felix.dataplane.ruleset import (
    NeedsReplace,
    TableState,
    commit,
    plan_incremental,
    plan_replace,
    snapshot,
)
from services.felix.dataplane.settings import settings_from_config
from services.felix.dataplane.stages import (
    Backlog,
    EarlyStages,
    FirstTurn,
    apply_in_stages,
    split_first_turn,
    start_early,
    start_policies,
)
from services.felix.dataplane.tunnels import IPIP_DEVICE, VXLAN_DEVICE
from services.felix.memory import release
from services.felix.messages import (
    ConfigUpdate,
    EndpointsReady,
    InSync,
    Message,
    PoliciesReady,
    RouteRemove,
    RouteUpdate,
    VXLANTunnelEndpointRemove,
    VXLANTunnelEndpointUpdate,
)

log = structlog.get_logger("felix.dataplane")

RELEASE_DELAY = 0.5  # seconds after the first apply before freed start-up memory goes back to the system


@dataclass(frozen=True, slots=True)
class _Wake:
    """Queue item that only makes the loop run a turn (timers); ``counted`` ones count for :meth:`settled`."""

    counted: bool = False


class Dataplane:
    """Felix's Linux dataplane for one (possibly namespaced) host."""

    def __init__(self, options: DataplaneOptions) -> None:
        self.options = options
        self.settings = options.settings
        self.filter = FilterState(self.settings)
        self.stats = DataplaneStats()
        self.in_sync = False
        self.ready = asyncio.Event()  # set after the first successful apply after InSync
        self.early_started = asyncio.Event()  # the endpoints' chains of the first snapshot are in nft's hands (or will not be early)
        self.policies_started = asyncio.Event()  # ... and its policies' and profiles' chains (the same)
        self.ready_listeners: list[Callable[[], None]] = []  # called right when ``ready`` is set (readiness)
        self._queue: asyncio.Queue[Message | _Wake] = asyncio.Queue()
        self._sent = 0
        self._done = 0
        self._in_sync_at: float | None = None  # time.perf_counter() when InSync arrived (stage timings count from it)
        self._ready_at: float | None = None  # ... and when EndpointsReady did (they count from it then)
        self._early: EarlyStages | None = None  # the first apply's batches launched on EndpointsReady
        self._progress = asyncio.Condition()
        self._programmed = TableState()
        self._needs_replace = True
        self._refresh_due = False
        self._route_resync_due = True
        self._backoff = 0.0
        self._timers: list[asyncio.TimerHandle] = []
        self._thread: NamespaceThread | None = None
        self._nft: NftBackend | None = None
        self._while_programming = options.while_programming
        self.routes: RouteManager | None = None

    # Input ----------------------------------------------------------------------
    def send(self, msg: Message) -> None:
        """Queue one message from the calculation graph."""
        self._sent += 1
        if self._in_sync_at is None and isinstance(msg, InSync):
            self._in_sync_at = time.perf_counter()
        elif self._ready_at is None and isinstance(msg, EndpointsReady):
            self._ready_at = time.perf_counter()
        self._queue.put_nowait(msg)

    async def settled(self, timeout: float = 10.0) -> None:
        """Wait until every message sent so far has been processed (and applied, once in sync)."""
        target = self._sent
        async with asyncio.timeout(timeout), self._progress:
            await self._progress.wait_for(lambda: self._done >= target)

    def _wake_after(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._timers = [t for t in self._timers if t.when() > loop.time()]
        self._timers.append(loop.call_later(delay, self._queue.put_nowait, _Wake()))

    # Lifecycle ----------------------------------------------------------------------
    async def run(self) -> None:
        """Process messages until cancelled."""
        async with contextlib.AsyncExitStack() as stack:
            self._thread = NamespaceThread(self.options.netns)
            stack.callback(self._thread.close)
            self._nft = open_backend(self.options.nft_backend, self._thread)
            stack.callback(self._nft.close)
            self.routes = RouteManager(self._thread, self.options.hostname, self.settings)
            stack.callback(self.routes.close)  # its sockets open on first use
            stack.callback(self._cancel_timers)
            stack.push_async_callback(self._drop_early)
            log.info("dataplane started", hostname=self.options.hostname, netns=self.options.netns,
                     nft=self._nft.name)
            monitor: asyncio.Task[None] | None = None
            while True:
                items = [await self._queue.get()]
                while not self._queue.empty():
                    items.append(self._queue.get_nowait())
                await self._turn(items)
                if monitor is None and self.ready.is_set():
                    monitor = asyncio.create_task(self._watch_links(), name="felix-dp-links")
                    stack.push_async_callback(_cancel_and_wait, monitor)

    async def _watch_links(self) -> None:
        assert self._thread is not None
        try:
            await watch_links(self._thread, self._on_link, self._on_links_lost)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # task root: without events, pending interfaces are still retried on a timer
            log.error("link monitor stopped", error=str(exc), exc_info=True)

    def _on_link(self, name: str) -> None:
        assert self.routes is not None
        if name in (VXLAN_DEVICE, IPIP_DEVICE):
            self.routes.mark_tunnels()
        elif name.startswith(self.settings.interface_prefixes) and name in self.routes.workloads:
            self.routes.mark_ifaces({name})
        else:
            return
        self._queue.put_nowait(_Wake())

    def _on_links_lost(self) -> None:
        assert self.routes is not None
        log.warning("link events lost; re-reading the links")
        self.routes.mark_tunnels()  # the next apply reads every link and re-checks every workload
        self._queue.put_nowait(_Wake())

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()

    async def _turn(self, items: list[Message | _Wake]) -> None:
        messages = [m for m in items if not isinstance(m, _Wake)]
        counted = len(messages) + sum(1 for m in items if isinstance(m, _Wake) and m.counted)
        first: FirstTurn | None = None
        endpoints_ready = any(isinstance(m, EndpointsReady) for m in messages)
        policies_ready = any(isinstance(m, PoliciesReady) for m in messages)
        try:
            if not self.ready.is_set() and self._needs_replace and (
                    self.in_sync or any(isinstance(m, InSync) for m in messages)):
                # The first apply: the kernel's table is listed while the policies are folded; endpoints
                # and IP sets are folded while nft loads the first chains (stages.py).
                assert self._nft is not None
                split = split_first_turn(messages)
                messages = split.now
                early, self._early = self._early, None
                listing = None if early is not None else asyncio.ensure_future(
                    self._nft.list_table(names.TABLE_FAMILY, names.TABLE_NAME))
                first = FirstTurn(listing, Backlog(split.endpoints, self._fold), Backlog(split.ipsets, self._fold),
                                  early)
                await asyncio.sleep(0)  # the listing's first step starts nft
            elif endpoints_ready and not self.ready.is_set() and self._needs_replace and self._early is None:
                await self._start_early(messages)
                messages = []
            elif policies_ready and not self.ready.is_set() and self._early is not None:
                await self._start_policies(messages)
                messages = []
            for msg in messages:
                self._fold(msg)
            if self.in_sync:
                await self._apply(first)
                self._backoff = 0.0
        except Exception as exc:  # task root: log, back off, retry on a timer
            self.stats.last_error = str(exc)
            self._needs_replace = True
            self._route_resync_due = True
            self._backoff = min(max(self._backoff * 2, 0.5), self.options.max_backoff)
            log.error("dataplane apply failed", error=str(exc), retry_in=self._backoff, exc_info=True)
            self._wake_after(self._backoff)
        finally:
            if endpoints_ready:
                self.early_started.set()  # in every case: nobody waits for an early start that will not come
            if policies_ready:
                self.policies_started.set()
            if first is not None:
                first.close()  # whatever happened, every message is folded before the next turn
                if first.early is not None:
                    await first.early.aclose()  # (only an apply that never ran leaves any running)
            self.stats.turns += 1
            async with self._progress:
                self._done += counted
                self._progress.notify_all()

    async def _start_early(self, messages: list[Message]) -> None:
        """EndpointsReady before InSync: list the kernel's table while the turn's messages (configuration,
        pools, endpoints) fold, then hand the endpoint chains to nft (see :func:`stages.start_early`)."""
        assert self._nft is not None
        listing = asyncio.ensure_future(self._nft.list_table(names.TABLE_FAMILY, names.TABLE_NAME))
        await asyncio.sleep(0)  # the listing's first step starts nft
        try:
            for msg in messages:
                self._fold(msg)
        finally:
            kernel = parse_table(await listing)
        self._early = await start_early(self.filter, kernel, self._send_bulk, self._ready_at, self._nft.set_nice)
        log.info("endpoint chains started early", batches=self._early.launched,
                 lines=self._early.stages.report.batches)

    async def _start_policies(self, messages: list[Message]) -> None:
        """PoliciesReady after an early start, before InSync: fold the policies and profiles, render their
        chains and hand them to nft too (see :func:`stages.start_policies`)."""
        for msg in messages:
            self._fold(msg)
        assert self._early is not None
        launched = await start_policies(self.filter, self._early)
        log.info("policy chains started early", lines=launched)

    async def _drop_early(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            await early.aclose()

    # Messages ------------------------------------------------------------------
    def _fold(self, msg: Message) -> None:
        try:
            self._on_message(msg)
        except DataplaneError as exc:
            log.error("message rejected", message=type(msg).__name__, error=str(exc))

    def _on_message(self, msg: Message) -> None:
        assert self.routes is not None
        if isinstance(msg, (EndpointsReady, PoliciesReady)):
            return  # (only markers: see _turn)
        if isinstance(msg, InSync):
            if not self.in_sync:
                log.info("in sync; programming the dataplane")
            self.in_sync = True
        elif isinstance(msg, ConfigUpdate):
            try:
                settings = settings_from_config(msg.config, self.options.settings)
            except RenderError as exc:
                log.error("bad configuration ignored", error=str(exc))
                return
            if settings != self.settings:
                self.settings = settings
                self.filter.set_settings(settings)
                self.routes.settings = settings
                self.routes.mark_tunnels()
                self._sync_tunnels()
        elif isinstance(msg, VXLANTunnelEndpointUpdate):
            self.routes.vteps[msg.node] = msg
            self.routes.mark_tunnels()
            self._sync_tunnels()
        elif isinstance(msg, VXLANTunnelEndpointRemove):
            self.routes.vteps.pop(msg.node, None)
            self.routes.mark_tunnels()
            self._sync_tunnels()
        elif isinstance(msg, RouteUpdate | RouteRemove):
            self.routes.set_remote_route(msg)
        else:
            self.filter.apply(msg)

    def _sync_tunnels(self) -> None:
        assert self.routes is not None
        ipip_on = bool(self.settings.ipip_enabled)
        self.filter.set_tunnels(self.routes.vxlan_on, self.routes.remote_vxlan_hosts(), ipip_on)

    # Applying ------------------------------------------------------------------
    async def _apply(self, first_turn: FirstTurn | None = None) -> None:
        assert self._nft is not None and self.routes is not None
        started = time.perf_counter()
        first = not self.ready.is_set()
        resync = self._route_resync_due
        self._route_resync_due = False
        if first and self._needs_replace:
            # The staged first apply: the kernel's routes are read while nft loads the last batches
            # (this thread is free then); routes change only once the rules are in.
            await self._apply_nft(lambda: self._while_first_batch(resync), first_turn)
        else:
            # Reading the kernel's routes (a dump in the namespace thread) overlaps the nft batch;
            # routes are only changed once the rules are in.
            steps = [self._apply_nft(), self.routes.read_kernel()] if resync else [self._apply_nft()]
            for outcome in await asyncio.gather(*steps, return_exceptions=True):
                if isinstance(outcome, BaseException):
                    raise outcome
        self._hand_over_ifaces()
        await self.routes.apply()
        if resync:
            self._schedule_route_resync()
        if self.routes.pending:
            self._wake_after(self.options.pending_retry_interval)
        self.stats.last_apply_seconds = time.perf_counter() - started
        self.stats.last_routes_seconds = max(0.0, self.stats.last_apply_seconds - self.stats.last_nft_seconds)
        if first:
            self.ready.set()
            for listener in list(self.ready_listeners):  # readiness flips now, not after the turn's tail
                listener()
            self._schedule_refresh()
            log.info("dataplane programmed", seconds=round(self.stats.last_apply_seconds, 3),
                     chains=len(self.filter.table.chains), sets=len(self.filter.table.sets))
            # The start-up batches and listings are garbage now; glibc's trim walks the whole heap, so it
            # waits a moment: a readiness probe in flight is answered first, not after it.
            asyncio.get_running_loop().call_later(RELEASE_DELAY, release)

    async def _while_first_batch(self, resync: bool) -> None:
        """Work that waits for nothing the first table batch does (run while nft loads it)."""
        assert self.routes is not None
        hook, self._while_programming = self._while_programming, None
        if hook is not None:
            hook()
        await self.routes.open()
        if resync:
            await self.routes.read_kernel()
        self._hand_over_ifaces()  # (every endpoint is folded by now)
        await self.routes.prepare()  # ~1 ms of parsing and a third of the interface sysctls, out of the way

    def _hand_over_ifaces(self) -> None:
        """Tell the route manager which workload interfaces changed (desired state only)."""
        assert self.routes is not None
        if self.filter.changed_ifaces:
            self.routes.workloads = self.filter.workload_ifaces
            self.routes.mark_ifaces(self.filter.changed_ifaces)
            self.filter.changed_ifaces = set()

    async def _apply_nft(self, while_running: Callable[[], Awaitable[None]] | None = None,
                         first_turn: FirstTurn | None = None) -> None:
        started = time.perf_counter()
        if self._needs_replace:
            await self._replace(staged=not self.ready.is_set(), while_running=while_running, first_turn=first_turn)
        elif self._refresh_due:
            await self._refresh()
        else:
            await self._apply_incremental()
        self.stats.last_nft_seconds = time.perf_counter() - started

    async def _apply_incremental(self) -> None:
        assert self._nft is not None
        chains, sets, maps = self.filter.table.clear_dirty()
        if not (chains or sets or maps):
            return
        try:
            batch = plan_incremental(self.filter.table, self._programmed, chains, sets, maps)
        except NeedsReplace as exc:
            log.warning("table differs in kind; replacing it", reason=str(exc))
            await self._replace()
            return
        if batch.empty:
            return
        try:
            await self._send(batch.text())
        except NftablesError:
            self._needs_replace = True
            raise
        commit(self.filter.table, self._programmed, chains, sets, maps)

    async def _replace(self, staged: bool = False, while_running: Callable[[], Awaitable[None]] | None = None,
                       first_turn: FirstTurn | None = None) -> None:
        """Read the kernel's table and replace its content with ours: in one transaction, or (``staged``,
        the first apply) in stages that end with one transaction (see :mod:`stages`)."""
        assert self._nft is not None
        early = first_turn.early if first_turn is not None and staged else None
        if early is not None:
            kernel = early.kernel
        elif first_turn is not None and first_turn.listing is not None:
            kernel = parse_table(await first_turn.listing)
        else:
            kernel = parse_table(await self._nft.list_table(names.TABLE_FAMILY, names.TABLE_NAME))
        if staged:
            endpoints, ipsets = (first_turn.endpoints, first_turn.ipsets) if first_turn is not None else (None, None)
            # The last batch is small: libnftables in the namespace thread takes it ~3 ms sooner than a
            # process (8-9 ms against 12-14, measured), and a whole replace still goes to a process.
            report = await apply_in_stages(self.filter, kernel, self._send_bulk, while_running, endpoints, ipsets,
                                           origin=self._in_sync_at, run_last=self._send_batch,
                                           nice=self._nft.set_nice, early=early)
            table = self.filter.table
            table.clear_dirty()
            origin = early.stages.origin if early is not None else self._in_sync_at
            detail = {"batches": report.batches, "spans": report.spans, "rendered_at": report.rendered_at,
                      "sets_refilled": report.sets_refilled, "whole_replace": report.whole_replace,
                      "early_batches": report.early_batches,
                      "in_sync_at": round(self._in_sync_at - origin, 4) if self._in_sync_at and origin else 0.0}
        else:
            table = self.filter.table
            table.clear_dirty()
            await self._send(plan_replace(table, kernel).text())
            detail = {}
        self._programmed = snapshot(table)
        self._needs_replace = False
        self.stats.replaces += 1
        log.info("table replaced", had_table=kernel is not None,
                 stale_chains=len(set(kernel.chains) - set(table.chains)) if kernel else 0, **detail)
        del kernel
        if not staged:
            release()  # (the first apply releases once it is done)

    async def _refresh(self) -> None:
        """Read the table back and repair whatever differs from what we programmed."""
        assert self._nft is not None
        self._refresh_due = False
        self.stats.refreshes += 1
        kernel = parse_table(await self._nft.list_table(names.TABLE_FAMILY, names.TABLE_NAME))
        table = self.filter.table
        table.clear_dirty()
        if kernel is None:
            log.warning("table missing; recreating it")
            await self._replace()
            self.stats.repairs += 1
            return
        chains = set(table.chains) | set(kernel.chains)
        sets = set(table.sets) | set(kernel.sets)
        maps = set(table.maps) | set(kernel.maps)
        try:
            batch = plan_incremental(table, kernel, chains, sets, maps)
        except NeedsReplace as exc:
            log.warning("table changed in kind; replacing it", reason=str(exc))
            await self._replace()
            self.stats.repairs += 1
            return
        if not batch.empty:
            changed = [line.split()[3] for line in batch.text().splitlines()[1:] if len(line.split()) > 3]
            log.warning("dataplane drift repaired", objects=sorted(set(changed))[:20])
            await self._send(batch.text())
            self.stats.repairs += 1
        self._programmed = snapshot(table)
        del kernel, batch
        release()

    async def _send(self, text: str) -> None:
        job = asyncio.ensure_future(self._send_batch(text))
        hook, self._while_programming = self._while_programming, None
        if hook is not None:
            await asyncio.sleep(0)  # the job's first step hands the batch to nft (thread call or process)
            hook()
        await job

    async def _send_bulk(self, text: str) -> None:
        await self._send_batch(text, bulk=True)

    async def _send_batch(self, text: str, bulk: bool = False) -> None:
        assert self._nft is not None
        self.stats.nft_batches += 1
        try:
            await self._nft.apply(text, bulk=bulk)
        except NftablesError:
            self.stats.nft_failures += 1
            raise

    def _schedule_refresh(self) -> None:
        if self.settings.refresh_interval <= 0:
            return

        def due() -> None:
            self._refresh_due = True
            self._queue.put_nowait(_Wake())
            self._schedule_refresh()

        self._timers.append(asyncio.get_running_loop().call_later(self.settings.refresh_interval, due))

    def _schedule_route_resync(self) -> None:
        if self.settings.route_refresh_interval <= 0:
            return

        def due() -> None:
            self._route_resync_due = True
            self._queue.put_nowait(_Wake())

        self._timers.append(asyncio.get_running_loop().call_later(self.settings.route_refresh_interval, due))

    async def refresh_now(self, timeout: float = 10.0) -> None:
        """Read back and repair (nftables and routes) on the next turn, and wait for it."""
        self._refresh_due = True
        self._route_resync_due = True
        self._sent += 1
        self._queue.put_nowait(_Wake(counted=True))
        await self.settled(timeout)


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

