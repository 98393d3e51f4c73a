"""Running another IPAM plugin (``ipam.type`` other than calico-ipam) the CNI way: found on CNI_PATH,
given the same stdin and environment with CNI_COMMAND set, its JSON read back."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

from services.cni.errors import INTERNAL, INVALID_NETWORK_CONFIG, CniError
from services.cni.request import CniRequest

DELEGATE_TIMEOUT = 120.0


def find_plugin(name: str, path: tuple[str, ...]) -> str:
    """The executable for a plugin type; raise CniError code 7 when CNI_PATH has none."""
    if "/" in name or not name:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid network config", f"ipam.type {name!r} is not a plugin name")
    for directory in path:
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise CniError(INVALID_NETWORK_CONFIG, f"failed to find plugin {name!r} in path {list(path)}")


async def delegate(req: CniRequest, env: Mapping[str, str], command: str) -> dict[str, Any] | None:
    """Run the IPAM plugin for ``command``; return its result (ADD) or raise its error as a CniError."""
    assert req.conf is not None and req.conf.ipam is not None
    exe = find_plugin(req.conf.ipam.type, req.path)
    proc = await asyncio.create_subprocess_exec(
        exe, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        env={**env, "CNI_COMMAND": command})
    try:
        out, _ = await asyncio.wait_for(proc.communicate(req.stdin), DELEGATE_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CniError(INTERNAL, f"IPAM plugin {req.conf.ipam.type} timed out") from None
    doc: Any = None
    if out.strip():
        try:
            doc = json.loads(out)
        except json.JSONDecodeError:
            raise CniError(INTERNAL, f"IPAM plugin {req.conf.ipam.type} printed invalid JSON",
                           out[:200].decode(errors="replace")) from None
    if proc.returncode != 0:
        if isinstance(doc, dict) and "code" in doc:
            raise CniError(int(doc["code"]), str(doc.get("msg", "")), str(doc.get("details", "")))
        raise CniError(INTERNAL, f"IPAM plugin {req.conf.ipam.type} failed with status {proc.returncode}")
    return doc if isinstance(doc, dict) else None
