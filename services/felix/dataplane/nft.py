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
- :class:`NftProcess` runs ``nft -f`` on the batch (through ``nsenter`` when a
  namespace is given). The batch, nft's output and its errors live in memory
  files, and the exit is seen through a pidfd in the event loop: no pipe to
  feed and no watcher thread, so nft runs to its end at full speed even while
  this thread is busy rendering (a thread waiting for the GIL behind a busy
  event loop can wait for seconds, measured).

A batch is one transaction: if any command fails, the kernel keeps the old
ruleset and :class:`NftablesError` carries nft's message.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import subprocess
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

    async def apply(self, batch: str, *, bulk: bool = False) -> None:
        """Apply ``batch`` (nft script text) as one atomic transaction; ``bulk``: in an ``nft`` process
        where the backend has a choice (start-up stages: this thread stays free to render)."""

    async def list_table(self, family: str, table: str) -> dict[str, Any] | None:
        """The table as nft JSON (``{"nftables": <items>}``, items decoded one at a time), or None when
        it does not exist."""

    async def delete_table_if_present(self, family: str, table: str) -> bool:
        """Delete a table if it exists; True when one was deleted."""

    def set_nice(self, value: int) -> None:
        """Run ``nft`` processes at this niceness from now on, and move those running now to it."""

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

    async def apply(self, batch: str, *, bulk: bool = False) -> None:
        if self._bulk is not None and (bulk or len(batch) > BULK_BATCH_BYTES):
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

    def set_nice(self, value: int) -> None:
        if self._bulk is not None:
            self._bulk.set_nice(value)

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
        self._nice = 0
        self._running: set[int] = set()  # pids of the nft processes running now

    async def _run(self, args: list[str], batch: str | None = None) -> tuple[int, str, str]:
        fds = [os.memfd_create(name, os.MFD_CLOEXEC) for name in ("felix-nft-batch", "felix-nft-out", "felix-nft-err")]
        try:
            if batch is not None:
                os.write(fds[0], batch.encode())
                args = ["-f", f"/dev/fd/{fds[0]}", *args]
            rc = await run_process([*self._prefix, *args], fds[1], fds[2], (fds[0],), self._nice, self._running)
            out, err = _read_all(fds[1]), _read_all(fds[2])
        finally:
            for fd in fds:
                os.close(fd)
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    async def apply(self, batch: str, *, bulk: bool = False) -> None:
        rc, _out, err = await self._run([], batch)
        if rc:
            raise NftablesError(_first_lines(err), batch_lines=batch.count("\n") + 1)

    async def list_table(self, family: str, table: str) -> dict[str, Any] | None:
        rc, out, err = await self._run(["-j", "-a", "-p", "list", "table", family, table])
        if rc != 0:
            if any(marker in err for marker in _NO_SUCH_TABLE):
                return None
            raise NftablesError(_first_lines(err))
        return {"nftables": json_items(out)}

    async def delete_table_if_present(self, family: str, table: str) -> bool:
        rc, _out, err = await self._run(["delete", "table", family, table])
        if rc != 0:
            if any(marker in err for marker in _NO_SUCH_TABLE):
                return False
            raise NftablesError(_first_lines(err))
        return True

    def set_nice(self, value: int) -> None:
        self._nice = value
        for pid in list(self._running):
            renice(pid, value)

    def close(self) -> None:
        return None


def open_backend(kind: str, thread: NamespaceThread) -> NftBackend:
    """The backend named ``kind`` ("libnftables" or "nft") for the thread's namespace."""
    if kind == "libnftables":
        return LibNftables(thread)
    if kind == "nft":
        return NftProcess(thread.netns)
    raise DataplaneError(f"unknown nftables backend {kind!r}; expected 'libnftables' or 'nft'")


async def run_process(argv: list[str], stdout: int, stderr: int, pass_fds: tuple[int, ...] = (), nice: int = 0,
                      running: set[int] | None = None) -> int:
    """Run ``argv`` to its end and return its exit status; its exit is awaited through a pidfd.

    ``nice``: the process's niceness; ``running``: holds its pid while it runs (to renice it).
    """
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, pass_fds=pass_fds)
    if nice:
        renice(proc.pid, nice)
    if running is not None:
        running.add(proc.pid)
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:
        if not exited.done():
            exited.set_result(None)

    pidfd = os.pidfd_open(proc.pid)
    loop.add_reader(pidfd, on_exit)
    try:
        await exited
    except BaseException:
        proc.kill()  # nft's batch is one transaction: it commits all of it or nothing
        raise
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        proc.wait()
        if running is not None:
            running.discard(proc.pid)
    return proc.returncode


def renice(pid: int, value: int) -> None:
    """Set a process's niceness; a process that is gone, or a priority we may not raise, is left alone."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, value)
    except (ProcessLookupError, PermissionError):
        pass


def _read_all(fd: int) -> bytes:
    size = os.fstat(fd).st_size
    return os.pread(fd, size, 0) if size else b""


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
