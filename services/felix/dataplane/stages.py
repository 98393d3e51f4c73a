"""The first apply in stages: nft loads the chains while Python folds the IP sets; one batch hooks it all.

How it works::

    EndpointsReady (the graph sends configuration, pools and local endpoints first, the rest ~0.15 s
    later, see start_early): list the kernel's table, fold them, launch chains 1 at once (below)
        ...
    the turn that brings InSync: fold InSync, configuration, pools, routes, policies and profiles
    (a policy or profile is only recorded: its chains render later); endpoints and IP sets wait
        │
        ├─ chains 1: fold the endpoints; their chains (most of the rules), with the policy and
        │            profile chains they jump to declared (empty) ─────────────────► nft (a process)
        │            (already in nft's hands when EndpointsReady came first: then only endpoints
        │            that changed since go here or, if their chain went early, in the last batch)
        ├─ chains 2: render the policy and profile chains: them and every other new chain that
        │            nothing hooked, no dispatch map and no kernel chain refers to, with the sets
        │            their rules name declared (no elements) ──────────────────────► a second nft
        ├─ sets:     fold the IP sets (a chain whose set turned out to need another kind of set renders
        │            again); every set with its elements (new sets created; sets we keep, when their
        │            content differs, flushed and refilled in the same batch) ─────► a third nft
        └─ last:     everything else in ONE batch, planned against what the kernel then holds: changed
                     sets and chains swapped, new chains, the base chains and dispatch maps, then stale
                     chains, maps and sets deleted ────────────────────────────────► nft

The kernel commits one transaction at a time, in whatever order the processes
get there: nothing in the first three batches depends on another (a batch
declares the sets and chains its rules name; ``add set`` and ``add chain`` of an
existing object of the same kind change nothing), and nothing hooked refers to
what they add. Why this order (measured with the batches of the e2e benchmark's
world, each ``nft -f`` in a fresh namespace): the chains are nft's longest job
(0.22-0.24 s alone, the sets 0.16 s, both at once 0.27-0.29 s); sets that follow
the chains by 80 ms cost nothing (0.27 s), chains that follow the sets by 80 ms
do (0.30 s). The endpoint chains, most of the rules, are ready ~20 ms after
InSync, the policy chains ~30 ms later, the IP sets (~30 ms to fold) after
that. What counts is how soon the first real batch goes and that the others
follow before nft runs dry. While this thread still folds and renders, the nft processes can run at a
lower priority (STAGED_NFT_NICE; 0 since the policy chains also go early, when nft became the longer
path). Folding messages in another order gives the same table (the desired
table is a function of the messages' end state, whatever the order between
objects), so endpoints and IP sets may wait. What packets see: on a clean start nothing is hooked until the
last batch commits, so they see no Calico table, then all of it. On a restart
the old rules stay in force until the last batch swaps them in one transaction;
only IP set contents change earlier (as Calico updates its IP sets before its
rules), new sets and chains appear where nothing refers to them yet, and what
is no longer wanted goes last. If the kernel holds an object of another kind
under one of our names, only the sets the kernel does not contradict go early
and the last batch is a whole-table replace (still one transaction).

Started early (:func:`start_early`, on EndpointsReady): chains 1 goes while the
graph still works out the policies and IP sets, so nft's biggest job overlaps
the graph instead of following it. It is planned against the kernel as listed
then, with every policy or profile chain the endpoints jump to declared empty
(the graph sends those after). The InSync turn continues with the same stages
(:func:`apply_in_stages` with ``early``): chains 1 counts as committing, an
endpoint whose chain changed since is swapped by the last batch (it compares
against what chains 1 loads), and a chains 1 that failed fails the apply (the
existing error path: the next turn lists the kernel and replaces it all). With
the endpoint chains already loading, the IP sets are then nft's biggest job
left: they fold first and go in SETS_PARTS batches (nft starts on the first
while the rest folds), then the policy and profile chains render (with the sets'
final kinds) and go; the last batch as always.

Policies early too (:func:`start_policies`, on PoliciesReady, which the graph
sends after EndpointsReady and before the IP sets): chains 2 goes before InSync
as well, with every set its rules name declared empty (a set not folded yet
under its plain name; one whose members need an interval set is another set,
and the chains naming it render again for the last batch). The sets batches
then plan around the empty stand-ins still to fold and are held until the
batches declaring their sets have committed (SETS_AFTER_DECLARING), so each
set is created once.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from services.felix.dataplane.filterstate import FilterState
from services.felix.dataplane.ipsets import SetDef
from services.felix.dataplane.ruleset import Batch, DesiredTable, TableState
from services.felix.dataplane.stageplan import (
    ChainValue,
    SetValue,
    copy_state,
    kinds_agree,
    plan_chains_stage,
    plan_last_stage,
    plan_sets_stage,
    stage_weight,
)
from services.felix.messages import (
    HostEndpointRemove,
    HostEndpointUpdate,
    IPSetDeltaUpdate,
    IPSetRemove,
    IPSetUpdate,
    Message,
    WorkloadEndpointRemove,
    WorkloadEndpointUpdate,
)

RENDER_CHUNK = 64  # policy/profile chains rendered between looks at the event loop (~1 ms of work)
FOLD_CHUNK = 32  # backlog messages folded between looks at the event loop
# Niceness of the nft processes while this thread still folds and renders (0: none). It was 5 while the
# graph's work was the longer path; with the policy chains loading before InSync too, nft is the longer
# one from the first batch on (see docs/felix.md; measured A/B in docs/felix-dataplane.md).
STAGED_NFT_NICE = 0
# Sets batches after an early start: nft starts on a third while the rest folds (e2e world, A/B alternating:
# 2 -> 3 parts -0.015 s of the first apply; 3 -> 4 no change).
SETS_PARTS = 3
# After an early start the sets batches wait for the chains batches that declare their sets to commit, and
# fill them without a second ``add set`` each (A/B in docs/felix-dataplane.md).
SETS_AFTER_DECLARING = True
MIN_CHAINS_WEIGHT = 300  # a smaller first chains batch waits for the next (see stage_weight; each nft run ~5-10 ms)


@dataclass(slots=True)
class StageReport:
    """What the staged apply did (for logs and tests); times in seconds from ``origin`` (its start, or
    when the dataplane got InSync)."""

    batches: list[int] = field(default_factory=list)  # lines per batch, in order
    spans: list[tuple[float, float]] = field(default_factory=list)  # each batch: (sent, done)
    rendered_at: float = 0.0  # when the last message was folded and the last pending chain rendered
    sets_refilled: int = 0
    whole_replace: bool = False
    early_batches: int = 0  # batches launched before InSync (see start_early)


class Backlog:
    """Messages folded while the first batches are in nft's hands (see :func:`split_first_turn`)."""

    def __init__(self, messages: list[Message], fold: Callable[[Message], None]) -> None:
        self._messages = deque(messages)
        self._fold = fold

    def __len__(self) -> int:
        return len(self._messages)

    def fold(self, count: int) -> None:
        """Fold the next ``count`` messages (or what is left)."""
        for _ in range(min(count, len(self._messages))):
            self._fold(self._messages.popleft())

    def drain(self) -> None:
        """Fold all that is left."""
        self.fold(len(self._messages))


class FirstTurnMessages(NamedTuple):
    """The first turn's messages in three groups, each in the order given (see :func:`split_first_turn`)."""

    now: list[Message]
    endpoints: list[Message]
    ipsets: list[Message]


@dataclass(slots=True)
class FirstTurn:
    """What the turn that brings InSync starts before it folds anything: the listing of the kernel's
    table (an nft process; None when the apply started early) and the backlogs (endpoint and IP set
    messages); ``early``: what :func:`start_early` launched on EndpointsReady."""

    listing: asyncio.Future[dict[str, Any] | None] | None
    endpoints: Backlog
    ipsets: Backlog
    early: EarlyStages | None = None

    def close(self) -> None:
        """Fold what is left of the backlogs; stop the listing if nobody took it (call it last)."""
        self.endpoints.drain()
        self.ipsets.drain()
        if self.early is not None:
            self.early.cancel()  # (apply_in_stages awaited or cancelled them; this is for when it never ran)
        if self.listing is None:
            return
        if not self.listing.done():
            self.listing.cancel()
        elif not self.listing.cancelled():
            self.listing.exception()  # retrieved: a failure was reported by whoever awaited it, or is moot


_ENDPOINT_MESSAGES = (WorkloadEndpointUpdate, WorkloadEndpointRemove, HostEndpointUpdate, HostEndpointRemove)
_IPSET_MESSAGES = (IPSetUpdate, IPSetDeltaUpdate, IPSetRemove)


def split_first_turn(messages: list[Message]) -> FirstTurnMessages:
    """The messages to fold at once (everything the first chains need: policies, profiles, configuration,
    pools, routes, InSync), the endpoint messages (folded before the other chains render) and the IP set
    messages (folded while nft loads the chains)."""
    out = FirstTurnMessages([], [], [])
    for msg in messages:
        if isinstance(msg, _IPSET_MESSAGES):
            out.ipsets.append(msg)
        elif isinstance(msg, _ENDPOINT_MESSAGES):
            out.endpoints.append(msg)
        else:
            out.now.append(msg)
    return out


def _committed(job: asyncio.Future[None]) -> bool:
    """Whether a batch's job is done and nft took the batch (it is in the kernel)."""
    return job.done() and not job.cancelled() and job.exception() is None


class _Stages:
    """The batches of one staged apply: launched as nft jobs, recorded once all are planned."""

    def __init__(self, run: Callable[[str], Awaitable[None]], report: StageReport, origin: float) -> None:
        self.run = run
        self.report = report
        self.origin = origin
        self.jobs: list[asyncio.Future[None]] = []
        self.chains: dict[str, ChainValue] = {}  # what the chains batches add (as if they commit)
        # Each chains batch's job and the sets it declares (empty until the sets stage fills them).
        self.declared_by: list[tuple[asyncio.Future[None], dict[str, SetDef]]] = []
        self.held: list[Batch] = []  # sets batches waiting for those to commit (see launch_held)
        self.declared_chains: set[str] = set()  # the chains they declare for a jump (empty until filled)
        self.sets: dict[str, SetValue] = {}  # what the sets stage makes right

    def now(self) -> float:
        """Seconds since the origin."""
        return round(time.perf_counter() - self.origin, 4)

    async def _timed(self, text: str, index: int) -> None:
        await self.run(text)
        self.report.spans[index] = (self.report.spans[index][0], self.now())

    async def launch(self, batch: Batch) -> asyncio.Future[None]:
        """Hand ``batch`` to nft; returns once its job started (its first step ran)."""
        self.report.batches.append(batch.size)
        self.report.spans.append((self.now(), 0.0))
        job = asyncio.ensure_future(self._timed(batch.text(), len(self.report.spans) - 1))
        self.jobs.append(job)
        await asyncio.sleep(0)  # the job's first step hands the batch to nft
        return job

    def check(self) -> None:
        """Raise a finished job's failure now (the kernel kept what it had)."""
        for job in self.jobs:
            if job.done():
                job.result()

    async def chains_stage(self, raw: DesiredTable, staged: TableState, min_weight: int,
                           later: Collection[str] = ()) -> None:
        """Plan and launch a chains batch (unless it weighs less than ``min_weight``); ``later``: chains a
        later batch brings (rules may jump there: declared here, empty)."""
        loading = self.chains.keys() | later if later else self.chains
        batch, chains, declared, elsewhere = plan_chains_stage(raw, staged, loading)
        if chains and stage_weight(batch, {}) >= min_weight:
            self.chains.update(chains)
            self.declared_chains.update(elsewhere)
            self.declared_by.append((await self.launch(batch), declared))

    async def sets_stage(self, raw: DesiredTable, staged: TableState, unfilled: Collection[str] = (), *,
                         hold: bool = False) -> None:
        """Plan and launch a sets batch: every set as folded so far that no earlier sets batch took (see
        :func:`plan_sets_stage`; one changed since it went is swapped by the last batch), less ``unfilled``
        (empty stand-ins for IP sets still to fold, see :meth:`FilterState.unfilled_sets`). ``hold``: keep
        it for :meth:`launch_held`, which launches it once the chains batches that declare sets commit."""
        # Sets a chains batch created are filled without a second ``add set`` (kernel work for each of the
        # e2e world's 1,303 sets): when that batch has committed, or when this one is held until it has.
        committed = {name: setdef for job, declared in self.declared_by if hold or _committed(job)
                     for name, setdef in declared.items()}
        batch, sets, refilled = plan_sets_stage(raw, staged, self.sets.keys() | unfilled if unfilled else self.sets,
                                                committed)
        self.sets.update(sets)
        self.report.sets_refilled += refilled
        if batch.empty:
            return
        if hold:
            self.held.append(batch)
        else:
            await self.launch(batch)

    async def launch_held(self) -> None:
        """Launch the held sets batches once every chains batch that declares sets has committed (a failed
        one raises here: nothing held is launched, and the apply fails as it would have anyway)."""
        for job, declared in self.declared_by:
            if declared:
                await job
        held, self.held = self.held, []
        for batch in held:
            await self.launch(batch)

    def record(self, staged: TableState) -> None:
        """Update ``staged`` as if every launched batch commits (if one fails, all of it is thrown away)."""
        for _job, declared in self.declared_by:
            for name, setdef in declared.items():
                staged.sets.setdefault(name, (setdef, frozenset()))
        staged.sets.update(self.sets)
        for name in self.declared_chains:
            staged.chains.setdefault(name, (None, ()))
        staged.chains.update(self.chains)


@dataclass(slots=True)
class EarlyStages:
    """A staged apply begun on EndpointsReady (see :func:`start_early`): the kernel's table as listed
    then, the state the stages update, and the stages with chains 1 in nft's hands (or none)."""

    kernel: TableState | None
    staged: TableState
    stages: _Stages
    kinds_agree: bool

    @property
    def launched(self) -> int:
        """How many batches went to nft."""
        return len(self.stages.jobs)

    def cancel(self) -> None:
        """Stop the batches still running (a cancelled nft commits nothing)."""
        for job in self.stages.jobs:
            if not job.done():
                job.cancel()

    async def aclose(self) -> None:
        """Stop the batches still running and wait for them (their failures are moot then)."""
        self.cancel()
        await asyncio.gather(*self.stages.jobs, return_exceptions=True)


async def start_early(state: FilterState, kernel: TableState | None, run: Callable[[str], Awaitable[None]],
                      origin: float | None = None, nice: Callable[[int], None] | None = None) -> EarlyStages:
    """Chains 1 before InSync: the endpoint chains folded into ``state`` (and whatever else nothing hooked
    reaches), the policy and profile chains they jump to declared empty, launched as one batch over
    ``kernel``; returns once nft has it (or at once when there is nothing to launch). Continue with
    :func:`apply_in_stages` (``early=``) when InSync comes."""
    stages = _Stages(run, StageReport(), time.perf_counter() if origin is None else origin)
    staged = copy_state(kernel)
    raw = state.unrendered_table
    agree = kinds_agree(raw, staged)
    if agree:
        if nice is not None and STAGED_NFT_NICE:  # this thread still has the graph's work to do
            nice(STAGED_NFT_NICE)
        # The graph sends the policies and profiles later: until then their chains are stubs that drop.
        await stages.chains_stage(raw, staged, 1, later=state.unknown_chains)
    stages.report.early_batches = len(stages.jobs)
    return EarlyStages(kernel, staged, stages, agree)


async def start_policies(state: FilterState, early: EarlyStages) -> list[int]:
    """Chains 2 before InSync, after :func:`start_early`: the policy and profile chains folded into ``state``
    rendered (in chunks) and launched as one batch, with the sets their rules name declared (empty; of the
    plain kind: a set whose members turn out to need an interval set is another set, and a chain that
    names it renders again and goes in the last batch). Returns the lines launched ([] when nothing was:
    kinds the kernel contradicts, or an early batch already failed; the InSync turn deals with both)."""
    stages = early.stages
    if not early.kinds_agree:
        return []
    while state.pending:
        state.render_pending(RENDER_CHUNK)
        await asyncio.sleep(0)
    if any(job.done() and not _committed(job) for job in stages.jobs):
        return []
    before = len(stages.jobs)
    await stages.chains_stage(state.unrendered_table, early.staged, 1)
    stages.report.early_batches = len(stages.jobs)
    return stages.report.batches[before:]


async def _fold(backlog: Backlog | None, stages: _Stages, leave: int = 0) -> None:
    """Fold a backlog in chunks (all but ``leave`` messages), looking at the event loop (and at failed
    jobs) between them."""
    while backlog is not None and len(backlog) > leave:
        backlog.fold(min(FOLD_CHUNK, len(backlog) - leave))
        await asyncio.sleep(0)
        stages.check()


async def _render(state: FilterState, stages: _Stages) -> None:
    """Render the pending chains in chunks, looking at the event loop (and at failed jobs) between them."""
    while state.pending:
        state.render_pending(RENDER_CHUNK)
        await asyncio.sleep(0)
        stages.check()


async def apply_in_stages(state: FilterState, kernel: TableState | None, run: Callable[[str], Awaitable[None]],
                          while_running: Callable[[], Awaitable[None]] | None = None,
                          endpoints: Backlog | None = None, ipsets: Backlog | None = None,
                          origin: float | None = None, run_last: Callable[[str], Awaitable[None]] | None = None,
                          nice: Callable[[int], None] | None = None, early: EarlyStages | None = None
                          ) -> StageReport:
    """Program ``state``'s whole table over ``kernel`` in stages (see the module docstring).

    ``run`` applies one batch (atomically) and raises when nft rejects it (``run_last``, when given,
    applies the last one); ``endpoints`` and ``ipsets`` hold messages still to fold into ``state`` (all
    folded before this returns, whatever happens); ``while_running`` starts once folding and rendering
    are done (this thread is free then, nft still busy) and is awaited before returning: work that must
    not delay the first apply goes there. Report times count from ``origin`` (a ``time.perf_counter()``
    value; default: now). ``nice(n)`` sets the niceness of the nft processes, running and to come: they
    yield to this thread while it still makes batches. ``early``: the stages :func:`start_early` began
    (then ``kernel`` and ``origin`` are its own; its batches count as committing, and are awaited or
    cancelled here like the others).
    """
    if early is not None:
        stages, staged = early.stages, early.staged
        stages.run = run
        report = stages.report
    else:
        report = StageReport()
        stages = _Stages(run, report, time.perf_counter() if origin is None else origin)
        staged = copy_state(kernel)
    raw = state.unrendered_table
    side: asyncio.Future[None] | None = None
    if nice is not None and STAGED_NFT_NICE:
        nice(STAGED_NFT_NICE)
    try:
        stages.check()  # (an early batch that failed already: no need to fold and render for nothing)
        agree = kinds_agree(raw, staged)  # else: every chain waits for the last batch (a whole replace)
        await _fold(endpoints, stages)
        if agree:  # the endpoint chains (most of the rules; those not sent early), the policy chains they
            # jump to declared
            await stages.chains_stage(raw, staged, MIN_CHAINS_WEIGHT, later=state.pending_chains)
        # With the endpoint chains already in nft's hands, the sets (0.16 s of nft alone) are the biggest
        # job left, the policy chains the smallest: the sets go first then (they need no rendering).
        sets_first = early is not None and early.launched > 0
        if sets_first:  # in parts: nft starts on the first while the others fold
            total = len(ipsets) if ipsets is not None else 0
            for part in range(SETS_PARTS - 1, -1, -1):
                await _fold(ipsets, stages, leave=total * part // SETS_PARTS)
                # (sets the policy chains name, still to fold, are empty stand-ins until then)
                await stages.sets_stage(raw, staged, state.unfilled_sets() if part else (), hold=SETS_AFTER_DECLARING)
            await stages.launch_held()
        await _render(state, stages)
        if agree and kinds_agree(raw, staged):  # the policy and profile chains, and whatever else is new
            await stages.chains_stage(raw, staged, 1)
        await _fold(ipsets, stages)
        await _render(state, stages)  # chains whose sets turned out to be of another kind
        report.rendered_at = stages.now()
        if not sets_first:
            await stages.sets_stage(raw, staged)
        if nice is not None and STAGED_NFT_NICE:  # folding and rendering are done: nft at full speed now
            nice(0)
        if while_running is not None:  # and this thread is free
            side = asyncio.ensure_future(while_running())
        stages.record(staged)
        last, report.whole_replace = plan_last_stage(state.table, staged)
        for job in list(stages.jobs):
            await job
        if not last.empty:
            if run_last is not None:
                stages.run = run_last
            await (await stages.launch(last))
    except BaseException:
        for task in (*stages.jobs, side):  # none may outlive this call (a cancelled nft commits nothing)
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (*stages.jobs, side) if t is not None), return_exceptions=True)
        raise
    finally:
        for backlog in (endpoints, ipsets):
            if backlog is not None:
                backlog.drain()
        if nice is not None and STAGED_NFT_NICE:
            nice(0)
    if side is not None:
        await side
    return report
