"""The stage sent beside the sets stage: which chains it may hold and what it declares (no kernel)."""

from __future__ import annotations

import asyncio

from services.felix.dataplane.errors import NftablesError
from services.felix.dataplane.ipsets import MapDef, SetDef
from services.felix.dataplane.ruleset import BaseSpec, DesiredTable, TableState, make_chain
from services.felix.dataplane.stages import SetValue, apply_in_stages, plan_beside_stage
from tests.unit.felix.test_dataplane_stages import filter_state

FORWARD = BaseSpec("filter", "forward", 0)


def setdef(name: str) -> SetDef:
    return SetDef(name, "ipv4_addr", False)


def table() -> DesiredTable:
    out = DesiredTable()
    for name in ("cali40s-a", "cali40s-b", "cali40s-late"):
        out.put_set(setdef(name), frozenset({"10.0.0.1"}))
    out.put_chain(make_chain("cali-pi-p", ["ip saddr @cali40s-a accept"]))
    out.put_chain(make_chain("cali-pi-q", ["ip saddr @cali40s-b ip daddr @cali40s-old accept"]))
    out.put_chain(make_chain("cali-pi-late", ["ip saddr @cali40s-late accept"]))  # its set is not loading
    out.put_chain(make_chain("cali-tw-x", ["jump cali-pi-p", "jump cali-pi-q", "drop"]))
    out.put_chain(make_chain("cali-tw-y", ["jump cali-pi-late", "drop"]))  # jumps to a chain left out
    out.put_chain(make_chain("cali-tw-z", ["goto cali-tw-y"]))  # and so, through it, this one too
    out.put_chain(make_chain("cali-wl-to-host", ["iifname vmap @cali-from-wl-dispatch", "drop"]))
    out.put_chain(make_chain("filter-FORWARD", ["accept"], FORWARD))
    out.put_chain(make_chain("cali-pi-kept", ["accept"]))
    out.ensure_map(MapDef("cali-to-wl-dispatch"))
    return out


def loading(desired: DesiredTable, *names: str) -> dict[str, SetValue]:
    return {name: desired.sets[name] for name in names}


def test_beside_stage_holds_unreached_chains_whose_sets_and_targets_exist_by_then() -> None:
    desired = table()
    kernel = TableState(chains={"cali-pi-kept": (None, ("old",))},
                        sets={"cali40s-old": (setdef("cali40s-old"), frozenset())})
    batch, chains = plan_beside_stage(desired, kernel, loading(desired, "cali40s-a", "cali40s-b"))
    assert set(chains) == {"cali-pi-p", "cali-pi-q", "cali-tw-x"}
    assert all(base is None for base, _hashes in chains.values())
    lines = batch.text().splitlines()
    declared = [line.split()[4] for line in lines if line.startswith("add set")]
    assert declared == ["cali40s-a", "cali40s-b"]  # what the rules name and the kernel lacks; never elements
    assert not any(line.startswith(("add element", "flush", "delete")) for line in lines)
    assert not any(" hook " in line or "vmap" in line for line in lines)
    created = [line.split()[4] for line in lines if line.startswith("add chain")]
    first_rule = next(i for i, line in enumerate(lines) if line.startswith("add rule"))
    assert sorted(created) == sorted(chains)
    assert all(lines.index(f"add chain inet calico {name}") < first_rule for name in created)


def test_beside_stage_leaves_out_chains_the_kernel_has() -> None:
    desired = table()
    kernel = TableState(chains={name: (None, ("old",)) for name in desired.chains if name.startswith("cali-pi-")},
                        sets={name: value for name, value in desired.sets.items()})
    batch, chains = plan_beside_stage(desired, kernel, {})
    assert set(chains) == {"cali-tw-x", "cali-tw-y", "cali-tw-z"}  # the kernel has every target
    assert not any(line.startswith("add set") for line in batch.text().splitlines())


def test_a_failed_sets_stage_cancels_the_beside_stage() -> None:
    state = filter_state(policies=200)
    started: list[str] = []
    cancelled: list[str] = []
    sets_may_fail = asyncio.Event()

    async def run(text: str) -> None:
        kind = "sets" if not started else "other"
        started.append(kind)
        try:
            if kind == "sets":
                await asyncio.wait_for(sets_may_fail.wait(), 5)
                raise NftablesError("rejected", batch_lines=text.count("\n"))
            sets_may_fail.set()
            await asyncio.sleep(5)  # a long load: cancelled when the sets stage fails
        except asyncio.CancelledError:
            cancelled.append(kind)
            raise

    async def go() -> None:
        try:
            await apply_in_stages(state, None, run)
        except NftablesError:
            return
        raise AssertionError("the apply did not fail")

    asyncio.run(asyncio.wait_for(go(), 10))
    assert started == ["sets", "other"] and cancelled == ["other"]


def test_chains_a_middle_stage_is_loading_are_left_to_it_and_only_declared() -> None:
    desired = table()
    kernel = TableState(sets={"cali40s-old": (setdef("cali40s-old"), frozenset())})
    batch, chains = plan_beside_stage(desired, kernel, loading(desired, "cali40s-a", "cali40s-b"),
                                      loading_chains={"cali-pi-p"})
    assert "cali-pi-p" not in chains and "cali-tw-x" in chains  # it may jump there: whoever commits first
    lines = batch.text().splitlines()
    assert "add chain inet calico cali-pi-p" in lines  # declared (empty) so the jump finds it
    assert not any(line.startswith("add rule inet calico cali-pi-p ") for line in lines)  # its rules: once


def test_nothing_goes_beside_a_middle_stage_and_every_rule_reaches_the_kernel_once() -> None:
    state = filter_state(policies=300)
    batches: list[str] = []

    async def run(text: str) -> None:
        batches.append(text)
        if len(batches) == 2:  # the middle stage: still loading when rendering ends
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while state.pending and loop.time() < deadline:
                await asyncio.sleep(0)
            await asyncio.sleep(0)

    report = asyncio.run(asyncio.wait_for(apply_in_stages(state, None, run), 10))
    assert state.pending == 0
    assert len(report.batches) == 3  # sets, a middle stage, the last one: nothing goes beside a middle stage
    added = [line.split(" comment ")[0] for text in batches for line in text.splitlines()
             if line.startswith("add rule")]
    want = [f"add rule inet calico {name} {body}" for name, chain in state.table.chains.items() for body in chain.rules]
    assert sorted(added) == sorted(want)
