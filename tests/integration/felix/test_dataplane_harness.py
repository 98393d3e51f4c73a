"""Shared helpers of the dataplane integration tests (no tests here): messages and a running dataplane.

The dataplane runs as a task in the test's event loop against a host
namespace from :mod:`tests.fixtures.netns`; the tests feed it the messages
the calculation graph would send and check real traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterable

from services.felix.dataplane.dataplane import Dataplane, DataplaneOptions
from services.felix.dataplane.settings import DataplaneSettings
from services.felix.messages import (
    ActivePolicyUpdate,
    ActiveProfileUpdate,
    Message,
    PolicyID,
    Rule,
    TierInfo,
    WorkloadEndpoint,
    WorkloadEndpointID,
    WorkloadEndpointUpdate,
)
from tests.fixtures.netns import Netns, Pod

PROFILE = "kns.default"


def allow_profile(name: str = PROFILE) -> ActiveProfileUpdate:
    """A namespace profile that allows everything both ways (Kubernetes' default)."""
    return ActiveProfileUpdate(name, (Rule("allow"),), (Rule("allow"),))


def endpoint(pod: Pod, *, tiers: Iterable[TierInfo] = (), profiles: Iterable[str] = (PROFILE,)
             ) -> WorkloadEndpointUpdate:
    """The WorkloadEndpointUpdate for a fixture pod."""
    return WorkloadEndpointUpdate(
        WorkloadEndpointID("k8s", f"default/{pod.name}", "eth0"),
        WorkloadEndpoint(pod.iface, pod.mac, (f"{pod.ip}/32",), (), tuple(profiles), tuple(tiers)),
    )


def policy(name: str, inbound: Iterable[Rule] = (), outbound: Iterable[Rule] = (), tier: str = "default"
           ) -> ActivePolicyUpdate:
    """An active policy with compiled rules."""
    return ActivePolicyUpdate(PolicyID(tier, name), tuple(inbound), tuple(outbound))


def tier(name: str = "default", ingress: Iterable[str] = (), egress: Iterable[str] = (),
         default_action: str = "deny") -> TierInfo:
    """One tier's policies for an endpoint."""
    return TierInfo(name, tuple(ingress), tuple(egress), default_action)


@contextlib.asynccontextmanager
async def running(host: Netns, messages: Iterable[Message] = (), *, hostname: str = "host-a",
                  settings: DataplaneSettings | None = None) -> AsyncIterator[Dataplane]:
    """A dataplane task for ``host``, fed ``messages`` and settled; cancelled on exit."""
    dp = Dataplane(DataplaneOptions(hostname=hostname, netns=host.name, settings=settings or DataplaneSettings()))
    async with dataplane_task(dp):
        for msg in messages:
            dp.send(msg)
        await dp.settled()
        yield dp


@contextlib.asynccontextmanager
async def dataplane_task(dp: Dataplane) -> AsyncIterator[Dataplane]:
    """``dp`` running as a task (its hooks, if a test replaces any, set before); cancelled on exit."""
    task = asyncio.create_task(dp.run(), name=f"dataplane-{dp.options.hostname}")
    try:
        yield dp
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def nft_json(ns: Netns, *what: str) -> list[dict[str, object]]:
    """``nft -j list …`` inside ``ns`` as a list of objects."""
    out = ns.nft("-j", "list", *what).stdout
    items: list[dict[str, object]] = json.loads(out)["nftables"]
    return items


def chain_rules(ns: Netns, chain: str) -> list[dict[str, object]]:
    """The rules of one chain of ``inet calico``."""
    return [item["rule"] for item in nft_json(ns, "chain", "inet", "calico", chain) if "rule" in item]  # type: ignore[misc]
