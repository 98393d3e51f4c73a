"""The chains and sets batches of the staged apply against a real kernel, committing in either order.

The chains batches declare the sets their rules name (without elements) and
add chains nothing hooked reaches; the sets batch adds the sets it fills. So
whichever commits first, packets see nothing of either until the last batch
hooks it all, and the kernel ends with exactly the desired table.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from services.felix.dataplane import names
from services.felix.dataplane.kernelstate import parse_table
from services.felix.dataplane.nft import NftProcess
from services.felix.dataplane.ruleset import TableState
from services.felix.dataplane.stages import apply_in_stages
from tests.fixtures.netns import Netns, NetnsPool, netns_pool  # noqa: F401  (netns_pool is a fixture)
from tests.integration.felix import test_dataplane_stages
from tests.integration.felix.test_dataplane_stages import assert_holds, state_for


def kind(text: str) -> str:
    """Which batch ``text`` is: the sets batch only fills sets, a chains batch only adds chains (and
    declares what they name); the last one does the rest (hooks, dispatch maps, swaps, deletes)."""
    lines = text.splitlines()
    if any(" hook " in line or "dispatch" in line or line.startswith(("flush chain", "delete")) for line in lines):
        return "last"
    if all(line.startswith(("add table", "add set", "add element", "flush set")) for line in lines):
        return "sets"
    return "chains"


class Ordered:
    """Applies batches with a real ``nft``, holding back those of kind ``hold`` until the other early
    batches are in."""

    def __init__(self, ns: Netns, hold: str | None) -> None:
        self.nft = NftProcess(ns.name)
        self.hold = hold
        self.texts: list[str] = []
        self.after: list[tuple[str, TableState]] = []  # (which batch, the kernel right after it)

    async def kernel(self) -> TableState | None:
        return parse_table(await self.nft.list_table(names.TABLE_FAMILY, names.TABLE_NAME))

    async def run(self, text: str) -> None:
        self.texts.append(text)
        if kind(text) == self.hold:
            other = "chains" if self.hold == "sets" else "sets"
            deadline = time.monotonic() + 10
            while not any(label == other for label, _k in self.after) and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            if self.hold == "sets":  # wait for every chains batch sent so far
                while (sum(label == "chains" for label, _k in self.after)
                       < sum(kind(t) == "chains" for t in self.texts)) and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
        await self.nft.apply(text)
        state = await self.kernel()
        assert state is not None
        self.after.append((kind(text), state))


@pytest.mark.parametrize("hold", ["sets", "chains"])
async def test_the_chains_and_the_sets_may_commit_in_either_order(netns_pool: NetnsPool,  # noqa: F811
                                                                   hold: str) -> None:
    host = netns_pool.netns("h")
    state = state_for(1)
    runner = Ordered(host, hold)
    report = await apply_in_stages(state, None, runner.run)
    labels = [label for label, _k in runner.after]
    assert len(report.batches) >= 3 and labels[-1] == "last" and labels.count("sets") == 1
    assert labels.index("sets") == (len(labels) - 2 if hold == "sets" else 0)
    chains = [t.splitlines() for t in runner.texts if kind(t) == "chains"]
    assert any(line.startswith("add set") for batch in chains for line in batch)
    assert not any(line.startswith("add element") or " hook " in line or "vmap" in line
                   for batch in chains for line in batch)
    assert any(" jump " in line for batch in chains for line in batch)  # endpoint chains, their targets declared
    for _label, between in runner.after[:-1]:
        assert not any(base for base, _hashes in between.chains.values())  # nothing hooked: packets unaffected
        assert not any(entries for _mapdef, entries in between.maps.values())
    if hold == "sets":
        early = runner.after[0][1]
        assert any(not elements for _setdef, elements in early.sets.values())  # declared, not yet filled
    assert_holds(await runner.kernel(), state)


async def test_a_restart_keeps_every_old_rule_while_the_new_chains_go_in(
        netns_pool: NetnsPool, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    host = netns_pool.netns("h")
    with monkeypatch.context() as patch:
        patch.setattr(test_dataplane_stages, "POLICIES", 40)  # the old table: a tenth of the policies
        old_state = state_for(1, endpoints=("cali1", "cali2", "cali3"))
    await apply_in_stages(old_state, None, Ordered(host, None).run)
    runner = Ordered(host, "sets")
    old = await runner.kernel()
    assert old is not None
    new_state = state_for(2, endpoints=("cali1", "cali2", "cali4", "cali5"))  # new policies and endpoints
    report = await apply_in_stages(new_state, old, runner.run)
    labels = [label for label, _k in runner.after]
    assert len(report.batches) >= 3 and labels[-1] == "last" and "chains" in labels[:-1]
    for _label, between in runner.after[:-1]:
        for name, chain in old.chains.items():
            assert between.chains.get(name) == chain, name  # old rules in force, unchanged
        assert between.maps == old.maps
    assert_holds(await runner.kernel(), new_state)
