"""Status reporting: per-endpoint status files for the CNI plugin, and status keys in the datastore.

How it works::

    Pipeline (after each settled apply) ──update(statuses)──► EndpointStatusFiles   <prefix>/endpoint-status/<file>
                                                     └─────► DatastoreStatusReporter (queued, written in batches)

    /calico/felix/v2/<region>/host/<host>/status                      {"time", "uptime", "first_update"}, TTL'd
    /calico/felix/v2/<region>/host/<host>/last_reported_status        the same, no TTL
    /calico/felix/v2/<region>/host/<host>/workload/<orch>/<wl>/endpoint/<ep>   {"status": "up"}
    /calico/felix/v1/host/<host>/endpoint/<hep>                                 {"status": "up"}

Key layout, values, escaping (``%`` → ``%25``, ``/`` → ``%2f``) and the region
segment (``no-region`` or ``openstack-region-<region>``) are Calico's
(``libcalico-go/lib/backend/model``). Endpoint keys are written only with
``EndpointReportingEnabled``, in batches every ``EndpointReportingDelaySecs``,
and reconciled against the datastore every ``ReportingIntervalSecs`` (stale
keys of this host are deleted). A status file exists exactly while its
endpoint is programmed ("up"); its name is the workload endpoint id, each
part percent-escaped and joined by spaces (as the CNI plugin expects,
``services/cni/workload.py``), and it holds ``{"status": "up", ...}`` as JSON.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from libcalico.datastore.backend import Backend
from libcalico.datastore.keys import FELIX_ROOT
from libcalico.errors import DatastoreError, NotFound
from services.felix.messages import WorkloadEndpointID
from services.felix.pipeline import EndpointStatus

log = structlog.get_logger("felix.status")


def escape_name(name: str) -> str:
    """Calico's key-segment escaping: ``%`` and ``/``."""
    return name.replace("%", "%25").replace("/", "%2f")


def status_filename(wid: WorkloadEndpointID) -> str:
    """The status file of a workload endpoint: its id's parts, percent-escaped, joined by spaces."""
    return " ".join(urllib.parse.quote(p, safe="") for p in (wid.orchestrator, wid.workload, wid.endpoint))


def host_prefix(region: str, hostname: str) -> str:
    """Where this host's status keys live."""
    return f"{FELIX_ROOT}{region}/host/{hostname}/"


def workload_status_key(region: str, hostname: str, wid: WorkloadEndpointID) -> str:
    """Calico's WorkloadEndpointStatusKey path."""
    return (f"{host_prefix(region, hostname)}workload/{escape_name(wid.orchestrator)}/"
            f"{escape_name(wid.workload)}/endpoint/{escape_name(wid.endpoint)}")


def host_endpoint_status_key(hostname: str, endpoint: str) -> str:
    """Calico's HostEndpointStatusKey path."""
    return f"/calico/felix/v1/host/{hostname}/endpoint/{escape_name(endpoint)}"


def _rfc3339(now: datetime.datetime) -> str:
    return now.astimezone(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class EndpointStatusFiles:
    """Keeps ``<directory>/<status file>`` present exactly for the workload endpoints that are up."""

    blocking = True  # file I/O: the pipeline calls update() in a worker thread

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory)
        self._written: set[str] | None = None  # None until the first update (then: read the directory)
        self.errors = 0

    def update(self, statuses: Mapping[str, EndpointStatus]) -> None:
        """Write the files of endpoints that are up, delete the others (and leftovers of earlier runs)."""
        wanted: dict[str, EndpointStatus] = {}
        for st in statuses.values():
            if st.workload_id is not None and st.status == "up":
                wanted[status_filename(st.workload_id)] = st
        try:
            if self._written is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._written = {p.name for p in self.directory.iterdir() if not p.name.startswith(".")}
            for name in sorted(self._written - set(wanted)):
                (self.directory / name).unlink(missing_ok=True)
                self._written.discard(name)
            for name, st in wanted.items():
                if name not in self._written:
                    self._write(name, st)
                    self._written.add(name)
        except OSError as exc:
            self.errors += 1
            self._written = None  # re-read the directory next time
            log.warning("endpoint status file write failed", directory=str(self.directory), error=str(exc))

    def _write(self, name: str, st: EndpointStatus) -> None:
        wep = st.workload
        doc: dict[str, Any] = {"status": st.status}
        if wep is not None:
            doc.update(ifaceName=wep.name, ipv4Nets=list(wep.ipv4_nets), ipv6Nets=list(wep.ipv6_nets))
        tmp = self.directory / f".{name}.tmp"
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.directory / name)


class DatastoreStatusReporter:
    """Felix's own status key (TTL'd) and, when enabled, the endpoint status keys of this host."""

    def __init__(self, backend: Backend, hostname: str, region: str, *, interval: float, ttl: float,
                 endpoints_enabled: bool, endpoint_delay: float) -> None:
        self.backend = backend
        self.hostname = hostname
        self.region = region
        self.interval = interval
        self.ttl = ttl
        self.endpoints_enabled = endpoints_enabled
        self.endpoint_delay = max(endpoint_delay, 0.01)
        self.started = time.monotonic()
        self.first_update = True
        self._desired: dict[str, dict[str, str]] = {}
        self._written: dict[str, dict[str, str]] = {}
        self._dirty: set[str] = set()
        self._resync_due = True
        self._wake = asyncio.Event()
        self.writes = 0
        self.failures = 0

    # Input --------------------------------------------------------------------------
    def update(self, statuses: Mapping[str, EndpointStatus]) -> None:
        """The complete current endpoint statuses (queued; written by :meth:`run`)."""
        if not self.endpoints_enabled:
            return
        desired: dict[str, dict[str, str]] = {}
        for st in statuses.values():
            if st.workload_id is not None:
                desired[workload_status_key(self.region, self.hostname, st.workload_id)] = {"status": st.status}
            elif st.host_id is not None:
                desired[host_endpoint_status_key(self.hostname, st.host_id)] = {"status": st.status}
        changed = {k for k in set(desired) | set(self._desired) if desired.get(k) != self._desired.get(k)}
        self._desired = desired
        self._dirty |= changed
        if changed:
            self._wake.set()

    # Task ---------------------------------------------------------------------------
    async def run(self, ready: asyncio.Event) -> None:
        """Report until cancelled; starts once ``ready`` is set (the first apply after in-sync)."""
        if self.interval <= 0 and not self.endpoints_enabled:
            return
        await ready.wait()
        log.info("status reporting started", region=self.region, interval=self.interval,
                 endpoints=self.endpoints_enabled)
        next_report = time.monotonic()
        next_resync = time.monotonic()
        for _ in iter(int, 1):  # until cancelled
            now = time.monotonic()
            if self.interval > 0 and now >= next_report:
                await self.report_status()
                next_report = now + self.interval
            if self.endpoints_enabled:
                if now >= next_resync:
                    await self.resync()
                    next_resync = now + (self.interval if self.interval > 0 else 30.0)
                await self.flush()
            deadlines = [next_report if self.interval > 0 else float("inf")]
            if self.endpoints_enabled:
                deadlines.append(next_resync)
            timeout = max(0.0, min(deadlines) - time.monotonic())
            self._wake.clear()
            try:
                async with asyncio.timeout(min(timeout, 3600.0)):
                    await self._wake.wait()
                await asyncio.sleep(self.endpoint_delay)  # batch the writes of one burst
            except TimeoutError:
                pass

    async def report_status(self) -> None:
        """Write ``status`` (TTL'd) and ``last_reported_status``."""
        value = {"time": _rfc3339(datetime.datetime.now(datetime.UTC)),
                 "uptime": round(time.monotonic() - self.started, 3), "first_update": self.first_update}
        prefix = host_prefix(self.region, self.hostname)
        try:
            await self.backend.apply(prefix + "status", value, ttl=self.ttl if self.ttl > 0 else None)
            await self.backend.apply(prefix + "last_reported_status", value)
        except DatastoreError as exc:
            self.failures += 1
            log.warning("status report failed", error=str(exc))
            return
        self.first_update = False

    async def resync(self) -> None:
        """Compare this host's endpoint keys in the datastore with the desired ones; mark differences dirty."""
        found: dict[str, dict[str, Any]] = {}
        try:
            for prefix in (host_prefix(self.region, self.hostname) + "workload/",
                           f"/calico/felix/v1/host/{self.hostname}/endpoint/"):
                for kv in (await self.backend.list(prefix)).items:
                    found[kv.key] = kv.value
        except DatastoreError as exc:
            self.failures += 1
            log.warning("endpoint status resync failed", error=str(exc))
            return
        self._written = {k: {"status": str(v.get("status", ""))} for k, v in found.items()}
        self._dirty |= {k for k in set(found) | set(self._desired) if found.get(k) != self._desired.get(k)}

    async def flush(self) -> None:
        """Write (or delete) every dirty endpoint key; failures stay dirty for the next round."""
        for key in sorted(self._dirty):
            want = self._desired.get(key)
            try:
                if want is None:
                    try:
                        await self.backend.delete(key)
                    except NotFound:
                        pass
                    self._written.pop(key, None)
                elif self._written.get(key) != want:
                    await self.backend.apply(key, want)
                    self._written[key] = want
                self.writes += 1
            except DatastoreError as exc:
                self.failures += 1
                log.warning("endpoint status write failed", key=key, error=str(exc))
                continue
            self._dirty.discard(key)
