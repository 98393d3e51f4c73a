"""The cluster-wide IPAM configuration: read with Calico's defaults, written with compare-and-swap.

Two places can hold it: the v3 ``IPAMConfiguration`` resource named ``default``
(what ``calicoctl apply`` writes) and Calico's v1 key ``/calico/ipam/v2/config``
(what ``calicoctl ipam configure`` writes, JSON fields ``strict_affinity``,
``auto_allocate_blocks``, ``maxBlocksPerHost``). Reading prefers the v3
resource, then the v1 key, then the defaults (strictAffinity false,
autoAllocateBlocks true, maxBlocksPerHost 0 meaning 20). Writing updates the
v1 key and, when it exists, the v3 resource, so both always agree.
"""

from __future__ import annotations

import asyncio

from libcalico.datastore.backend import Backend
from libcalico.datastore.client import Client, decode_resource, resource_key
from libcalico.errors import AlreadyExists, NotFound, RevisionConflict
from libcalico.ipam.errors import InvalidIPAMConfig
from libcalico.ipam.keys import CONFIG_KEY
from libcalico.ipam.model import IPAMSettings
from libcalico.ipam.store import IPAMStore, get_or_none
from libcalico.resources.ippool import IPAMConfiguration

V3_KEY = resource_key(IPAMConfiguration, "default")


def _from_resource(res: IPAMConfiguration) -> IPAMSettings:
    spec = res.spec
    return IPAMSettings(strict_affinity=spec.strictAffinity, auto_allocate_blocks=spec.autoAllocateBlocks,
                        max_blocks_per_host=int(spec.maxBlocksPerHost or 0))


async def read_settings(backend: Backend) -> IPAMSettings:
    """The IPAM configuration in force."""
    v3, v1 = await asyncio.gather(get_or_none(backend, V3_KEY), get_or_none(backend, CONFIG_KEY))
    if v3 is not None:
        res = decode_resource(v3, IPAMConfiguration)
        assert isinstance(res, IPAMConfiguration)
        return _from_resource(res)
    if v1 is not None:
        return IPAMSettings.from_v2(v1.value)
    return IPAMSettings()


def check_settings(settings: IPAMSettings) -> None:
    """Raise InvalidIPAMConfig for a configuration Calico refuses."""
    if settings.max_blocks_per_host < 0:
        raise InvalidIPAMConfig(f"maxBlocksPerHost must be 0 or more, not {settings.max_blocks_per_host}")
    if not settings.strict_affinity and not settings.auto_allocate_blocks:
        raise InvalidIPAMConfig("autoAllocateBlocks false requires strictAffinity true "
                                "(otherwise no block could ever be used)")


async def write_settings(backend: Backend, settings: IPAMSettings, store: IPAMStore | None = None) -> IPAMSettings:
    """Store a new IPAM configuration in both places; raise InvalidIPAMConfig."""
    check_settings(settings)
    store = store or IPAMStore(backend)
    value = settings.to_v2()

    async def v1_once() -> tuple[bool, None]:
        current = await get_or_none(backend, CONFIG_KEY)
        try:
            if current is None:
                await backend.create(CONFIG_KEY, value)
            else:
                await backend.update(CONFIG_KEY, value, revision=current.revision)
        except (AlreadyExists, RevisionConflict, NotFound):
            return False, None
        return True, None

    await store.retry("write IPAM config", v1_once)
    client = Client(backend)

    async def v3_once() -> tuple[bool, None]:
        try:
            res = await client.get(IPAMConfiguration, "default")
        except NotFound:
            return True, None
        assert isinstance(res, IPAMConfiguration)
        res = res.model_copy(deep=True)
        res.spec.strictAffinity = settings.strict_affinity
        res.spec.autoAllocateBlocks = settings.auto_allocate_blocks
        res.spec.maxBlocksPerHost = settings.max_blocks_per_host
        try:
            await client.update(res)
        except (RevisionConflict, NotFound):
            return False, None
        return True, None

    await store.retry("write IPAMConfiguration", v3_once)
    return settings
