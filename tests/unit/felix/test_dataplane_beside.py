"""The chains stages sent before the sets stage: which chains they may hold and what they declare (no kernel)."""

from __future__ import annotations

import asyncio

from services.felix.dataplane.errors import NftablesError
from services.felix.dataplane.ipsets import MapDef, SetDef
from services.felix.dataplane.ruleset import BaseSpec, DesiredTable, TableState, make_chain
from services.felix.dataplane.stageplan import plan_chains_stage
from services.felix.dataplane.stages import apply_in_stages
from tests.unit.felix.nftlines import script_lines
from tests.unit.felix.test_dataplane_stages import filter_state

FORWARD = BaseSpec("filter", "forward", 0)


def setdef(name: str) -> SetDef:
    return SetDef(name, "ipv4_addr", False)


def table() -> DesiredTable:
    out = DesiredTable()
    for name in ("cali40s-a", "cali40s-b"):
        out.put_set(setdef(name), frozenset({"10.0.0.1"}))
    out.put_chain(make_chain("cali-pi-p", ["ip saddr @cali40s-a accept"]))
    out.put_chain(make_chain("cali-pi-q", ["ip saddr @cali40s-b ip daddr @cali40s-old accept"]))
    out.put_chain(make_chain("cali-tw-x", ["jump cali-pi-p", "jump cali-pi-q", "drop"]))
    out.put_chain(make_chain("cali-tw-y", ["jump cali-pi-gone", "drop"]))  # jumps to a chain nobody brings
    out.put_chain(make_chain("cali-tw-z", ["goto cali-tw-y"]))  # and so, through it, this one too
    out.put_chain(make_chain("cali-wl-to-host", ["iifname vmap @cali-from-wl-dispatch", "drop"]))
    out.put_chain(make_chain("filter-FORWARD", ["accept"], FORWARD))
    out.put_chain(make_chain("cali-pi-kept", ["accept"]))
    out.ensure_map(MapDef("cali-to-wl-dispatch"))
    return out


def test_a_chains_stage_holds_unreached_chains_whose_targets_exist_by_then() -> None:
    desired = table()
    kernel = TableState(chains={"cali-pi-kept": (None, ("old",))},
                        sets={"cali40s-old": (setdef("cali40s-old"), frozenset())})
    batch, chains, declared, elsewhere = plan_chains_stage(desired, kernel)
    assert set(chains) == {"cali-pi-p", "cali-pi-q", "cali-tw-x"} and elsewhere == []
    assert all(base is None for base, _hashes in chains.values())
    lines = script_lines(batch.text())
    assert [line.split()[4] for line in lines if line.startswith("add set")] == ["cali40s-a", "cali40s-b"]
    assert set(declared) == {"cali40s-a", "cali40s-b"}  # what the rules name and the kernel lacks; never elements
    assert not any(line.startswith(("add element", "flush", "delete")) for line in lines)
    assert not any(" hook " in line or "vmap" in line for line in lines)
    created = [line.split()[4] for line in lines if line.startswith("add chain")]
    first_rule = next(i for i, line in enumerate(lines) if line.startswith("add rule"))
    assert sorted(created) == sorted(chains)
    assert all(lines.index(f"add chain inet calico {name}") < first_rule for name in created)


def test_a_chains_stage_leaves_out_chains_the_kernel_has() -> None:
    desired = table()
    kernel = TableState(chains={name: (None, ("old",)) for name in desired.chains if name.startswith("cali-pi-")},
                        sets={name: value for name, value in desired.sets.items()})
    kernel.chains["cali-pi-gone"] = (None, ("old",))
    batch, chains, declared, _ = plan_chains_stage(desired, kernel)
    assert set(chains) == {"cali-tw-x", "cali-tw-y", "cali-tw-z"}  # the kernel has every target
    assert declared == {} and not any(line.startswith("add set") for line in script_lines(batch.text()))


def test_a_failed_batch_cancels_the_others() -> None:
    state = filter_state(policies=200)
    started: list[int] = []
    cancelled: list[int] = []
    first_may_fail = asyncio.Event()

    async def run(text: str) -> None:
        index = len(started)
        started.append(index)
        try:
            if index == 0:
                await asyncio.wait_for(first_may_fail.wait(), 5)
                raise NftablesError("rejected", batch_lines=text.count("\n"))
            first_may_fail.set()
            await asyncio.sleep(5)  # a long load: cancelled when the first batch fails
        except asyncio.CancelledError:
            cancelled.append(index)
            raise

    async def go() -> None:
        try:
            await apply_in_stages(state, None, run)
        except NftablesError:
            return
        raise AssertionError("the apply did not fail")

    asyncio.run(asyncio.wait_for(go(), 10))
    assert started[:2] == [0, 1] and cancelled == started[1:]  # every other batch in flight was stopped


def test_chains_another_batch_brings_are_left_to_it_and_only_declared() -> None:
    desired = table()
    kernel = TableState(sets={"cali40s-old": (setdef("cali40s-old"), frozenset())})
    batch, chains, _declared, elsewhere = plan_chains_stage(desired, kernel, loading_chains={"cali-pi-p"})
    assert "cali-pi-p" not in chains and "cali-tw-x" in chains  # it may jump there: whoever commits first
    assert elsewhere == ["cali-pi-p"]
    lines = script_lines(batch.text())
    assert "add chain inet calico cali-pi-p" in lines  # declared (empty) so the jump finds it
    assert not any(line.startswith("add rule inet calico cali-pi-p ") for line in lines)  # its rules: once


def test_every_rule_reaches_the_kernel_once_whatever_finishes_first() -> None:
    state = filter_state(policies=300)
    batches: list[str] = []

    async def run(text: str) -> None:
        batches.append(text)
        if len(batches) == 1:  # the first chains batch: still loading when everything else is planned
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 5
            while state.pending and loop.time() < deadline:
                await asyncio.sleep(0)
            await asyncio.sleep(0)

    report = asyncio.run(asyncio.wait_for(apply_in_stages(state, None, run), 10))
    assert state.pending == 0 and len(report.batches) == 4
    added = [line.split(" comment ")[0] for text in batches for line in script_lines(text)
             if line.startswith("add rule")]
    want = [f"add rule inet calico {name} {body}" for name, chain in state.table.chains.items() for body in chain.rules]
    assert sorted(added) == sorted(want)
