"""The typed Client on every backend: metadata filled, compare-and-swap, and Calico's error wording.

Part of the datastore contract (see test_datastore_contract.py); runs once per backend.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from libcalico.datastore import Client
from libcalico.datastore.backend import Backend
from libcalico.errors import AlreadyExists, NotFound, RevisionConflict, ValidationError
from libcalico.resources import GlobalNetworkPolicy, NetworkPolicy, parse_resource
from tests.integration.test_datastore_contract import GNP


def rv(res: Any) -> int:
    """A resource's resourceVersion as the revision it is."""
    assert res.metadata.resourceVersion, f"{res.identifier()} has no resourceVersion"
    return int(res.metadata.resourceVersion)


def policy(kind: str, name: str, namespace: str | None = None, **spec: Any) -> Any:
    """A NetworkPolicy or GlobalNetworkPolicy resource, validated as calicoctl would load it."""

    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": kind, "metadata": meta,
                           "spec": {"selector": "all()", "types": ["Ingress"], **spec}})


def ippool(name: str, cidr: str) -> Any:

    return parse_resource({"apiVersion": "projectcalico.org/v3", "kind": "IPPool", "metadata": {"name": name},
                           "spec": {"cidr": cidr, "blockSize": 26, "vxlanMode": "Always", "natOutgoing": True}})


async def test_client_create_fills_metadata_and_get_returns_it(backend: Backend) -> None:

    client = Client(backend)
    created: Any = await client.create(policy("GlobalNetworkPolicy", "deny-all", order=100))
    meta = created.metadata
    assert meta.resourceVersion and int(meta.resourceVersion) > 0
    assert meta.uid and len(meta.uid) == 36
    assert meta.creationTimestamp and re_rfc3339(meta.creationTimestamp)
    fetched = await client.get(GlobalNetworkPolicy, "deny-all")
    assert fetched == created
    assert await client.get("GlobalNetworkPolicy", "deny-all") == created
    stored = await backend.get(GNP + "deny-all")
    assert str(stored.revision) == meta.resourceVersion and "resourceVersion" not in stored.value["metadata"]


def re_rfc3339(text: str) -> bool:
    return re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text) is not None


async def test_client_errors_use_calicos_wording(backend: Backend) -> None:

    client = Client(backend)
    with pytest.raises(NotFound) as missing:
        await client.get(GlobalNetworkPolicy, "nope")
    assert str(missing.value) == "resource does not exist: GlobalNetworkPolicy(nope)"
    with pytest.raises(NotFound) as missing_ns:
        await client.get(NetworkPolicy, "nope")
    assert str(missing_ns.value) == "resource does not exist: NetworkPolicy(default/nope)"
    with pytest.raises(NotFound) as missing_update:
        await client.update(policy("NetworkPolicy", "nope", "prod"))
    assert str(missing_update.value) == "resource does not exist: NetworkPolicy(prod/nope)"
    with pytest.raises(NotFound) as missing_delete:
        await client.delete(NetworkPolicy, "nope", "prod")
    assert str(missing_delete.value) == "resource does not exist: NetworkPolicy(prod/nope)"

    await client.create(policy("NetworkPolicy", "web", "prod"))
    with pytest.raises(AlreadyExists) as exists:
        await client.create(policy("NetworkPolicy", "web", "prod", order=5))
    assert str(exists.value) == "resource already exists: NetworkPolicy(prod/web)"
    with_version = policy("GlobalNetworkPolicy", "x")
    with_version.metadata.resourceVersion = "12"
    with pytest.raises(ValidationError, match="resourceVersion"):
        await client.create(with_version)
    assert (await backend.list(GNP)).items == []


async def test_client_update_keeps_identity_and_compares_resource_versions(backend: Backend) -> None:

    client = Client(backend)
    created: Any = await client.create(policy("NetworkPolicy", "web", "prod", order=1))
    change = created.model_copy(deep=True)
    change.spec.order = 2.0
    updated: Any = await client.update(change)
    assert rv(updated) > rv(created)
    assert updated.metadata.uid == created.metadata.uid
    assert updated.metadata.creationTimestamp == created.metadata.creationTimestamp
    assert updated.spec.order == 2

    stale = created.model_copy(deep=True)  # still carries the first resourceVersion
    stale.spec.order = 3.0
    with pytest.raises(RevisionConflict) as conflict:
        await client.update(stale)
    assert conflict.value.identifier == "NetworkPolicy(prod/web)"
    current: Any = await client.get("NetworkPolicy", "web", "prod")
    assert current.spec.order == 2

    blind = policy("NetworkPolicy", "web", "prod", order=4)  # no resourceVersion: unconditional
    replaced: Any = await client.update(blind)
    assert replaced.spec.order == 4 and rv(replaced) > rv(updated)


async def test_client_apply_creates_then_replaces(backend: Backend) -> None:

    client = Client(backend)
    first: Any = await client.apply(ippool("pool-a", "10.244.0.0/16"))
    assert first.spec.cidr == "10.244.0.0/16" and first.metadata.uid
    second: Any = await client.apply(ippool("pool-a", "10.245.0.0/16"))
    assert second.spec.cidr == "10.245.0.0/16"
    assert second.metadata.uid == first.metadata.uid
    assert rv(second) > rv(first)
    assert await client.get("IPPool", "pool-a") == second


async def test_client_list_and_delete(backend: Backend) -> None:

    client = Client(backend)
    for ns, name in [("prod", "web"), ("dev", "web"), ("prod", "db")]:
        await client.create(policy("NetworkPolicy", name, ns))
    await client.create(policy("NetworkPolicy", "fallback"))  # lands in the default namespace
    await client.create(policy("GlobalNetworkPolicy", "global-web"))

    everything, revision = await client.list(NetworkPolicy)
    assert [(r.namespace, r.name) for r in everything] == [
        ("default", "fallback"), ("dev", "web"), ("prod", "db"), ("prod", "web")]
    assert revision >= max(rv(r) for r in everything)
    prod, _ = await client.list(NetworkPolicy, "prod")
    assert [r.name for r in prod] == ["db", "web"]
    named, _ = await client.list(NetworkPolicy, None, name_prefix="w")
    assert [(r.namespace, r.name) for r in named] == [("dev", "web"), ("prod", "web")]
    globals_, _ = await client.list(GlobalNetworkPolicy)
    assert [r.name for r in globals_] == ["global-web"]

    web = await client.get(NetworkPolicy, "web", "prod")
    with pytest.raises(RevisionConflict):
        await client.delete(NetworkPolicy, "web", "prod", revision=rv(web) - 1)
    deleted = await client.delete(NetworkPolicy, "web", "prod", revision=rv(web))
    assert deleted == web
    assert [r.name for r in (await client.list(NetworkPolicy, "prod"))[0]] == ["db"]
    with pytest.raises(NotFound):
        await client.get(NetworkPolicy, "web", "prod")
