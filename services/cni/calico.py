"""The ``calico`` CNI plugin: a pod's veth, addresses, routes and WorkloadEndpoint.

ADD::

    addresses   calico-ipam in-process (ipam.type "calico-ipam"), else the named IPAM plugin from CNI_PATH
    interface   host veth cali<11 hex> + eth0 in the pod (see dataplane)
    endpoint    WorkloadEndpoint <node>-k8s-<pod>-<iface> (or <node>-cni-<containerID>-<iface>)
    wait        for Felix's status file, when policy_setup_timeout_seconds > 0

A failure undoes the steps already taken (endpoint, interface, addresses) and
reports the spec's error. DEL removes the endpoint (only if it still belongs to
this container), the pod interface (only if the namespace still exists) and
releases the handle's addresses; every part is skipped quietly when already
gone. CHECK compares prevResult with the interfaces, addresses, routes, IPAM
and the endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any, NoReturn

import structlog

from libcalico.datastore.backend import Backend
from libcalico.datastore.client import Client
from libcalico.errors import CalicoError, NotFound
from libcalico.resources import WorkloadEndpoint
from services.cni import dataplane, endpoint, invocation
from services.cni import ipam as calico_ipam
from services.cni.delegate import delegate
from services.cni.errors import CHECK_FAILED, INVALID_NETWORK_CONFIG, UNKNOWN_CONTAINER, CniError
from services.cni.netconf import DEFAULT_MTU_FILE
from services.cni.request import CniRequest
from services.cni.result import Interface, Result
from services.cni.workload import GATEWAY_V4, GATEWAY_V6, Workload, resolve_workload

log = structlog.get_logger("calico")

IN_PROCESS_IPAM = "calico-ipam"
DEFAULT_MTU = 1500


def _mtu(configured: int) -> int:
    if configured:
        return configured
    with contextlib.suppress(OSError, ValueError):
        with open(DEFAULT_MTU_FILE, encoding="ascii") as fh:
            return int(fh.read().strip())
    return DEFAULT_MTU


async def _ipam(req: CniRequest, env: Mapping[str, str], backend: Backend, workload: Workload,
                command: str) -> Result | None:
    conf = req.netconf
    if conf.ipam is None:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid network config", "ipam: field is required")
    if conf.ipam.type == IN_PROCESS_IPAM:
        if command == "ADD":
            return await calico_ipam.add(req, backend, workload)
        if command == "DEL":
            await calico_ipam.delete(req, backend, workload)
        else:
            await calico_ipam.check(req, backend, workload)
        return None
    doc = await delegate(req, env, command)
    return Result.from_json(doc) if command == "ADD" and doc is not None else None


async def add(req: CniRequest, env: Mapping[str, str], backend: Backend, workload: Workload) -> Result:
    """Wire the pod up; undo everything on failure."""
    conf = req.netconf
    got = await _ipam(req, env, backend, workload, "ADD")
    assert got is not None
    addresses = got.addresses()
    if not addresses:
        raise CniError(INVALID_NETWORK_CONFIG, "IPAM returned no addresses", "the IPAM plugin's result has no ips")
    client = Client(backend)
    wired = False
    try:
        allow_fwd = bool(conf.container_settings and conf.container_settings.allow_ip_forwarding)
        wiring = await dataplane.setup(req.netns, req.ifname, workload.host_veth, addresses, _mtu(conf.mtu), allow_fwd)
        wired = True
        await endpoint.write_endpoint(client, workload.endpoint_doc(addresses, wiring.container_mac))
    except BaseException:
        await asyncio.shield(_undo(req, env, backend, workload, wired))
        raise
    if conf.policy_setup_timeout_seconds > 0:
        await endpoint.wait_for_status(conf.endpoint_status_dir, workload, conf.policy_setup_timeout_seconds)
    result = Result(dns=dict(conf.dns or got.dns))
    result.interfaces = [Interface(wiring.host_veth, wiring.host_mac),
                         Interface(req.ifname, wiring.container_mac, req.netns)]
    result.ips = [(f"{a.ip}/{a.max_prefixlen}", 1, None) for a in addresses]
    if any(a.version == 4 for a in addresses):
        result.routes.append(("0.0.0.0/0", GATEWAY_V4))
    if any(a.version == 6 for a in addresses):
        result.routes.append(("::/0", GATEWAY_V6))
    log.info("cni_added", endpoint=workload.wep_name, veth=workload.host_veth,
             addresses=[str(a) for a in addresses])
    return result


async def _undo(req: CniRequest, env: Mapping[str, str], backend: Backend, workload: Workload, wired: bool) -> None:
    with contextlib.suppress(CniError, CalicoError, OSError):
        if wired:
            await dataplane.teardown(req.netns, req.ifname)
    with contextlib.suppress(CniError, CalicoError, OSError):
        await _ipam(req, env, backend, workload, "DEL")


async def delete(req: CniRequest, env: Mapping[str, str], backend: Backend, workload: Workload) -> None:
    """Remove the endpoint, the interface and the addresses; missing parts are not errors."""
    await endpoint.delete_endpoint(Client(backend), workload)
    await dataplane.teardown(req.netns, req.ifname)
    await _ipam(req, env, backend, workload, "DEL")
    log.info("cni_deleted", endpoint=workload.wep_name, container=workload.container_id)


async def check(req: CniRequest, env: Mapping[str, str], backend: Backend, workload: Workload) -> None:
    """Raise CniError unless the pod is still wired as ``prevResult`` says."""
    conf = req.netconf
    if conf.prevResult is None:
        raise CniError(INVALID_NETWORK_CONFIG, "invalid network config", "prevResult: required for CHECK")
    expected = [f"{a.ip}/{a.max_prefixlen}" for a in Result.from_json(conf.prevResult).addresses()]
    seen = await dataplane.observe(req.netns, req.ifname, workload.host_veth)
    if not seen.netns_exists:
        raise CniError(UNKNOWN_CONTAINER, "container network namespace does not exist", req.netns)
    problems = []
    if not seen.container_link_up:
        problems.append(f"{req.ifname} is missing or down in {req.netns}")
    if not seen.host_link_up:
        problems.append(f"host interface {workload.host_veth} is missing or down")
    problems += [f"{a} is not on {req.ifname}" for a in expected if a not in seen.container_addresses]
    problems += [f"no host route for {a} via {workload.host_veth}" for a in expected if a not in seen.host_routes]
    if any(":" not in a for a in expected) and GATEWAY_V4 not in seen.default_gateways:
        problems.append(f"no default route via {GATEWAY_V4} on {req.ifname}")
    try:
        wep = await Client(backend).get(WorkloadEndpoint, workload.wep_name, workload.namespace)
        nets = set(wep.spec.ipNetworks or [])  # type: ignore[attr-defined]
        problems += [f"WorkloadEndpoint {workload.wep_name} lacks {a}" for a in expected if a not in nets]
    except NotFound:
        problems.append(f"WorkloadEndpoint {workload.namespace}/{workload.wep_name} does not exist")
    if problems:
        raise CniError(CHECK_FAILED, "CHECK failed", "; ".join(problems))
    await _ipam(req, env, backend, workload, "CHECK")


async def handle(req: CniRequest, env: Mapping[str, str]) -> dict[str, Any] | None:
    """Dispatch one calico request."""
    conf = req.netconf
    try:
        async with invocation.open_backend(conf, env) as backend:
            if req.command == "STATUS":
                await calico_ipam.status(backend)
                return None
            if req.command == "GC":
                return None
            workload = resolve_workload(req, invocation.nodename(conf))
            if req.command == "ADD":
                return (await add(req, env, backend, workload)).to_json(req.version)
            if req.command == "DEL":
                await delete(req, env, backend, workload)
                return None
            await check(req, env, backend, workload)
            return None
    except (CalicoError, TimeoutError) as exc:
        raise invocation.to_cni_error(exc) from None


def main() -> NoReturn:
    """Console script ``calico``."""
    invocation.main(handle)
