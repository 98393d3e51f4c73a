"""A fast path for validating common WorkloadEndpoints: never more lenient than the model.

How it works::

    value ──► accepts_workload_endpoint(value) ──True──► valid (the model would accept it)
                          │ False: "not sure"
                          ▼
                 parse_resource(value)  (the full pydantic model, ~250 µs here)

A snapshot of 100,000 WorkloadEndpoints would spend ~25 s in the full model
(pydantic with Python field and model validators). Most endpoints have one
plain form: known fields only, names and labels, IPv4 /32 networks, a MAC, an
interface name, TCP/UDP/SCTP ports. This module checks exactly that form, in a
few µs, reusing the model's own label and port-name checks (memoised: label
keys and values, node and profile names repeat across endpoints) and, for the
rest, rules equal to the model's or stricter (``fullmatch`` as the model, ASCII
digits only). Anything
outside that form answers False and goes through the full model, so the result
is always the model's answer.

Guards against drift: :func:`model_fingerprint` hashes the source of every
model, validator and pattern the rules below restate. When it differs from
:data:`MODEL_FINGERPRINT` (the model changed since this module was checked
against it) the fast path turns itself off with one warning, and
``tests/unit/test_syncer_fastpath.py`` fails until someone reviews this module
(and its property test against the model) and records the new fingerprint.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from typing import Any

import structlog

log = structlog.get_logger(__name__)

MODEL_FINGERPRINT = "ee546e5f6332ad0848cb4f3dba5a6e4e9b67e58d29e3810884a7ecee357b6ee8"

_V3 = "projectcalico.org/v3"
_KIND = "WorkloadEndpoint"
_META_FIELDS = frozenset({"name", "namespace", "generateName", "labels", "annotations",
                          "resourceVersion", "uid", "creationTimestamp"})
_META_TEXT = ("generateName", "resourceVersion", "uid", "creationTimestamp")
_SPEC_FIELDS = frozenset({"orchestrator", "workload", "node", "containerID", "pod", "endpoint",
                          "serviceAccountName", "ipNetworks", "profiles", "interfaceName", "mac", "ports"})
_SPEC_TEXT = ("orchestrator", "workload", "pod", "endpoint", "serviceAccountName")
_PORT_FIELDS = frozenset({"name", "protocol", "port", "hostPort"})
_PORT_PROTOCOLS = frozenset({"TCP", "UDP", "SCTP"})

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_NAMESPACE_RE = re.compile(_LABEL, re.ASCII)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_HOST_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/32)?", re.ASCII)
_CONTAINER_ID_RE = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?", re.ASCII)
_INTERFACE_RE = re.compile(r"[a-zA-Z0-9_.-]{1,15}", re.ASCII)
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}", re.ASCII)
_IFACE_MAC_NET_RE = re.compile(
    rf"{_INTERFACE_RE.pattern}\0{_MAC_RE.pattern}\0{_IPV4_HOST_RE.pattern}", re.ASCII)

_MEMO_LIMIT = 1 << 16


class _Memo:
    """A bounded set of strings already found valid by one check."""

    __slots__ = ("check", "ok")

    def __init__(self, check: Any) -> None:
        self.check = check
        self.ok: set[str] = set()

    def __call__(self, text: str) -> bool:
        if text in self.ok:
            return True
        if not self.check(text):
            return False
        if len(self.ok) >= _MEMO_LIMIT:
            self.ok.clear()
        self.ok.add(text)
        return True


def _subdomain(text: str) -> bool:
    return 0 < len(text) <= 253 and _SUBDOMAIN_RE.fullmatch(text) is not None


class _Rules:
    """The model's own checks the fast path calls, loaded (with the resource models) on first use."""

    def __init__(self) -> None:
        from libcalico.resources.fields import (
            KindBase,
            label_value_problem,
            port_name_problem,
            qualified_name_problem,
        )

        self.label_key = _Memo(lambda k: qualified_name_problem(k) is None)
        self.label_value = _Memo(lambda v: label_value_problem(v) is None)
        self.annotation_key = _Memo(lambda k: qualified_name_problem(k.lower()) is None)
        self.port_name = _Memo(lambda n: port_name_problem(n) is None)
        self.name = _Memo(_subdomain)
        self.annotation_limit: int = KindBase.ANNOTATION_LIMIT


_rules: _Rules | None = None
_enabled: bool | None = None


def model_fingerprint() -> str:
    """A hash of the source of every model part and check whose rules this module restates."""
    from libcalico.resources import base, endpoint, fields, rules

    parts: list[Any] = [
        base.CalicoModel, base.ObjectMeta, base.Resource, base.check_dns1123_subdomain,
        base.parse_resource, fields.SpecModel, fields.KindBase, fields.check_subdomain, fields._name,
        fields.int_range, fields.parse_cidr_or_ip, fields._cidr, fields._mac, fields._protocol,
        fields.protocol_number, endpoint.WorkloadEndpoint, endpoint.WorkloadEndpointSpec,
        endpoint.WorkloadEndpointPort, endpoint._interface, endpoint._container_id,
    ]
    digest = hashlib.sha256()
    for part in parts:
        digest.update(inspect.getsource(part).encode())
    for pattern in (base.DNS1123_SUBDOMAIN_RE, fields._SUBDOMAIN_RE, fields._MAC_RE,
                    endpoint._INTERFACE_RE, endpoint._CONTAINER_ID_RE):
        digest.update(pattern.pattern.encode())
    digest.update(repr(sorted(rules.PORT_PROTOCOLS)).encode())
    return digest.hexdigest()


def enabled() -> bool:
    """Whether the fast path is on: the models are the ones it was checked against."""
    global _enabled, _rules
    if _enabled is None:
        try:
            found = model_fingerprint()
        except (OSError, TypeError, AttributeError) as exc:  # no source to read, or a part renamed
            found = f"unavailable ({type(exc).__name__}: {exc})"
        _enabled = found == MODEL_FINGERPRINT
        if _enabled:
            _rules = _Rules()
        else:
            log.warning("syncer fast validation disabled", reason="resource models changed",
                        expected=MODEL_FINGERPRINT, found=found,
                        review="libcalico/syncer/fastpath.py")
    return _enabled


def accepts_workload_endpoint(value: dict[str, Any]) -> bool:
    """True only if the WorkloadEndpoint model accepts ``value``; False means "not sure": ask the model."""
    if not (_enabled or enabled()):
        return False
    r = _rules
    assert r is not None
    if len(value) != 4 or value.get("apiVersion") != _V3 or value.get("kind") != _KIND:
        return False
    meta, spec = value.get("metadata"), value.get("spec")
    if meta.__class__ is not dict or spec.__class__ is not dict:
        return False
    return _metadata_ok(r, meta) and _spec_ok(r, spec)


def _metadata_ok(r: _Rules, meta: dict[str, Any]) -> bool:
    if not meta.keys() <= _META_FIELDS:
        return False
    name, namespace = meta.get("name"), meta.get("namespace")
    if name.__class__ is not str or not _subdomain(name):
        return False
    if namespace.__class__ is not str or len(namespace) > 63 or _NAMESPACE_RE.fullmatch(namespace) is None:
        return False
    get = meta.get
    for field in _META_TEXT:  # optional strings: absent, null or a string
        v = get(field)
        if v is not None and v.__class__ is not str:
            return False
    labels = get("labels")
    if labels is not None:
        if labels.__class__ is not dict:
            return False
        keys_ok, values_ok = r.label_key.ok, r.label_value.ok
        for k, v in labels.items():
            if v.__class__ is str and k in keys_ok and v in values_ok:  # both seen valid before
                continue
            if k.__class__ is not str or v.__class__ is not str or not r.label_key(k) or not r.label_value(v):
                return False
    annotations = get("annotations")
    if annotations is not None:
        if annotations.__class__ is not dict:
            return False
        size = 0
        keys_ok = r.annotation_key.ok
        for k, v in annotations.items():
            if v.__class__ is not str or k.__class__ is not str or (k not in keys_ok and not r.annotation_key(k)):
                return False
            size += len(k) + len(v)
        if size > r.annotation_limit:
            return False
    return True


def _spec_ok(r: _Rules, spec: dict[str, Any]) -> bool:
    # Every spec field is optional: absent or null is fine, as for the model.
    if not spec.keys() <= _SPEC_FIELDS:
        return False
    get = spec.get
    for field in _SPEC_TEXT:
        v = get(field)
        if v is not None and v.__class__ is not str:
            return False
    node = get("node")
    if node is not None and (node.__class__ is not str or (node not in r.name.ok and not r.name(node))):
        return False
    cid = get("containerID")
    if cid is not None and (cid.__class__ is not str or (
            not (cid.isascii() and cid.isalnum()) and _CONTAINER_ID_RE.fullmatch(cid) is None)):
        return False
    iface, mac, nets = get("interfaceName"), get("mac"), get("ipNetworks")
    if (iface.__class__ is str and mac.__class__ is str and nets.__class__ is list and len(nets) == 1
            and nets[0].__class__ is str):
        # The usual endpoint: one regex for all three (NUL occurs in none of them).
        if _IFACE_MAC_NET_RE.fullmatch(f"{iface}\0{mac}\0{nets[0]}") is None:
            return False
    else:
        if iface is not None and (iface.__class__ is not str or _INTERFACE_RE.fullmatch(iface) is None):
            return False
        if mac is not None and (mac.__class__ is not str or _MAC_RE.fullmatch(mac) is None):
            return False
        if nets is not None:
            if nets.__class__ is not list:
                return False
            for net in nets:
                if net.__class__ is not str or _IPV4_HOST_RE.fullmatch(net) is None:
                    return False
    profiles = get("profiles")
    if profiles is not None:
        if profiles.__class__ is not list:
            return False
        names_ok = r.name.ok
        for profile in profiles:
            if profile.__class__ is not str or (profile not in names_ok and not r.name(profile)):
                return False
    ports = get("ports")
    return ports is None or _ports_ok(r, ports)


def _ports_ok(r: _Rules, ports: Any) -> bool:
    if ports.__class__ is not list:
        return False
    names: set[str] = set()
    for port in ports:
        if port.__class__ is not dict or not port.keys() <= _PORT_FIELDS:
            return False
        protocol = port.get("protocol")
        if protocol.__class__ is not str or protocol not in _PORT_PROTOCOLS:
            return False
        number = port.get("port")
        if number.__class__ is not int or not 1 <= number <= 65535:
            return False
        host_port = port.get("hostPort")
        if host_port is not None and (host_port.__class__ is not int or not 1 <= host_port <= 65535):
            return False
        name = port.get("name")
        if name:
            if name.__class__ is not str or name in names or not r.port_name(name):
                return False
            names.add(name)
        elif host_port is None or (name is not None and name.__class__ is not str):
            return False  # no name needs a hostPort (the model's rule); a non-string falsy name: ask it
    return True
