"""The WorkloadEndpoint a pod gets, and the wait for Felix to report it programmed.

Felix signals that an endpoint's policy is in place by writing a file named
:attr:`Workload.status_filename` in ``endpoint_status_dir`` (default
``/var/run/calico/endpoint-status``). With ``policy_setup_timeout_seconds`` > 0,
ADD waits (polling) until that file exists and, when it holds a JSON object
with a ``status`` field, until that field is ``"up"``. A timeout is logged, not
failed, as in Calico.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import structlog

from libcalico.datastore.client import Client
from libcalico.errors import NotFound, RevisionConflict
from libcalico.resources import WorkloadEndpoint, parse_resource
from services.cni.workload import Workload

log = structlog.get_logger("calico")

STATUS_POLL = 0.02


async def write_endpoint(client: Client, doc: dict[str, Any]) -> WorkloadEndpoint:
    """Create or replace the WorkloadEndpoint (validated first)."""
    res = parse_resource(doc)
    assert isinstance(res, WorkloadEndpoint)
    out = await client.apply(res)
    assert isinstance(out, WorkloadEndpoint)
    return out


async def delete_endpoint(client: Client, workload: Workload) -> bool:
    """Delete the workload's endpoint if it belongs to this container; False when there was none to delete."""
    for _ in range(8):
        try:
            current = await client.get(WorkloadEndpoint, workload.wep_name, workload.namespace)
        except NotFound:
            return False
        owner = current.spec.containerID  # type: ignore[attr-defined]
        if owner and owner != workload.container_id:
            log.info("endpoint_kept", name=workload.wep_name, owner=owner, container=workload.container_id)
            return False
        try:
            await client.delete(WorkloadEndpoint, workload.wep_name, workload.namespace,
                                revision=int(current.metadata.resourceVersion or 0))
        except NotFound:
            return False
        except RevisionConflict:
            continue
        return True
    return False


def status_ready(path: str) -> bool:
    """True when Felix's status file exists and does not say the endpoint is anything but up."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return False
    except OSError:
        return False
    try:
        doc = json.loads(text) if text.strip() else {}
    except json.JSONDecodeError:
        return True
    return not (isinstance(doc, dict) and "status" in doc and doc["status"] != "up")


async def wait_for_status(directory: str, workload: Workload, timeout: float) -> bool:
    """Poll for Felix's status file until it is ready or ``timeout`` seconds pass."""
    path = os.path.join(directory, workload.status_filename)
    deadline = time.monotonic() + timeout
    while True:
        if status_ready(path):
            return True
        if time.monotonic() >= deadline:
            log.warning("endpoint_status_timeout", path=path, timeout=timeout)
            return False
        await asyncio.sleep(STATUS_POLL)
