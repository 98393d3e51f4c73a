"""IPAM's datastore steps, each a compare-and-swap with a bounded, jittered retry.

How it works::

    claim a block for host H            release H's affinity to a block
    1 create affinity  (pending)        1 affinity -> pendingDeletion
    2 create block (affinity host:H)    2 block empty? delete it (CAS) : keep it, drop its affinity
      exists for another host? undo 1     (must_be_empty: put the affinity back, raise BlockNotEmpty)
    3 affinity -> confirmed             3 delete the affinity

    allocate n addresses in a block     release addresses
    1 read block, choose ordinals       1 read block, free ordinals (handle / sequence checked)
    2 handle[block] += n  (CAS)         2 write block (CAS)  -- or delete it when empty and unowned
    3 write block (CAS on revision)     3 handle[block] -= n (CAS), handle deleted when empty

A crash between any two steps leaves only states the next caller repairs: a
pending affinity without a block is finished or dropped by the next claim, a
handle count above the block's real count is corrected by the owner's release
by handle. The handle is always written *before* the block, so no allocation
ever exists that its handle does not list.

``fault`` is a test hook called with the name of each step boundary; the
property test uses it to kill the process between steps.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog

from libcalico.datastore.backend import KV, Backend
from libcalico.errors import AlreadyExists, NotFound, RevisionConflict
from libcalico.ipam.errors import BlockNotEmpty, ContentionExceeded
from libcalico.ipam.keys import IPNetwork, affinity_key, block_key, handle_key
from libcalico.ipam.model import Affinity, AffinityState, Block, Handle

log = structlog.get_logger(__name__)

FaultHook = Callable[[str], None]
T = TypeVar("T")

DEFAULT_RETRIES = 100
MAX_BACKOFF = 0.05


def _no_fault(point: str) -> None:
    return None


async def backoff(attempt: int) -> None:
    """Wait a random, growing slice of time before retrying a conflicting write."""
    if attempt == 0:
        await asyncio.sleep(0)
        return
    await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF, 0.0005 * (2 ** min(attempt, 10)))))


class IPAMStore:
    """Reads and compare-and-swap writes of blocks, affinities and handles."""

    def __init__(self, backend: Backend, *, retries: int = DEFAULT_RETRIES, fault: FaultHook | None = None) -> None:
        self.backend = backend
        self.retries = retries
        self.fault = fault or _no_fault

    async def retry(self, what: str, attempt_once: Callable[[], Awaitable[tuple[bool, T]]]) -> T:
        """Run ``attempt_once`` until it reports done; it reports a conflict by returning (False, _)."""
        for attempt in range(self.retries):
            done, value = await attempt_once()
            if done:
                return value
            await backoff(attempt)
        raise ContentionExceeded(what, self.retries)

    # ------------------------------------------------------------ blocks

    async def read_block(self, cidr: IPNetwork) -> tuple[Block, int] | None:
        """The block and its revision, or None when it does not exist."""
        key = block_key(cidr)
        try:
            kv = await self.backend.get(key)
        except NotFound:
            return None
        return Block.from_value(key, kv.value), kv.revision

    async def write_block(self, block: Block, revision: int) -> bool:
        """Replace a block at a revision (bumping its sequence number); False on a conflict or deletion."""
        block.bump()
        try:
            await self.backend.update(block_key(block.cidr), block.to_value(), revision=revision)
        except (RevisionConflict, NotFound):
            return False
        return True

    async def delete_block(self, cidr: IPNetwork, revision: int) -> bool:
        """Delete a block at a revision; False on a conflict (True when already gone)."""
        try:
            await self.backend.delete(block_key(cidr), revision=revision)
        except RevisionConflict:
            return False
        except NotFound:
            return True
        return True

    # ------------------------------------------------------------ handles

    async def read_handle(self, handle: str) -> tuple[Handle, int] | None:
        """The handle and its revision, or None when it does not exist."""
        key = handle_key(handle)
        try:
            kv = await self.backend.get(key)
        except NotFound:
            return None
        return Handle.from_value(key, handle, kv.value), kv.revision

    async def handle_add(self, handle: str, cidr: IPNetwork, count: int) -> None:
        """Add ``count`` to the handle's tally for a block (creating the handle)."""
        if count == 0:
            return
        key, block = handle_key(handle), str(cidr)
        if count > 0:  # usually a new handle: one create, no read
            try:
                await self.backend.create(key, Handle(handle, {block: count}).to_value())
                return
            except AlreadyExists:
                pass

        async def once() -> tuple[bool, None]:
            current = await self.read_handle(handle)
            if current is None:
                if count < 0:
                    return True, None
                try:
                    await self.backend.create(key, Handle(handle, {block: count}).to_value())
                except AlreadyExists:
                    return False, None
                return True, None
            value, revision = current
            value.blocks[block] = value.blocks.get(block, 0) + count
            if value.blocks[block] <= 0:
                del value.blocks[block]
            return await self._put_handle(value, revision), None

        await self.retry(f"update handle {handle}", once)

    async def handle_drop(self, handle: str, cidr: IPNetwork, released: int, remaining: int) -> None:
        """After a release: lower the handle's tally for a block, removing it when nothing of the handle remains."""
        block = str(cidr)

        async def once() -> tuple[bool, None]:
            current = await self.read_handle(handle)
            if current is None:
                return True, None
            value, revision = current
            left = value.blocks.get(block, 0) - released
            if remaining == 0 or left <= 0:
                value.blocks.pop(block, None)
            else:
                value.blocks[block] = max(left, remaining)
            return await self._put_handle(value, revision), None

        await self.retry(f"release handle {handle}", once)

    async def _put_handle(self, value: Handle, revision: int) -> bool:
        key = handle_key(value.handle)
        try:
            if value.blocks:
                await self.backend.update(key, value.to_value(), revision=revision)
            else:
                await self.backend.delete(key, revision=revision)
        except (RevisionConflict, NotFound):
            return False
        return True

    # ------------------------------------------------------------ affinities

    async def read_affinity(self, host: str, cidr: IPNetwork) -> tuple[AffinityState, int] | None:
        """The state and revision of a host's affinity to a block, or None."""
        key = affinity_key(host, cidr)
        try:
            kv = await self.backend.get(key)
        except NotFound:
            return None
        return Affinity.state_of(key, kv.value), kv.revision

    async def _set_affinity(self, host: str, cidr: IPNetwork, state: AffinityState, revision: int) -> bool:
        try:
            await self.backend.update(affinity_key(host, cidr), Affinity(host, cidr, state).to_value(),
                                      revision=revision)
        except (RevisionConflict, NotFound):
            return False
        return True

    async def drop_affinity(self, host: str, cidr: IPNetwork, only: tuple[AffinityState, ...] = ()) -> None:
        """Delete a host's affinity to a block (only in the given states, when any are given)."""

        async def once() -> tuple[bool, None]:
            current = await self.read_affinity(host, cidr)
            if current is None or (only and current[0] not in only):
                return True, None
            try:
                await self.backend.delete(affinity_key(host, cidr), revision=current[1])
            except NotFound:
                return True, None
            except RevisionConflict:
                return False, None
            return True, None

        await self.retry(f"delete affinity {host} {cidr}", once)

    async def claim(self, host: str, cidr: IPNetwork) -> bool:
        """Claim a block for a host (pending -> block -> confirmed); False when another host has it."""
        akey = affinity_key(host, cidr)
        try:
            await self.backend.create(akey, Affinity(host, cidr, AffinityState.PENDING).to_value())
        except AlreadyExists:
            current = await self.read_affinity(host, cidr)
            if current is not None and current[0] is AffinityState.PENDING_DELETION:
                return False
        self.fault("affinity-pending")
        try:
            await self.backend.create(block_key(cidr), Block.for_host(cidr, host).to_value())
        except AlreadyExists:
            existing = await self.read_block(cidr)
            if existing is None or existing[0].host != host:
                await self.drop_affinity(host, cidr, only=(AffinityState.PENDING,))
                return False
        self.fault("block-created")

        async def confirm() -> tuple[bool, bool]:
            current = await self.read_affinity(host, cidr)
            if current is None or current[0] is AffinityState.PENDING_DELETION:
                return True, False
            if current[0] is AffinityState.CONFIRMED:
                return True, True
            return await self._set_affinity(host, cidr, AffinityState.CONFIRMED, current[1]), True

        claimed = await self.retry(f"confirm affinity {host} {cidr}", confirm)
        if claimed:
            log.debug("ipam_block_claimed", host=host, cidr=str(cidr))
        return claimed

    async def release_affinity(self, host: str, cidr: IPNetwork, must_be_empty: bool = True) -> bool:
        """Release a host's affinity to a block; False when there was none. Raise BlockNotEmpty."""
        async def mark() -> tuple[bool, int | None]:
            current = await self.read_affinity(host, cidr)
            if current is None:
                return True, None
            state, revision = current
            if state is AffinityState.PENDING_DELETION:
                return True, revision
            if await self._set_affinity(host, cidr, AffinityState.PENDING_DELETION, revision):
                return True, revision
            return False, None

        if await self.retry(f"mark affinity {host} {cidr}", mark) is None:
            return False
        self.fault("affinity-pending-deletion")

        async def settle() -> tuple[bool, bool]:
            found = await self.read_block(cidr)
            if found is None:
                return True, True
            block, revision = found
            if block.host != host:
                return True, True
            if block.is_empty():
                return await self.delete_block(cidr, revision), True
            if must_be_empty:
                return True, False
            block.affinity = None
            return await self.write_block(block, revision), True

        emptied = await self.retry(f"release block {cidr}", settle)
        if not emptied:
            await self._restore_affinity(host, cidr)
            raise BlockNotEmpty(str(cidr))
        self.fault("block-released")
        await self.drop_affinity(host, cidr)
        log.debug("ipam_affinity_released", host=host, cidr=str(cidr))
        return True

    async def _restore_affinity(self, host: str, cidr: IPNetwork) -> None:
        async def once() -> tuple[bool, None]:
            current = await self.read_affinity(host, cidr)
            if current is None or current[0] is not AffinityState.PENDING_DELETION:
                return True, None
            return await self._set_affinity(host, cidr, AffinityState.CONFIRMED, current[1]), None

        await self.retry(f"restore affinity {host} {cidr}", once)


async def get_or_none(backend: Backend, key: str) -> KV | None:
    """The entry at a key, or None."""
    try:
        return await backend.get(key)
    except NotFound:
        return None
