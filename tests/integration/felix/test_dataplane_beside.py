"""The chains batch sent beside the sets batch, against a real kernel, committing before the sets do.

The beside batch declares the sets its rules name (without elements) and adds
chains nothing hooked reaches, so whichever of the two commits first, packets
see nothing of either until the last batch hooks it all, and the kernel ends
with exactly the desired table.
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


class SetsLast:
    """Applies batches with a real ``nft``, holding the sets batch back until another batch is in."""

    def __init__(self, ns: Netns, hold: bool = True) -> None:
        self.nft = NftProcess(ns.name)
        self.hold = hold
        self.texts: list[str] = []
        self.after: list[tuple[str, TableState]] = []  # (which batch, the kernel right after it)

    async def kernel(self) -> TableState | None:
        return parse_table(await self.nft.list_table(names.TABLE_FAMILY, names.TABLE_NAME))

    async def run(self, text: str) -> None:
        first = not self.texts
        self.texts.append(text)
        if first and self.hold:
            deadline = time.monotonic() + 10
            while not self.after and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
        await self.nft.apply(text)
        state = await self.kernel()
        assert state is not None
        self.after.append(("sets" if first else f"batch {len(self.texts)}", state))


async def test_the_chains_beside_the_sets_may_commit_first(netns_pool: NetnsPool) -> None:  # noqa: F811
    host = netns_pool.netns("h")
    state = state_for(1)
    runner = SetsLast(host)
    report = await apply_in_stages(state, None, runner.run)
    assert len(report.batches) == 3 and [label for label, _k in runner.after][:2] == ["batch 2", "sets"]
    beside = runner.texts[1].splitlines()
    assert any(line.startswith("add set") for line in beside)
    assert not any(line.startswith("add element") or " hook " in line or "vmap" in line for line in beside)
    assert any(" jump " in line for line in beside)  # endpoint chains went too, with the chains they jump to
    for _label, between in runner.after[:-1]:
        assert not any(base for base, _hashes in between.chains.values())  # nothing hooked: packets unaffected
        assert not any(entries for _mapdef, entries in between.maps.values())
    early = runner.after[0][1]
    assert any(not elements for _setdef, elements in early.sets.values())  # declared, not yet filled
    assert_holds(await runner.kernel(), state)


async def test_a_restart_keeps_every_old_rule_while_the_chains_go_beside(
        netns_pool: NetnsPool, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    host = netns_pool.netns("h")
    with monkeypatch.context() as patch:
        patch.setattr(test_dataplane_stages, "POLICIES", 40)  # the old table: a tenth of the policies
        old_state = state_for(1, endpoints=("cali1", "cali2", "cali3"))
    await apply_in_stages(old_state, None, SetsLast(host, hold=False).run)
    runner = SetsLast(host)
    old = await runner.kernel()
    assert old is not None
    new_state = state_for(2, endpoints=("cali1", "cali2", "cali4", "cali5"))  # new policies and endpoints
    report = await apply_in_stages(new_state, old, runner.run)
    assert len(report.batches) == 3 and [label for label, _k in runner.after][:2] == ["batch 2", "sets"]
    for _label, between in runner.after[:-1]:
        for name, chain in old.chains.items():
            assert between.chains.get(name) == chain, name  # old rules in force, unchanged
        assert between.maps == old.maps
    assert_holds(await runner.kernel(), new_state)
