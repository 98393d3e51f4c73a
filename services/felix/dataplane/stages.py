"""The first apply in stages: nft loads the sets while Python folds and renders; one batch hooks it all.

How it works::

    the turn that brings InSync: fold InSync and the IP set and pool messages; the others
    (endpoints, policies, profiles, routes, configuration) wait in a backlog
        │
        ├─ stage 1: the table and every set known now, with its elements ─────────► nft (a process)
        │            (new sets created; sets we keep, when their content differs,
        │             flushed and refilled in the same batch)
        │      meanwhile, here: fold the backlog, then render the pending policy and profile chains
        ├─ stage 2…: whenever nft is idle and that work is not done, the new sets and the
        │            chains rendered so far that the kernel does not have, which jump nowhere
        │            and use no map ──────────────────────────────────────────────► nft
        ├─ beside stage 1: once everything is rendered, if stage 1 is still loading, the new
        │            unreached chains whose sets stage 1 carries (or the kernel has), with
        │            those sets declared (no elements: ``add set`` of an existing set of the
        │            same kind changes nothing) ─────────────────► a second nft, at the same time
        └─ last stage: everything else in ONE batch, planned against what the kernel now
                     holds: changed sets and chains swapped, new chains, the base chains and
                     dispatch maps, then stale chains, maps and sets deleted ────► nft

Two nft processes work at once there (the second core parses the chains while
the first loads the sets; the kernel commits one transaction at a time, in either
order, and nothing hooked refers to what either adds). Folding messages in another
order gives the same table (the desired table is a function of the messages' end
state, whatever the order between objects), so the backlog may wait. What packets
see: on a clean start nothing is hooked until the last batch commits, so they see
no Calico table, then all of it. On a restart the old rules stay in force until
the last batch swaps them in one transaction; only
IP set contents change earlier (as Calico updates its IP sets before its rules),
new sets and chains appear where nothing refers to them yet, and what is no longer
wanted goes last. If the kernel holds an object of another kind under one of our
names, the last batch is a whole-table replace instead (still one transaction).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from services.felix.dataplane.filterstate import FilterState
from services.felix.dataplane.ipsets import MapDef, SetDef
from services.felix.dataplane.ruleset import (
    TABLE,
    BaseSpec,
    Batch,
    Chain,
    DesiredTable,
    NeedsReplace,
    TableState,
    elements_lines,
    plan_incremental,
    plan_replace,
)
from services.felix.messages import (
    InSync,
    IPAMPoolRemove,
    IPAMPoolUpdate,
    IPSetDeltaUpdate,
    IPSetRemove,
    IPSetUpdate,
    Message,
)

RENDER_CHUNK = 48  # policy/profile chains rendered between looks at nft (~2-4 ms of work)
FOLD_CHUNK = 16  # backlog messages folded between looks at nft
MIN_MIDDLE_WEIGHT = 300  # a smaller middle stage waits for more (see stage_weight; each nft run costs ~5-10 ms)
_LOOK_EVERY = 4  # chunks between looks for a middle stage while nft is idle (a look scans the table)
_UNSTAGEABLE = (" jump ", " goto ", "vmap ")  # a reference to another chain or to a dispatch map
_UNSTAGEABLE_START = ("jump ", "goto ")
_SET_REF = re.compile(r"@([^\s,}]+)")  # a named set a rule matches on
_JUMP = re.compile(r"(?:jump|goto) (\S+)")  # a chain a rule jumps to

SetValue = tuple[SetDef, frozenset[str]]
ChainPlan = dict[str, tuple[Chain, set[str], set[str]]]  # chain → (chain, set refs, jump targets)


@dataclass(slots=True)
class StageReport:
    """What the staged apply did (for logs and tests); times in seconds from its start."""

    batches: list[int] = field(default_factory=list)  # lines per batch, in order
    spans: list[tuple[float, float]] = field(default_factory=list)  # each batch: (sent, done)
    rendered_at: float = 0.0  # when the last pending chain was rendered
    sets_refilled: int = 0
    whole_replace: bool = False


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


@dataclass(slots=True)
class FirstTurn:
    """What the turn that brings InSync starts before it folds anything: the listing of the kernel's
    table (an nft process, running while the IP sets are folded) and the backlog."""

    listing: asyncio.Future[dict[str, Any] | None]
    backlog: Backlog

    def close(self) -> None:
        """Fold what is left of the backlog; stop the listing if nobody took it (call it last)."""
        self.backlog.drain()
        if not self.listing.done():
            self.listing.cancel()
        elif not self.listing.cancelled():
            self.listing.exception()  # retrieved: a failure was reported by whoever awaited it, or is moot


def split_first_turn(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """The messages to fold before the first batch (InSync, pools and IP sets: the first batch's
    content) and the rest, each in the order given.

    Measured: folding all IP sets first beats starting nft sooner with a part of them (the
    first batch then carries the sets' half of nft's work while the rest is folded and rendered).
    """
    early: list[Message] = []
    late: list[Message] = []
    for msg in messages:
        if isinstance(msg, InSync | IPAMPoolUpdate | IPAMPoolRemove | IPSetUpdate | IPSetDeltaUpdate | IPSetRemove):
            early.append(msg)
        else:
            late.append(msg)
    return early, late


def copy_state(kernel: TableState | None) -> TableState:
    """A copy of the kernel's state that the stages update as their batches commit."""
    if kernel is None:
        return TableState()
    return TableState(chains=dict(kernel.chains), sets=dict(kernel.sets),
                      maps={name: (mapdef, dict(entries)) for name, (mapdef, entries) in kernel.maps.items()})


def plan_sets_stage(desired: DesiredTable, kernel: TableState) -> tuple[Batch, dict[str, SetValue], int]:
    """Stage 1: every wanted set whose kind the kernel does not contradict, with its elements.

    Returns the batch, the sets it makes right (name → value) and how many kept sets it refills.
    """
    batch = Batch()
    done: dict[str, SetValue] = {}
    refilled = 0
    for name, value in desired.sets.items():
        setdef, elements = value
        have = kernel.sets.get(name)
        if have is None:
            batch.create.append(f"add set {TABLE} {name} {setdef.declaration()}")
        elif have[0] != setdef:
            continue  # another kind under our name: only the last batch (a whole replace) can swap it
        elif have[1] == elements:
            done[name] = value
            continue
        else:
            batch.elements_out.append(f"flush set {TABLE} {name}")
            refilled += 1
        batch.elements_in.extend(elements_lines(name, elements, "add", ordered=False))
        done[name] = value
    return batch, done, refilled


def _stageable(chain: Chain) -> bool:
    """A chain that can be loaded before the hooks: no hook itself, no jumps, no dispatch maps."""
    if chain.base is not None:
        return False
    for body in chain.rules:
        if body.startswith(_UNSTAGEABLE_START) or any(marker in body for marker in _UNSTAGEABLE):
            return False
    return True


def plan_unreached_stage(desired: DesiredTable, staged: TableState, skip: set[str]
                         ) -> tuple[Batch, dict[str, SetValue], dict[str, tuple[BaseSpec | None, tuple[str, ...]]]]:
    """A middle stage: the new sets, and new chains nothing hooked can reach (see :func:`_stageable`).

    Chains found unstageable are added to ``skip`` so they are not looked at again.
    Returns the batch and what it makes right (sets, chains).
    """
    batch = Batch()
    sets: dict[str, SetValue] = {}
    chains: dict[str, tuple[BaseSpec | None, tuple[str, ...]]] = {}
    for name, chain in desired.chains.items():
        if name in staged.chains or name in skip:
            continue
        if not _stageable(chain):
            skip.add(name)
            continue
        batch.create.append(f"add chain {TABLE} {name}")
        batch.add_rules(chain)
        chains[name] = (None, chain.hashes)
    for name, value in desired.sets.items():
        have = staged.sets.get(name)
        if have is None:
            batch.create.append(f"add set {TABLE} {name} {value[0].declaration()}")
            batch.elements_in.extend(elements_lines(name, value[1], "add", ordered=False))
            sets[name] = value
    return batch, sets, chains


def plan_beside_stage(desired: DesiredTable, staged: TableState, loading: dict[str, SetValue],
                      loading_chains: Collection[str] = ()
                      ) -> tuple[Batch, dict[str, tuple[BaseSpec | None, tuple[str, ...]]]]:
    """The stage sent beside a running sets stage: new chains that no hook, dispatch map or kernel
    chain refers to (policy, profile and endpoint chains; none is reached until the last batch hooks
    it), whose sets the kernel has or ``loading`` (that stage's sets) carries and whose jumps land on
    chains the kernel has or this batch adds; those sets are declared without elements, so the batch
    commits correctly before or after the sets stage. ``loading_chains`` (a middle stage's) are left
    to that stage; rules may jump to them, declared here (empty) too.

    Returns the batch and the chains it makes right (its sets are the sets stage's to record).
    """
    wanted: ChainPlan = {}
    for name, chain in desired.chains.items():
        if name in staged.chains or chain.base is not None or name in loading_chains:
            continue
        refs: set[str] = set()
        targets: set[str] = set()
        for body in chain.rules:
            if "vmap " in body:
                break
            if "@" in body:
                refs.update(_SET_REF.findall(body))
            if "jump " in body or "goto " in body:
                targets.update(_JUMP.findall(body))
        else:
            if all(ref in staged.sets or ref in loading for ref in refs):
                wanted[name] = (chain, refs, targets)
    for _ in range(len(wanted) + 1):  # drop chains that jump to a chain neither there nor here, until none do
        lost = [name for name, (_c, _r, targets) in wanted.items()
                if any(t not in staged.chains and t not in wanted and t not in loading_chains for t in targets)]
        if not lost:
            break
        for name in lost:
            del wanted[name]
    batch = Batch()
    declare = sorted({ref for _c, refs, _t in wanted.values() for ref in refs if ref not in staged.sets})
    batch.create.extend(f"add set {TABLE} {name} {loading[name][0].declaration()}" for name in declare)
    elsewhere = sorted({t for _c, _r, targets in wanted.values() for t in targets if t in loading_chains})
    batch.create.extend(f"add chain {TABLE} {name}" for name in [*wanted, *elsewhere])  # before any jump
    chains: dict[str, tuple[BaseSpec | None, tuple[str, ...]]] = {}
    for name, (chain, _refs, _targets) in wanted.items():
        batch.add_rules(chain)
        chains[name] = (None, chain.hashes)
    return batch, chains


def stage_weight(batch: Batch, sets: dict[str, SetValue]) -> int:
    """A rough measure of nft's work for a batch: rules and objects, plus set elements (cheaper each)."""
    return len(batch.rules) + 2 * len(batch.create) + sum(len(elements) for _def, elements in sets.values()) // 3


def _record(staged: TableState, sets: dict[str, SetValue],
            chains: dict[str, tuple[BaseSpec | None, tuple[str, ...]]]) -> None:
    staged.sets.update(sets)
    staged.chains.update(chains)


def plan_last_stage(desired: DesiredTable, staged: TableState) -> tuple[Batch, bool]:
    """The hooking batch: make the kernel (as the stages left it) equal to ``desired`` in one transaction.

    Returns the batch and whether it had to be a whole-table replace (objects of another kind).
    """
    chains = set(desired.chains) | set(staged.chains)
    sets = set(desired.sets) | set(staged.sets)
    maps = set(desired.maps) | set(staged.maps)
    try:
        return plan_incremental(desired, staged, chains, sets, maps), False
    except NeedsReplace:
        return plan_replace(desired, staged), True


def _kinds_agree(desired: DesiredTable, staged: TableState) -> bool:
    """No wanted set or map exists in the kernel with another declaration (middle stages need that)."""
    for name, (setdef, _elements) in desired.sets.items():
        have = staged.sets.get(name)
        if have is not None and have[0] != setdef:
            return False
    for name, (mapdef, _entries) in desired.maps.items():
        have_map: tuple[MapDef, dict[str, str]] | None = staged.maps.get(name)
        if have_map is not None and have_map[0] != mapdef:
            return False
    return True


async def apply_in_stages(state: FilterState, kernel: TableState | None, run: Callable[[str], Awaitable[None]],
                          while_running: Callable[[], Awaitable[None]] | None = None,
                          backlog: Backlog | None = None) -> StageReport:
    """Program ``state``'s whole table over ``kernel`` in stages (see the module docstring).

    ``run`` applies one batch (atomically) and raises when nft rejects it; ``backlog`` holds messages
    still to fold into ``state`` (all folded before this returns, whatever happens);
    ``while_running`` starts once folding and rendering are done (this thread is free then, nft
    still busy) and is awaited before returning: work that must not delay the first apply goes there.
    """
    report = StageReport()
    started = time.perf_counter()
    staged = copy_state(kernel)
    raw = state.unrendered_table
    batch, done, report.sets_refilled = plan_sets_stage(raw, staged)
    job: asyncio.Future[None] | None = None
    inflight: tuple[dict[str, SetValue], dict[str, tuple[BaseSpec | None, tuple[str, ...]]]] = (done, {})

    async def timed(text: str, index: int) -> None:
        await run(text)
        report.spans[index] = (report.spans[index][0], round(time.perf_counter() - started, 4))

    def launch(batch: Batch) -> asyncio.Future[None]:
        report.batches.append(batch.size)
        report.spans.append((round(time.perf_counter() - started, 4), 0.0))
        return asyncio.ensure_future(timed(batch.text(), len(report.spans) - 1))

    def work_left() -> bool:
        return bool(backlog) or state.pending > 0

    if batch.empty:
        _record(staged, done, {})
    else:
        job = launch(batch)
    skip: set[str] = set()
    worked = _LOOK_EVERY  # chunks of work done since the last look for a middle stage
    try:
        while work_left():
            await asyncio.sleep(0)  # lets nft start, and lets us notice that it finished
            if backlog:
                backlog.fold(FOLD_CHUNK)
            else:
                state.render_pending(RENDER_CHUNK)
            worked += 1
            if job is not None and job.done():
                job.result()  # raises NftablesError: the kernel kept what it had
                _record(staged, *inflight)
                job = None
            if job is None and worked >= _LOOK_EVERY and work_left() and _kinds_agree(raw, staged):
                worked = 0
                middle, sets, chains = plan_unreached_stage(raw, staged, skip)
                if stage_weight(middle, sets) >= MIN_MIDDLE_WEIGHT:
                    inflight = (sets, chains)
                    job = launch(middle)
    finally:
        if backlog is not None:
            backlog.drain()
    report.rendered_at = round(time.perf_counter() - started, 4)
    beside: list[asyncio.Future[None]] = []
    side: asyncio.Future[None] | None = None
    try:
        if job is not None and not job.done() and not inflight[1] and _kinds_agree(raw, staged):
            # nft is still loading the sets: a second nft takes the chains nothing hooked reaches meanwhile.
            # Measured: that pays while the sets load (one core idles otherwise); beside a middle stage
            # (itself chains) it gains nothing, nor does splitting the chains between two processes.
            extra, chains = plan_beside_stage(raw, staged, inflight[0], inflight[1])
            if stage_weight(extra, {}) >= MIN_MIDDLE_WEIGHT:
                beside.append(launch(extra))
                _record(staged, {}, chains)  # plan as if it commits (see below)
        if while_running is not None:  # rendering is done: this thread is free from here on
            await asyncio.sleep(0)  # a just-launched job's first step hands its batch to nft
            side = asyncio.ensure_future(while_running())
        if job is not None:
            _record(staged, *inflight)  # plan as if it commits: if it fails, all of this is thrown away
        last, report.whole_replace = plan_last_stage(state.table, staged)
        for running in (job, *beside):
            if running is not None:
                await running
        if not last.empty:
            await launch(last)
    except BaseException:
        for task in (job, *beside, side):  # none may outlive this call (a cancelled nft commits nothing)
            if task is not None and not task.done():
                task.cancel()
        await asyncio.gather(*(t for t in (job, *beside, side) if t is not None), return_exceptions=True)
        raise
    if side is not None:
        await side
    return report
