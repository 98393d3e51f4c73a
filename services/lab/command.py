"""Running external programs (ip, nft, CNI plugins) with bounded time and clear errors."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.lab.errors import CommandFailed


@dataclass(frozen=True)
class Completed:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


async def run(*argv: str, stdin: str | None = None, env: Mapping[str, str] | None = None,
              timeout: float = 30.0, check: bool = True) -> Completed:
    """Run a command to completion; raise CommandFailed with its output when it fails and ``check``."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None)
    except FileNotFoundError:
        raise CommandFailed(f"{argv[0]} is not installed") from None
    except PermissionError:
        raise CommandFailed(f"{argv[0]} is not executable") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode() if stdin is not None else None), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CommandFailed(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from None
    except asyncio.CancelledError:  # the caller gave up (a sibling step failed): do not leave it running
        if proc.returncode is None:
            proc.kill()
            await asyncio.shield(proc.wait())
        raise
    done = Completed(tuple(argv), proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))
    if check and done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip() or "no output"
        raise CommandFailed(f"{' '.join(argv)} failed (exit {done.returncode}): {detail}")
    return done


def base_env() -> dict[str, str]:
    """The environment every child starts from: PATH and locale, nothing of the caller's datastore."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TERM", "VIRTUAL_ENV", "PYTHONPATH")
    return {k: os.environ[k] for k in keep if k in os.environ}
