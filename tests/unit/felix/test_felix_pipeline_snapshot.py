"""The first snapshot reaches the dataplane in parts: the endpoints, then (once nft has their chains) the policies
and profiles, then (once nft has theirs) the rest.

The graph and the dataplane are the real ones; the dataplane is never started
(no kernel here), so its ``early_started`` and ``policies_started`` are set by
the test, as the running dataplane sets them once each batch is in nft's hands.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from libcalico.syncer import SyncStatus, Update
from services.felix import messages as m
from services.felix import pipeline as pipeline_module
from services.felix.calc import CalcGraph
from services.felix.config import SPEC
from services.felix.dataplane.dataplane import Dataplane, DataplaneOptions
from services.felix.metrics import FelixMetrics
from services.felix.pipeline import ConfigTracker, Pipeline
from tests.unit.felix.test_calc_builders import HOST, ns_profile, policy, wep


class RecordingDataplane(Dataplane):
    """The real dataplane, not started: what the pipeline hands it, in order."""

    def __init__(self) -> None:
        super().__init__(DataplaneOptions(hostname=HOST))
        self.received: list[m.Message] = []

    def send(self, msg: m.Message) -> None:
        self.received.append(msg)
        super().send(msg)


def world() -> list[Update]:
    return [
        ns_profile("default"), ns_profile("other"),
        wep("a", labels={"app": "web"}),
        wep("b", ns="other", labels={"app": "db"}, ips=("10.0.0.2/32",)),
        wep("r", node="elsewhere", labels={"app": "web"}, ips=("10.0.1.1/32",)),
        policy("p1", selector="app == 'web'", ingress=[{"action": "Allow", "source": {"selector": "app == 'db'"}}]),
        policy("p2", ns="other", selector="all()",
               egress=[{"action": "Allow", "destination": {"selector": "app == 'web'"}}]),
    ]


def restart_unexpected(reasons: list[str], merged: dict[str, Any]) -> None:
    raise AssertionError(f"a restart was asked for: {reasons}")


def make(dataplane: Dataplane) -> Pipeline:
    environ = {"FELIX_FELIXHOSTNAME": HOST}
    config = ConfigTracker(SPEC, [], environ, SPEC.load([], environ).settings, {}, restart_unexpected)
    return Pipeline(CalcGraph(HOST), dataplane, config, FelixMetrics())


def single_flush(updates: list[Update]) -> list[m.Message]:
    """What the graph gives in one flush for the same snapshot."""
    graph = CalcGraph(HOST)
    graph.on_updates(updates)
    graph.on_status(SyncStatus.IN_SYNC)
    return graph.flush()


MARKERS = (m.EndpointsReady, m.PoliciesReady)


def same_messages(got: list[m.Message], want: list[m.Message]) -> None:
    """The same messages, markers aside."""
    assert sorted(repr(x) for x in got if not isinstance(x, MARKERS)) == sorted(map(repr, want))


async def until(condition: Any, seconds: float = 3.0) -> None:
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.005)


def in_sync(dp: RecordingDataplane) -> bool:
    return any(isinstance(x, m.InSync) for x in dp.received)


async def test_endpoints_first_then_the_rest_once_nft_has_them() -> None:
    dp = RecordingDataplane()
    pipe = make(dp)
    pipe.on_updates(world())
    assert dp.received == []  # nothing before the first in-sync
    pipe.on_status(SyncStatus.IN_SYNC)
    first = list(dp.received)
    assert first[-1] == m.EndpointsReady()
    assert not in_sync(dp)
    local = [x.id.workload for x in first if isinstance(x, m.WorkloadEndpointUpdate)]
    assert sorted(local) == ["default/a", "other/b"]  # every local endpoint, final, and no remote one
    assert not any(isinstance(x, m.ActivePolicyUpdate | m.IPSetUpdate) for x in first)
    await asyncio.sleep(0.05)
    assert len(dp.received) == len(first)  # the rest waits for the dataplane
    dp.early_started.set()
    await until(lambda: any(isinstance(x, m.PoliciesReady) for x in dp.received))
    second = dp.received[len(first):]
    assert second[-1] == m.PoliciesReady() and not in_sync(dp)
    assert {type(x) for x in second[:-1]} == {m.ActivePolicyUpdate, m.ActiveProfileUpdate}
    assert len([x for x in second if isinstance(x, m.ActivePolicyUpdate)]) == 2
    await asyncio.sleep(0.05)
    assert len(dp.received) == len(first) + len(second)  # the IP sets wait for nft to have the policies
    dp.policies_started.set()
    await until(lambda: in_sync(dp))
    assert isinstance(dp.received[-1], m.InSync)
    assert not any(isinstance(x, m.ActivePolicyUpdate) for x in dp.received[len(first) + len(second):])  # once
    same_messages(dp.received, single_flush(world()))


async def test_a_later_update_completes_the_snapshot_first() -> None:
    dp = RecordingDataplane()
    pipe = make(dp)
    pipe.on_updates(world())
    pipe.on_status(SyncStatus.IN_SYNC)
    later = wep("c", labels={"app": "web"}, ips=("10.0.0.3/32",))
    pipe.on_updates([later])  # before the dataplane started on the endpoints
    kinds = [type(x) for x in dp.received]
    assert m.InSync in kinds
    synced = kinds.index(m.InSync)
    c_at = [i for i, x in enumerate(dp.received) if isinstance(x, m.WorkloadEndpointUpdate) and x.id.workload == "default/c"]
    assert c_at and c_at[0] > synced
    same_messages(dp.received[:synced + 1], single_flush(world()))


@pytest.mark.parametrize("endpoints_started", [False, True])
async def test_the_rest_goes_when_the_dataplane_never_starts(monkeypatch: pytest.MonkeyPatch,
                                                             endpoints_started: bool) -> None:
    """Neither ``early_started`` nor ``policies_started`` comes (or only the first): the rest goes after the wait."""
    monkeypatch.setattr(pipeline_module, "EARLY_START_WAIT", 0.05)
    dp = RecordingDataplane()
    pipe = make(dp)
    pipe.on_updates(world())
    pipe.on_status(SyncStatus.IN_SYNC)
    if endpoints_started:
        dp.early_started.set()
        await until(lambda: any(isinstance(x, m.PoliciesReady) for x in dp.received))
    assert not in_sync(dp)
    await until(lambda: in_sync(dp))
    same_messages(dp.received, single_flush(world()))


def test_outside_an_event_loop_everything_goes_at_once() -> None:
    dp = RecordingDataplane()
    pipe = make(dp)
    pipe.on_updates(world())
    pipe.on_status(SyncStatus.IN_SYNC)
    assert isinstance(dp.received[-1], m.InSync)
    same_messages(dp.received, single_flush(world()))
