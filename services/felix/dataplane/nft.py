"""Talking to nftables: apply a text batch atomically, list a table as JSON.

Two interchangeable backends, both run inside the managed network namespace:

- :class:`LibNftables` calls ``libnftables.so.1`` (the library behind ``nft``
  and Debian's python3-nftables binding) through ctypes, in the namespace
  thread: no process start per batch. Measured faster here (see
  docs/felix-dataplane.md), so it is the default. Bulk work (a batch over
  ``BULK_BATCH_BYTES``, any listing) goes to an ``nft`` process instead:
  libnftables builds the whole ruleset in our memory for those (+83 MiB to
  load a 16,000-rule table, +60 MiB to list it, measured) and a process takes
  that peak with it, for ~15 ms more per job.
- :class:`NftProcess` pipes the batch into ``nft -f -`` (through ``nsenter``
  when a namespace is given).

A batch is one transaction: if any command fails, the kernel keeps the old
ruleset and :class:`NftablesError` carries nft's message.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any, Protocol

from services.felix.dataplane.errors import DataplaneError, NftablesError
from services.felix.dataplane.namespace import NamespaceThread, netns_path

BULK_BATCH_BYTES = 256 * 1024
_OUTPUT_HANDLE = 1 << 3
_OUTPUT_JSON = 1 << 4
_OUTPUT_NUMERIC_PROTO = 1 << 7
_NO_SUCH_TABLE = ("No such file or directory", "does not exist")


class NftBackend(Protocol):
    """What the dataplane needs from nftables."""

    name: str

    async def apply(self, batch: str) -> None:
        """Apply ``batch`` (nft script text) as one atomic transaction."""

    async def list_table(self, family: str, table: str) -> dict[str, Any] | None:
        """The table as nft JSON (``{"nftables": <items>}``, items decoded one at a time), or None when
        it does not exist."""

    async def delete_table_if_present(self, family: str, table: str) -> bool:
        """Delete a table if it exists; True when one was deleted."""

    def close(self) -> None:
        """Release resources."""


class _Context:
    """One libnftables context (lives and is used only in the namespace thread)."""

    def __init__(self, json_output: bool) -> None:
        lib = ctypes.CDLL("libnftables.so.1")
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_int]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        lib.nft_ctx_buffer_output.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_buffer_error.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_output_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_output_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_get_error_buffer.restype = ctypes.c_char_p
        lib.nft_ctx_get_error_buffer.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._ctx = lib.nft_ctx_new(0)
        if not self._ctx:
            raise DataplaneError("libnftables: nft_ctx_new failed")
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        if json_output:
            lib.nft_ctx_output_set_flags(self._ctx, _OUTPUT_JSON | _OUTPUT_HANDLE | _OUTPUT_NUMERIC_PROTO)

    def run(self, text: str) -> tuple[int, str, str]:
        rc = self._lib.nft_run_cmd_from_buffer(self._ctx, text.encode())
        out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
        err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        return rc, out, err

    def free(self) -> None:
        if self._ctx:
            self._lib.nft_ctx_free(self._ctx)
            self._ctx = None


class LibNftables:
    """nftables through libnftables (ctypes), in the namespace thread."""

    name = "libnftables"

    def __init__(self, thread: NamespaceThread) -> None:
        self._thread = thread
        self._apply_ctx: _Context = thread.call(_Context, False)
        self._json_ctx: _Context = thread.call(_Context, True)
        self._bulk: NftProcess | None = NftProcess(thread.netns) if shutil.which("nft") else None

    async def apply(self, batch: str) -> None:
        if self._bulk is not None and len(batch) > BULK_BATCH_BYTES:
            await self._bulk.apply(batch)
            return
        rc, _out, err = await self._thread.run(self._apply_ctx.run, batch)
        if rc != 0:
            raise NftablesError(_first_lines(err), batch_lines=batch.count("\n") + 1)

    async def list_table(self, family: str, table: str) -> dict[str, Any] | None:
        if self._bulk is not None:  # libnftables would cache the whole ruleset in our memory (even for
            return await self._bulk.list_table(family, table)  # "list tables": +60 MiB here)
        rc, out, err = await self._thread.run(self._json_ctx.run, f"list table {family} {table}")
        if rc != 0:
            if any(marker in err for marker in _NO_SUCH_TABLE):
                return None
            raise NftablesError(_first_lines(err))
        return {"nftables": json_items(out)}

    async def delete_table_if_present(self, family: str, table: str) -> bool:
        rc, _out, err = await self._thread.run(self._apply_ctx.run, f"delete table {family} {table}")
        if rc != 0:
            if any(marker in err for marker in _NO_SUCH_TABLE):
                return False
            raise NftablesError(_first_lines(err))
        return True

    def close(self) -> None:
        self._thread.call(self._apply_ctx.free)
        self._thread.call(self._json_ctx.free)


class NftProcess:
    """nftables through the ``nft`` program (``nft -f -``), entered into the namespace with nsenter."""

    name = "nft"

    def __init__(self, netns: str | None) -> None:
        nft = shutil.which("nft")
        if nft is None:
            raise DataplaneError("the nft program is not installed (Debian package nftables)")
        path = netns_path(netns)
        self._prefix = [nft] if path is None else ["nsenter", f"--net={path}", nft]

    async def _run(self, args: list[str], stdin: str | None) -> tuple[int, str, str]:
        proc = await asyncio.create_subprocess_exec(
            *self._prefix, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def apply(self, batch: str) -> None:
        # The batch goes in a memory file that nft reads by itself: a pipe would need this event loop
        # to feed it, so nft would stall whenever the loop is busy (see Dataplane's while_programming).
        fd = os.memfd_create("felix-nft-batch", os.MFD_CLOEXEC)
        try:
            os.write(fd, batch.encode())
            proc = await asyncio.create_subprocess_exec(
                *self._prefix, "-f", f"/dev/fd/{fd}", pass_fds=(fd,),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        finally:
            os.close(fd)
        _out, err = await proc.communicate()
        if proc.returncode:
            raise NftablesError(_first_lines(err.decode(errors="replace")), batch_lines=batch.count("\n") + 1)

    async def list_table(self, family: str, table: str) -> dict[str, Any] | None:
        rc, out, err = await self._run(["-j", "-a", "-p", "list", "table", family, table], None)
        if rc != 0:
            if any(marker in err for marker in _NO_SUCH_TABLE):
                return None
            raise NftablesError(_first_lines(err))
        return {"nftables": json_items(out)}

    async def delete_table_if_present(self, family: str, table: str) -> bool:
        rc, _out, err = await self._run(["delete", "table", family, table], None)
        if rc != 0:
            if any(marker in err for marker in _NO_SUCH_TABLE):
                return False
            raise NftablesError(_first_lines(err))
        return True

    def close(self) -> None:
        return None


def open_backend(kind: str, thread: NamespaceThread) -> NftBackend:
    """The backend named ``kind`` ("libnftables" or "nft") for the thread's namespace."""
    if kind == "libnftables":
        return LibNftables(thread)
    if kind == "nft":
        return NftProcess(thread.netns)
    raise DataplaneError(f"unknown nftables backend {kind!r}; expected 'libnftables' or 'nft'")


_DECODER = json.JSONDecoder()


def json_items(text: str) -> Iterator[dict[str, Any]]:
    """The items of an ``nft -j`` listing (``{"nftables": [item, ...]}``), decoded one at a time.

    A whole 16,000-rule listing decoded at once costs ~90 MiB of Python objects;
    item by item, the reader keeps only what it needs of each.
    """
    start = text.find("[", text.find('"nftables"'))
    if start < 0:
        raise NftablesError(f"unexpected nft JSON output: {text[:200]!r}")
    index, end = start + 1, len(text)
    while index < end:
        char = text[index]
        if char in " \t\r\n,":
            index += 1
        elif char == "]":
            return
        else:
            item, index = _DECODER.raw_decode(text, index)
            yield item
    raise NftablesError("truncated nft JSON output")


def _first_lines(text: str, limit: int = 12) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    if len(lines) > limit:
        lines = lines[:limit] + [f"... ({len(lines) - limit} more lines)"]
    return "\n".join(lines) or "nft failed without a message"
