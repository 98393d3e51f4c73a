"""The staged first apply: what each stage may contain, and the order of the batches (no kernel)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import pytest

from services.felix.dataplane import names, stages
from services.felix.dataplane.errors import NftablesError
from services.felix.dataplane.filterstate import FilterMessage, FilterState
from services.felix.dataplane.ipsets import MapDef, SetDef
from services.felix.dataplane.ruleset import (
    BaseSpec,
    DesiredTable,
    TableState,
    make_chain,
    snapshot,
)
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.dataplane.stageplan import plan_chains_stage, plan_last_stage, plan_sets_stage
from services.felix.dataplane.stages import (
    SETS_PARTS,
    Backlog,
    StageReport,
    apply_in_stages,
    split_first_turn,
    start_early,
)
from services.felix.messages import (
    ActivePolicyUpdate,
    ActiveProfileUpdate,
    ConfigUpdate,
    InSync,
    IPAMPoolUpdate,
    IPSetDeltaUpdate,
    IPSetType,
    IPSetUpdate,
    Message,
    PolicyID,
    PortRange,
    Rule,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointUpdate,
)
from tests.unit.felix.nftlines import script_lines

PLAIN = SetDef("cali40s-a", "ipv4_addr", False)
FORWARD = BaseSpec("filter", "forward", 0)


def desired() -> DesiredTable:
    table = DesiredTable()
    table.put_set(PLAIN, frozenset({"10.0.0.1", "10.0.0.2"}))
    table.put_set(SetDef("cali40s-b", "ipv4_addr", False), frozenset({"10.0.0.3"}))
    table.put_set(SetDef("cali40s-c", "ipv4_addr", False), frozenset())
    table.put_chain(make_chain("cali-pi-p", ["ip saddr @cali40s-a accept"]))
    table.put_chain(make_chain("cali-tw-x", ["jump cali-pi-p", "drop"]))
    table.put_chain(make_chain("cali-wl-to-host", ["iifname vmap @cali-from-wl-dispatch", "drop"]))
    table.put_chain(make_chain("filter-FORWARD", ["accept"], FORWARD))
    table.ensure_map(MapDef("cali-to-wl-dispatch"))
    table.put_map_entry(MapDef("cali-to-wl-dispatch"), "x", "jump cali-tw-x")
    return table


def test_sets_stage_creates_new_sets_refills_changed_ones_and_leaves_other_kinds() -> None:
    table = desired()
    clean, done, refilled = plan_sets_stage(table, TableState())
    lines = script_lines(clean.text())
    assert lines[0] == "add table inet calico" and refilled == 0
    assert all(line.startswith(("add table", "add set", "add element")) for line in lines)
    assert any(line in (f"add element inet calico cali40s-a {{ {a}, {b} }}" for a, b in (("10.0.0.1", "10.0.0.2"),
                                                                                   ("10.0.0.2", "10.0.0.1")))
               for line in lines)  # (element order is nft's business)
    assert set(done) == {"cali40s-a", "cali40s-b", "cali40s-c"}

    kernel = TableState(sets={
        "cali40s-a": (PLAIN, frozenset({"10.0.0.1", "10.0.0.2"})),  # already right: not touched
        "cali40s-b": (SetDef("cali40s-b", "ipv4_addr", False), frozenset({"10.9.9.9"})),  # refilled
        "cali40s-c": (SetDef("cali40s-c", "ipv6_addr", False), frozenset()),  # another kind: left alone
    })
    batch, done, refilled = plan_sets_stage(table, kernel)
    lines = script_lines(batch.text())
    assert refilled == 1 and set(done) == {"cali40s-a", "cali40s-b"}
    assert lines == ["add table inet calico", "flush set inet calico cali40s-b",
                     "add element inet calico cali40s-b { 10.0.0.3 }"]


def test_sets_an_earlier_batch_created_are_filled_without_declaring_them_again() -> None:
    table = desired()
    committed = {"cali40s-a": PLAIN, "cali40s-c": SetDef("cali40s-c", "ipv4_addr", False)}  # in the kernel, empty
    batch, done, refilled = plan_sets_stage(table, TableState(), committed=committed)
    lines = script_lines(batch.text())
    assert refilled == 0 and set(done) == {"cali40s-a", "cali40s-b", "cali40s-c"}
    assert not any(line.startswith(("add set inet calico cali40s-a ", "add set inet calico cali40s-c ", "flush"))
                   for line in lines)  # nothing to declare, nothing to flush; cali40s-c is right as it is
    assert any(line.startswith("add element inet calico cali40s-a {") for line in lines)
    assert "add set inet calico cali40s-b { type ipv4_addr; }" in lines  # not created earlier: declared here
    kernel = TableState(sets={"cali40s-a": (PLAIN, frozenset({"10.9.9.9"}))})  # the kernel's own content wins
    batch, _done, refilled = plan_sets_stage(table, kernel, committed=committed)
    assert refilled == 1 and "flush set inet calico cali40s-a" in script_lines(batch.text())


def test_a_chains_stage_holds_only_chains_nothing_hooked_reaches() -> None:
    table = desired()
    table.drop_chain("cali-pi-p")  # not rendered yet: a later batch brings it
    batch, chains, declared, elsewhere = plan_chains_stage(table, TableState(), loading_chains={"cali-pi-p"})
    assert set(chains) == {"cali-tw-x"}  # no hooks, no maps; its jump lands on a chain declared here
    assert elsewhere == ["cali-pi-p"] and declared == {}
    lines = script_lines(batch.text())
    assert "add chain inet calico cali-pi-p" in lines and not any("add rule inet calico cali-pi-p " in line
                                                                   for line in lines)
    assert "hook" not in batch.text() and "cali-to-wl-dispatch" not in batch.text()
    table = desired()
    batch, chains, declared, elsewhere = plan_chains_stage(table, TableState(sets=dict(table.sets)))
    assert set(chains) == {"cali-pi-p", "cali-tw-x"} and declared == {} and elsewhere == []
    batch, chains, declared, _ = plan_chains_stage(table, TableState())
    assert declared == {"cali40s-a": PLAIN}  # a set the kernel lacks is declared, without elements
    assert not any(line.startswith("add element") for line in script_lines(batch.text()))


def test_last_stage_swaps_only_what_differs_and_deletes_stale_objects_last() -> None:
    table = desired()
    kernel = snapshot(table)
    kernel.chains["cali-pi-p"] = (None, ("old",))
    kernel.chains["cali-pi-gone"] = (None, ("x",))
    kernel.sets["cali40s-gone"] = (PLAIN, frozenset())
    lines = script_lines(plan_last_stage(table, kernel)[0].text())
    assert "flush chain inet calico cali-pi-p" in lines
    assert not any("cali-tw-x" in line for line in lines)  # unchanged: untouched
    assert lines.index("flush chain inet calico cali-pi-gone") < lines.index("delete chain inet calico cali-pi-gone")
    assert lines[-1] == "delete set inet calico cali40s-gone"
    kernel.chains["filter-FORWARD"] = (BaseSpec("filter", "forward", 0, "drop"), ())
    batch, whole = plan_last_stage(table, kernel)
    assert whole and script_lines(batch.text())[1] == "flush table inet calico"


def filter_state(policies: int = 300) -> FilterState:
    state = FilterState(DataplaneSettings())
    state.apply(IPSetUpdate("sel", IPSetType.NET, frozenset({"10.65.0.2/32"})))
    state.apply(ActiveProfileUpdate("kns.ns", (Rule("allow"),), (Rule("allow"),)))
    for i in range(policies):
        state.apply(ActivePolicyUpdate(PolicyID("default", f"ns/p{i}"), (
            Rule("allow", protocol=6, src_ip_set_ids=("sel", f"only-p{i}"), dst_ports=(PortRange(80, 80),)),), ()))
    mine = tuple(f"ns/p{i}" for i in range(policies))
    state.apply(WorkloadEndpointUpdate(WorkloadEndpointID("k8s", "ns/pod", "eth0"), WorkloadEndpoint(
        "cali1", None, ("10.65.0.2/32",), (), ("kns.ns",), (TierInfo("default", mine, ()),))))
    return state


class Recorder:
    """Takes batches like nft would (those that hook chains after ``delay`` seconds, the others at once);
    remembers them and what ran meanwhile."""

    def __init__(self, state: FilterState, delay: float = 0.01, fail_first: bool = False) -> None:
        self.state = state
        self.delay = delay
        self.fail_first = fail_first
        self.batches: list[str] = []
        self.running = 0
        self.hook_calls: list[tuple[int, int]] = []  # (chains still to render, batches sent) at each call

    async def run(self, text: str) -> None:
        self.batches.append(text)
        self.running += 1
        try:
            await asyncio.sleep(self.delay if " hook " in text else 0)
            if self.fail_first and len(self.batches) == 1:
                raise NftablesError("rejected", batch_lines=text.count("\n"))
        finally:
            self.running -= 1

    async def hook(self) -> None:
        self.hook_calls.append((self.state.pending, len(self.batches)))


async def test_stages_load_chains_then_sets_and_hook_everything_in_the_last_batch() -> None:
    state = filter_state()
    assert state.pending > 0  # policies wait to be rendered
    recorder = Recorder(state)
    report = await apply_in_stages(state, None, recorder.run, recorder.hook)
    assert state.pending == 0
    assert len(recorder.batches) == 4 and report.batches == [b.count("\n") for b in recorder.batches]
    endpoint, policies, sets, last = [script_lines(b) for b in recorder.batches]
    for batch in (endpoint, policies, sets):  # nothing hooked, nothing in a dispatch map
        assert not any(" hook " in line or "vmap" in line or "dispatch" in line for line in batch)
    assert any(line.startswith("add rule inet calico cali-tw-cali1 ") for line in endpoint)
    assert not any(line.startswith("add rule inet calico cali-pi-") for line in endpoint)  # only declared there
    assert any(line.startswith("add rule inet calico cali-pi-") for line in policies)
    assert all(line.startswith(("add table", "add set", "add element")) for line in sets)
    assert any(line.startswith(f"add element inet calico {names.ipset_name('sel', 4, False)} ") for line in sets)
    assert any("hook forward" in line for line in last)
    assert any(line.startswith("add element inet calico cali-to-wl-dispatch") for line in last)
    created = {line.split()[4] for batch in recorder.batches for line in script_lines(batch)
               if line.startswith(("add chain", "add set", "add map"))}
    table = state.table
    assert created == {*table.chains, *table.sets, *table.maps}  # every object, and nothing else
    added = [line.split(" comment ")[0] for batch in recorder.batches for line in script_lines(batch)
             if line.startswith("add rule")]
    assert sorted(added) == sorted(f"add rule inet calico {name} {body}" for name, chain in table.chains.items()
                                   for body in chain.rules)  # every rule once
    assert len(recorder.hook_calls) == 1 and recorder.hook_calls[0][0] == 0  # once, when rendering was done
    assert recorder.hook_calls[0][1] < len(recorder.batches)  # and before the last batch went
    assert all(done >= sent for sent, done in report.spans)


async def test_nft_yields_to_this_thread_only_while_it_makes_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stages, "STAGED_NFT_NICE", 5)  # (0 by default now: then nothing is reniced)
    state = filter_state(policies=50)
    recorder = Recorder(state)
    events: list[tuple[str, int]] = []
    real_run = recorder.run

    async def run(text: str) -> None:
        events.append(("batch", len(recorder.batches)))
        await real_run(text)

    await apply_in_stages(state, None, run, nice=lambda value: events.append(("nice", value)))
    assert events[0] == ("nice", 5)
    restored = events.index(("nice", 0))
    assert [kind for kind, _n in events[:restored]].count("batch") == len(recorder.batches) - 1  # all but the last
    assert events[-1] == ("nice", 0)

    failing = Recorder(filter_state(policies=50), fail_first=True)
    calls: list[int] = []
    with pytest.raises(NftablesError):
        await apply_in_stages(failing.state, None, failing.run, nice=calls.append)
    assert calls[0] == 5 and calls[-1] == 0
    monkeypatch.setattr(stages, "STAGED_NFT_NICE", 0)
    calls.clear()
    plain = Recorder(filter_state(policies=5))
    await apply_in_stages(plain.state, None, plain.run, nice=calls.append)
    assert calls == [] and plain.batches  # nothing reniced


async def test_the_last_batch_may_go_another_way() -> None:
    state = filter_state(policies=20)
    recorder, last = Recorder(state), Recorder(state)
    await apply_in_stages(state, None, recorder.run, run_last=last.run)
    assert len(last.batches) == 1 and " hook " in last.batches[0]
    assert not any(" hook " in batch for batch in recorder.batches)


async def test_a_rejected_stage_stops_the_apply() -> None:
    state = filter_state(policies=200)
    recorder = Recorder(state, fail_first=True)
    with pytest.raises(NftablesError):
        await apply_in_stages(state, None, recorder.run, recorder.hook)
    assert len(recorder.batches) == 1 and recorder.hook_calls == []


async def test_an_object_of_another_kind_makes_the_last_batch_a_whole_replace() -> None:
    state = filter_state(policies=2)
    plain = names.ipset_name("sel", 4, False)
    kernel = TableState(sets={plain: (SetDef(plain, "ipv6_addr", False), frozenset())})
    recorder = Recorder(state)
    report = await apply_in_stages(state, kernel, recorder.run)
    assert report.whole_replace
    assert len(recorder.batches) == 2  # sets it could load, then everything else in one transaction
    assert f"delete set inet calico {plain}" in script_lines(recorder.batches[-1])


def first_turn_messages(policies: int = 200) -> list[Message]:
    mine = tuple(f"ns/p{i}" for i in range(policies))
    return [
        ConfigUpdate({}),
        ActiveProfileUpdate("kns.ns", (Rule("allow"),), (Rule("allow"),)),
        IPSetUpdate("sel", IPSetType.NET, frozenset({"10.65.0.2/32"})),
        *(ActivePolicyUpdate(PolicyID("default", f"ns/p{i}"), (
            Rule("allow", protocol=6, src_ip_set_ids=("sel", f"s{i}"), dst_ports=(PortRange(80, 80),)),), ())
          for i in range(policies)),
        *(IPSetUpdate(f"s{i}", IPSetType.NET, frozenset({f"10.66.{i // 250}.{i % 250}/32"})) for i in range(policies)),
        IPSetUpdate("wide", IPSetType.NET, frozenset({"10.67.0.0/16"})),  # an interval set: its users render again
        ActivePolicyUpdate(PolicyID("default", "ns/wide"), (Rule("allow", src_ip_set_ids=("wide",)),), ()),
        WorkloadEndpointUpdate(WorkloadEndpointID("k8s", "ns/pod", "eth0"), WorkloadEndpoint(
            "cali1", None, ("10.65.0.2/32",), (), ("kns.ns",), (TierInfo("default", (*mine, "ns/wide"), ()),))),
        IPAMPoolUpdate("pool", "10.65.0.0/16", True),
        IPSetDeltaUpdate("sel", frozenset({"10.65.0.3/32"}), frozenset()),
        InSync(),
    ]


def fold_into(state: FilterState) -> Callable[[Message], None]:
    """What the driver folds with: filter messages into ``state`` (InSync and config are the driver's own)."""
    def fold(msg: Message) -> None:
        if not isinstance(msg, InSync | ConfigUpdate):
            state.apply(cast(FilterMessage, msg))  # the test sends nothing else
    return fold


def test_the_first_turn_folds_policies_now_and_keeps_each_group_in_order() -> None:
    messages = first_turn_messages(3)
    now, endpoints, ipsets = split_first_turn(messages)
    assert sorted(map(id, now + endpoints + ipsets)) == sorted(map(id, messages))
    for group in (now, endpoints, ipsets):
        assert [m for m in messages if m in group] == group
    assert {type(m) for m in now} == {ConfigUpdate, ActiveProfileUpdate, ActivePolicyUpdate, IPAMPoolUpdate, InSync}
    assert {type(m) for m in endpoints} == {WorkloadEndpointUpdate}
    assert {type(m) for m in ipsets} == {IPSetUpdate, IPSetDeltaUpdate}
    assert isinstance(ipsets[-1], IPSetDeltaUpdate)  # a set's delta stays after its update


async def test_the_backlogs_are_folded_while_nft_works_and_the_table_is_the_same() -> None:
    messages = first_turn_messages()
    everything = FilterState(DataplaneSettings())
    for msg in messages:
        fold_into(everything)(msg)
    state = FilterState(DataplaneSettings())
    now, endpoints, ipsets = split_first_turn(messages)
    for msg in now:
        fold_into(state)(msg)
    endpoint_backlog, ipset_backlog = Backlog(endpoints, fold_into(state)), Backlog(ipsets, fold_into(state))
    recorder = Recorder(state)
    await apply_in_stages(state, None, recorder.run, recorder.hook, endpoint_backlog, ipset_backlog)
    assert len(endpoint_backlog) == len(ipset_backlog) == 0 and state.pending == 0
    first = script_lines(recorder.batches[0])
    assert not any(line.startswith("add element") for line in first)  # the IP sets were not folded yet
    assert snapshot(state.table) == snapshot(everything.table)
    assert recorder.hook_calls == [(0, recorder.hook_calls[0][1])]
    wide = names.ipset_name("wide", 4, False, True)
    assert wide in state.table.sets and names.ipset_name("wide", 4, False) not in state.table.sets
    policy = names.policy_chain("default", "ns/wide", True)
    early = [line for batch in recorder.batches[:-1] for line in script_lines(batch)
             if line.startswith(f"add rule inet calico {policy} ") and " ip saddr " in line]
    assert early and all(f"@{names.ipset_name('wide', 4, False)} " in line for line in early)  # rendered blind
    assert any(f"@{wide} " in line for line in script_lines(recorder.batches[-1]))  # and swapped in the last batch
    assert f"delete set inet calico {names.ipset_name('wide', 4, False)}" in script_lines(recorder.batches[-1])


async def test_the_backlogs_are_folded_even_when_a_batch_fails() -> None:
    state = FilterState(DataplaneSettings())
    now, endpoints, ipsets = split_first_turn(first_turn_messages())
    for msg in now:
        fold_into(state)(msg)
    endpoint_backlog, ipset_backlog = Backlog(endpoints, fold_into(state)), Backlog(ipsets, fold_into(state))
    with pytest.raises(NftablesError):
        await apply_in_stages(state, None, Recorder(state, fail_first=True).run, None, endpoint_backlog,
                              ipset_backlog)
    assert len(endpoint_backlog) == len(ipset_backlog) == 0
    assert len(state.workloads) == 1 and "wide" in state.ipsets


PART_A = (ConfigUpdate, IPAMPoolUpdate, WorkloadEndpointUpdate)


def two_parts(messages: list[Message]) -> tuple[list[Message], list[Message]]:
    """The graph's first snapshot in two parts: configuration, pools and endpoints; then the rest."""
    return [m for m in messages if isinstance(m, PART_A)], [m for m in messages if not isinstance(m, PART_A)]


async def staged_in_two_parts(messages: list[Message], recorder_for: Callable[[FilterState], Recorder],
                              kernel: TableState | None = None, later: tuple[Message, ...] = ()
                              ) -> tuple[FilterState, Recorder, StageReport]:
    """Fold part A, start early, fold part B's policies now and the rest as backlogs, finish the apply;
    ``later``: messages sent after part A (before InSync) that belong to neither part."""
    state = FilterState(DataplaneSettings())
    part_a, part_b = two_parts(messages)
    part_b[-1:-1] = later
    for msg in part_a:
        fold_into(state)(msg)
    recorder = recorder_for(state)
    early = await start_early(state, kernel, recorder.run)
    assert early.launched == len(recorder.batches)
    now, endpoints, ipsets = split_first_turn(part_b)
    for msg in now:
        fold_into(state)(msg)
    try:
        report = await apply_in_stages(state, kernel, recorder.run, recorder.hook, Backlog(endpoints, fold_into(state)),
                                       Backlog(ipsets, fold_into(state)), early=early)
    finally:
        await early.aclose()
    return state, recorder, report


async def test_the_endpoint_chains_go_before_in_sync_and_the_table_is_the_same() -> None:
    messages = first_turn_messages()
    everything = FilterState(DataplaneSettings())
    for msg in messages:
        fold_into(everything)(msg)
    state = FilterState(DataplaneSettings())
    part_a, _part_b = two_parts(messages)
    for msg in part_a:
        fold_into(state)(msg)
    assert state.unknown_chains == {names.policy_chain("default", f"ns/p{i}", True) for i in range(200)} | {
        names.policy_chain("default", "ns/wide", True), names.profile_chain("kns.ns", True),
        names.profile_chain("kns.ns", False)}
    recorder = Recorder(state)
    early = await start_early(state, None, recorder.run)
    assert early.launched == 1 and len(recorder.batches) == 1  # in nft's hands before anything else comes
    (lines,) = [script_lines(b) for b in recorder.batches]
    assert not any(" hook " in line or "vmap" in line or "dispatch" in line for line in lines)
    assert any(line.startswith("add rule inet calico cali-tw-cali1 ") for line in lines)
    for name in state.unknown_chains:  # declared, empty: the graph has not sent them yet
        assert f"add chain inet calico {name}" in lines
        assert not any(line.startswith(f"add rule inet calico {name} ") for line in lines)
    await early.aclose()

    state, recorder, report = await staged_in_two_parts(messages, Recorder)
    assert report.early_batches == 1 and len(recorder.batches) == len(report.batches) == 3 + SETS_PARTS
    assert snapshot(state.table) == snapshot(everything.table)
    for batch in recorder.batches[:-1]:  # nothing hooked, nothing in a dispatch map until the last batch
        assert not any(" hook " in line or "dispatch" in line for line in script_lines(batch))
    assert not any("cali-tw-cali1" in line for line in script_lines(recorder.batches[-1])
                   if not line.startswith("add element inet calico cali-to-wl-dispatch"))  # not loaded twice
    table = state.table
    created = {line.split()[4] for batch in recorder.batches for line in script_lines(batch)
               if line.startswith(("add chain", "add set", "add map"))}
    assert created == {*table.chains, *table.sets, *table.maps}  # (the IP sets fold before the policies render)
    assert not any(line.startswith("delete ") for line in script_lines(recorder.batches[-1]))
    sets = [script_lines(recorder.batches[1 + part]) for part in range(SETS_PARTS)]  # sets first: nft's biggest
    for lines in sets:  # job left, in parts (each set in one of them)
        assert all(line.startswith(("add table", "add set", "add element")) for line in lines)
    declared = [line.split()[4] for lines in sets for line in lines if line.startswith("add set")]
    earlier = [line.split()[4] for line in script_lines(recorder.batches[0]) if line.startswith("add set")]
    assert earlier  # the pool sets the early chains name: created (committed) there, only filled here
    assert sorted(declared + earlier) == sorted(table.sets) and all(len(lines) > 2 for lines in sets)
    assert any(line.startswith("add rule inet calico cali-pi-") for line in script_lines(recorder.batches[-2]))
    sel = names.ipset_name("sel", 4, False)  # its delta folded after its sets batch went: the last batch adds it
    assert f"add element inet calico {sel} {{ 10.65.0.2 }}" in sets[0]
    assert f"add element inet calico {sel} {{ 10.65.0.3 }}" in script_lines(recorder.batches[-1])
    added = [line.split(" comment ")[0] for batch in recorder.batches for line in script_lines(batch)
             if line.startswith("add rule")]
    wanted = [f"add rule inet calico {name} {body}" for name, chain in table.chains.items() for body in chain.rules]
    assert set(wanted) <= set(added)
    endpoint_rules = [line for line in added if line.startswith(("add rule inet calico cali-tw-",
                                                                "add rule inet calico cali-fw-"))]
    assert sorted(endpoint_rules) == sorted(line for line in wanted if line.startswith((
        "add rule inet calico cali-tw-", "add rule inet calico cali-fw-")))  # each once: in the early batch
    first = "\n".join(script_lines(recorder.batches[0]))
    assert all(line in first for line in endpoint_rules)
    assert len(recorder.hook_calls) == 1 and recorder.hook_calls[0][0] == 0


async def test_an_endpoint_changed_after_the_early_batch_is_swapped_by_the_last_batch() -> None:
    messages = first_turn_messages(20)
    changed = WorkloadEndpointUpdate(WorkloadEndpointID("k8s", "ns/pod", "eth0"), WorkloadEndpoint(
        "cali1", None, ("10.65.0.2/32",), (), ("kns.ns",), (TierInfo("default", ("ns/p3",), ()),)))
    added = WorkloadEndpointUpdate(WorkloadEndpointID("k8s", "ns/pod2", "eth0"), WorkloadEndpoint(
        "cali2", None, ("10.65.0.9/32",), (), ("kns.ns",), (TierInfo("default", ("ns/p4",), ()),)))
    everything = FilterState(DataplaneSettings())
    for msg in [*messages, changed, added]:
        fold_into(everything)(msg)
    state, recorder, report = await staged_in_two_parts(messages, Recorder, later=(changed, added))
    assert snapshot(state.table) == snapshot(everything.table)
    assert report.early_batches == 1
    early = script_lines(recorder.batches[0])
    assert any(line.startswith("add rule inet calico cali-tw-cali1 ") for line in early)
    last = script_lines(recorder.batches[-1])
    assert "flush chain inet calico cali-tw-cali1" in last  # the early version is swapped in one transaction
    assert any(line.startswith("add rule inet calico cali-tw-cali1 ") and "ns/p3" in line for line in last)
    assert not any(line.startswith("add rule inet calico cali-tw-cali2 ") for line in last)  # new: loaded earlier


async def test_a_failed_early_batch_fails_the_apply_and_every_message_is_folded() -> None:
    messages = first_turn_messages(50)
    with pytest.raises(NftablesError):
        await staged_in_two_parts(messages, lambda state: Recorder(state, fail_first=True))
    state = FilterState(DataplaneSettings())
    part_a, part_b = two_parts(messages)
    for msg in part_a:
        fold_into(state)(msg)
    recorder = Recorder(state, fail_first=True)
    early = await start_early(state, None, recorder.run)
    now, endpoints, ipsets = split_first_turn(part_b)
    ipset_backlog = Backlog(ipsets, fold_into(state))
    with pytest.raises(NftablesError):
        await apply_in_stages(state, None, recorder.run, recorder.hook, Backlog(endpoints, fold_into(state)),
                              ipset_backlog, early=early)
    assert len(ipset_backlog) == 0 and "wide" in state.ipsets and recorder.hook_calls == []
    assert not any(" hook " in batch for batch in recorder.batches)  # nothing after the failure was hooked


async def test_an_early_start_over_a_kernel_table_leaves_its_chains_to_the_last_batch() -> None:
    messages = first_turn_messages(20)
    old = FilterState(DataplaneSettings())
    for msg in messages:
        fold_into(old)(msg)
    kernel = snapshot(old.table)
    kernel.chains[names.workload_chain("cali1", True)] = (None, ("old",))
    state, recorder, report = await staged_in_two_parts(messages, Recorder, kernel)
    assert report.early_batches == 0 and len(recorder.batches) == 1  # everything was there but one chain
    assert "flush chain inet calico cali-tw-cali1" in script_lines(recorder.batches[0])


async def test_no_early_start_when_the_kernel_holds_another_kind() -> None:
    state = FilterState(DataplaneSettings())
    part_a, _part_b = two_parts(first_turn_messages(5))
    for msg in part_a:
        fold_into(state)(msg)
    pool = names.pool_set(4, False)
    kernel = TableState(sets={pool: (SetDef(pool, "ipv6_addr", False), frozenset())})
    recorder = Recorder(state)
    early = await start_early(state, kernel, recorder.run)
    assert early.launched == 0 and not early.kinds_agree and recorder.batches == []
