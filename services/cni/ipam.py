"""The ``calico-ipam`` CNI plugin: addresses from Calico IPAM for one container.

- ADD: the handle ``<network>.<containerID>`` gets ``assign_ipv4`` (default) and
  ``assign_ipv6`` addresses from ``ipam.ipv4_pools``/``ipv6_pools`` (or any pool
  that selects this node and namespace). A handle that already holds addresses
  gets those back, so ADD twice hands out nothing new.
- DEL: release everything the handle holds; nothing held is success.
- CHECK: the handle must still hold every address of ``prevResult``.
- STATUS: the datastore answers and at least one pool is enabled.

The ``calico`` plugin calls the same functions in-process when ``ipam.type`` is
``calico-ipam``.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
from collections.abc import Mapping
from typing import Any, NoReturn

import structlog

from libcalico.datastore.backend import Backend
from libcalico.datastore.client import Client
from libcalico.errors import CalicoError
from libcalico.ipam import IPAM, AssignRequest
from libcalico.resources.ippool import IPPool
from libcalico.resources.profile import Profile
from services.cni import invocation
from services.cni.errors import CHECK_FAILED, INVALID_NETWORK_CONFIG, PLUGIN_NOT_AVAILABLE, CniError
from services.cni.request import CniRequest
from services.cni.result import Result, ipam_result
from services.cni.workload import Workload, resolve_workload

log = structlog.get_logger("calico-ipam")

ASSIGN_TIMEOUT = 90.0


async def namespace_labels(client: Client, workload: Workload) -> dict[str, str] | None:
    """A Kubernetes namespace's labels, as kube-controllers copies them to profile ``kns.<ns>``."""
    if not workload.is_k8s:
        return None
    labels = {"kubernetes.io/metadata.name": workload.namespace, "projectcalico.org/name": workload.namespace}
    try:
        profile = await client.get(Profile, f"kns.{workload.namespace}")
    except CalicoError:
        return labels
    for key, value in (profile.spec.labelsToApply or {}).items():  # type: ignore[attr-defined]
        labels[key.removeprefix("pcns.")] = value
    return labels


async def add(req: CniRequest, backend: Backend, workload: Workload) -> Result:
    """Assign (or find again) the workload's addresses."""
    conf = req.netconf
    if conf.ipam is None:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid network config", "ipam: field is required")
    ipam = IPAM(backend)
    held = await ipam.ips_by_handle(workload.handle)
    if held:
        log.info("ipam_handle_reused", handle=workload.handle, addresses=[str(a) for a in held])
        return ipam_result([ipaddress.ip_interface(f"{a}/{a.max_prefixlen}") for a in held], conf.dns)
    want4, want6 = conf.ipam.want_ipv4, conf.ipam.want_ipv6
    if not want4 and not want6:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid network config",
                       "ipam: assign_ipv4 and assign_ipv6 are both false; nothing to assign")
    request = AssignRequest(
        host=workload.node, num4=1 if want4 else 0, num6=1 if want6 else 0, handle=workload.handle,
        attrs=workload.ipam_attrs(datetime.datetime.now(datetime.UTC)),
        ipv4_pools=conf.ipam.ipv4_pools, ipv6_pools=conf.ipam.ipv6_pools,
        namespace_labels=await namespace_labels(ipam.client, workload),
    )
    with invocation.ipam_lock(conf.ipam_lock_file):
        got = await asyncio.wait_for(ipam.auto_assign(request), ASSIGN_TIMEOUT)
    return ipam_result([*got.ipv4, *got.ipv6], conf.dns)


async def delete(req: CniRequest, backend: Backend, workload: Workload) -> list[str]:
    """Release the workload's addresses (none held: nothing to do)."""
    with invocation.ipam_lock(req.netconf.ipam_lock_file):
        released = await IPAM(backend).release_by_handle(workload.handle)
    return [str(ip) for ip in released]


async def check(req: CniRequest, backend: Backend, workload: Workload) -> None:
    """Raise CniError unless the handle still holds every address of ``prevResult``."""
    if req.netconf.prevResult is None:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid network config", "prevResult: required for CHECK")
    expected = {str(a.ip) for a in Result.from_json(req.netconf.prevResult).addresses()}
    held = {str(ip) for ip in await IPAM(backend).ips_by_handle(workload.handle)}
    missing = sorted(expected - held)
    if missing:
        raise CniError(CHECK_FAILED, "IPAM allocation missing",
                       f"handle {workload.handle} no longer holds {', '.join(missing)}")


async def status(backend: Backend) -> None:
    """Raise CniError code 50 unless the datastore answers and some pool is enabled."""
    try:
        pools, _ = await Client(backend).list(IPPool)
    except CalicoError as exc:
        raise CniError(PLUGIN_NOT_AVAILABLE, "datastore not available", str(exc)) from None
    if not any(isinstance(p, IPPool) and not p.spec.disabled for p in pools):
        raise CniError(PLUGIN_NOT_AVAILABLE, "no enabled IP pools", "create an IPPool before adding containers")


async def handle(req: CniRequest, env: Mapping[str, str]) -> dict[str, Any] | None:
    """Dispatch one calico-ipam request."""
    conf = req.netconf
    try:
        async with invocation.open_backend(conf, env) as backend:
            if req.command == "STATUS":
                await status(backend)
                return None
            if req.command == "GC":
                return None
            workload = resolve_workload(req, invocation.nodename(conf))
            if req.command == "ADD":
                return (await add(req, backend, workload)).to_json(req.version)
            if req.command == "DEL":
                await delete(req, backend, workload)
                return None
            await check(req, backend, workload)
            return None
    except (CalicoError, TimeoutError) as exc:
        raise invocation.to_cni_error(exc) from None


def main() -> NoReturn:
    """Console script ``calico-ipam``."""
    invocation.main(handle)
