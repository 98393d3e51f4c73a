"""Fast acceptance of common resources: never more lenient than the resource models.

How it works::

    accepts(kind, value) ──True──► valid: the kind's pydantic model accepts ``value``
            │ False: "not sure" (a field or form it does not know, or invalid)
            ▼
    parse_resource(value)   (the full model: ~250 µs for a WorkloadEndpoint here)

A snapshot of 10,000 WorkloadEndpoints and 1,000 policies would spend seconds
in the full models (pydantic with Python field and model validators). Most
resources have one plain form; :func:`accepts` checks exactly that form in a
few µs, restating the models' rules with equal or stricter ones (``fullmatch``
as the models, ASCII digits only) and memoising what repeats (label keys and
values, node, profile and tier names, selectors, networks). Anything outside
the form answers False and goes through the full model, so a caller that
falls back to the model always gets the model's answer. Kinds covered:
WorkloadEndpoint here; NetworkPolicy, GlobalNetworkPolicy and Profile in
:mod:`.fastpolicy`; NetworkSet, GlobalNetworkSet, Tier, IPPool, Node,
HostEndpoint and ClusterInformation in :mod:`.fastkinds`; FelixConfiguration in
:mod:`.fastconfig`. ``value`` is JSON data (dicts, lists, str, int, float, bool,
None) as a JSON decoder returns it.

Guard against drift: :func:`model_fingerprint` hashes the source text of the
model modules these rules restate (read from disk; the models are not
imported). When it differs from :data:`MODEL_FINGERPRINT` (a model changed
since this module was checked against it) the fast path turns itself off with
one warning, and ``tests/unit/test_syncer_fastpath*.py`` fail until someone
reviews this module, :mod:`.fastpolicy`, :mod:`.fastkinds`, :mod:`.fastconfig` and
:mod:`.fastview` (and runs their differential tests against the models) and
records the new fingerprint.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

import libcalico

log = structlog.get_logger(__name__)

MODEL_FINGERPRINT = "4072ff0266bb4cb3b4c8a716933666279e6e74f9f3676a2c78ad5ed5b01c136a"

# The model modules whose rules are restated here and in fastpolicy, fastkinds, fastconfig and fastview
# (libcalico/resources/<name>.py).
MODEL_MODULES = ("base", "fields", "endpoint", "networkset", "rules", "policy", "profile", "ippool", "node",
                 "felixconfig", "cluster")

V3 = "projectcalico.org/v3"
MEMO_LIMIT = 1 << 16

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*", re.ASCII)
_DNS_LABEL_RE = re.compile(_LABEL, re.ASCII)
_QUALIFIED_RE = re.compile(r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", re.ASCII)
_LABEL_VALUE_RE = re.compile(r"(?:(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", re.ASCII)
_PORT_NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", re.ASCII)
_LETTER_RE = re.compile(r"[a-z]", re.ASCII)
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4_HOST_RE = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}(?:/32)?", re.ASCII)
_CONTAINER_ID_RE = re.compile(r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?", re.ASCII)
_INTERFACE_RE = re.compile(r"[a-zA-Z0-9_.-]{1,15}", re.ASCII)
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}", re.ASCII)

ANNOTATION_LIMIT = 256 * 1024  # fields.KindBase.ANNOTATION_LIMIT


# ---------------------------------------------------------------- string rules, as the models state them


def subdomain(text: str) -> bool:
    """A DNS-1123 subdomain (base.check_dns1123_subdomain, fields.check_subdomain)."""
    return 0 < len(text) <= 253 and _SUBDOMAIN_RE.fullmatch(text) is not None


def dns_label(text: str) -> bool:
    """A DNS-1123 label of at most 63 characters (ObjectMeta's namespace, fields.check_label_name)."""
    return 0 < len(text) <= 63 and _DNS_LABEL_RE.fullmatch(text) is not None


def qualified_name(key: str) -> bool:
    """A Kubernetes qualified name, ``[prefix/]name`` (fields.qualified_name_problem is None)."""
    prefix, slash, name = key.rpartition("/")
    if slash and not (prefix and len(prefix) <= 253 and _SUBDOMAIN_RE.fullmatch(prefix) is not None):
        return False
    return 0 < len(name) <= 63 and _QUALIFIED_RE.fullmatch(name) is not None


def label_value(value: str) -> bool:
    """A label value (fields.label_value_problem is None)."""
    return len(value) <= 63 and _LABEL_VALUE_RE.fullmatch(value) is not None


def port_name(name: str) -> bool:
    """A Kubernetes port name (fields.port_name_problem is None)."""
    return (len(name) <= 15 and _PORT_NAME_RE.fullmatch(name) is not None and "--" not in name
            and _LETTER_RE.search(name) is not None)


def cidr_version(text: str) -> int:
    """The IP version of a CIDR or IP (fields.parse_cidr_or_ip), 0 when it is not one."""
    if not text:
        return 0
    try:
        return ipaddress.ip_network(text, strict=False).version
    except ValueError:
        return 0


def net_version(text: str) -> int:
    """The IP version of a masked network or IP (fields._net), 0 when it is not one."""
    if not text:
        return 0
    try:
        net = ipaddress.ip_network(text, strict=False)
        if ipaddress.ip_address(text.split("/", 1)[0]) != net.network_address:
            return 0
    except ValueError:
        return 0
    return net.version


class Memo:
    """A bounded set of strings one check found valid (``ok`` for fast membership tests)."""

    __slots__ = ("check", "ok")

    def __init__(self, check: Callable[[str], bool]) -> None:
        self.check = check
        self.ok: set[str] = set()

    def __call__(self, text: str) -> bool:
        if text in self.ok:
            return True
        if not self.check(text):
            return False
        if len(self.ok) >= MEMO_LIMIT:
            self.ok.clear()
        self.ok.add(text)
        return True


class Versions:
    """A bounded map of network strings to their IP version (0: not valid)."""

    __slots__ = ("check", "known")

    def __init__(self, check: Callable[[str], int]) -> None:
        self.check = check
        self.known: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        version = self.known.get(text)
        if version is None:
            version = self.check(text)
            if len(self.known) >= MEMO_LIMIT:
                self.known.clear()
            self.known[text] = version
        return version


NAMES = Memo(subdomain)
NAMESPACES = Memo(dns_label)
LABEL_KEYS = Memo(qualified_name)
LABEL_VALUES = Memo(label_value)
ANNOTATION_KEYS = Memo(lambda key: qualified_name(key.lower()))
PORT_NAMES = Memo(port_name)
CIDRS = Versions(cidr_version)
NETS = Versions(net_version)


def labels_ok(labels: Any) -> bool:
    """``dict[str, str]`` of valid label keys and values (KindBase, ProfileSpec.labelsToApply)."""
    if labels.__class__ is not dict:
        return False
    if LABEL_KEYS.ok.issuperset(labels) and LABEL_VALUES.ok.issuperset(labels.values()):
        return True  # every key and value already seen valid (the sets hold only valid strings)
    for key, value in labels.items():
        if key.__class__ is not str or value.__class__ is not str or not LABEL_KEYS(key) or not LABEL_VALUES(value):
            return False
    return True


def _annotations_ok(annotations: Any) -> bool:
    if annotations.__class__ is not dict:
        return False
    size = 0
    for key, value in annotations.items():
        if key.__class__ is not str or value.__class__ is not str or not ANNOTATION_KEYS(key):
            return False
        size += len(key) + len(value)
    return size <= ANNOTATION_LIMIT


_META_FIELDS = frozenset({"name", "namespace", "labels", "annotations", "generateName", "resourceVersion", "uid",
                          "creationTimestamp", "deletionTimestamp"})
_META_TEXT = frozenset({"generateName", "resourceVersion", "uid", "creationTimestamp", "deletionTimestamp"})


def metadata_ok(meta: Any, namespaced: bool, name_ok: Callable[[str], bool]) -> bool:
    """ObjectMeta of the plain form (Resource, ObjectMeta, KindBase checks); ``name_ok`` is the kind's name rule."""
    if meta.__class__ is not dict:
        return False
    name = meta.get("name")
    if name.__class__ is not str or not name_ok(name):
        return False
    present = 1
    namespace = meta.get("namespace")
    if namespace is not None:
        if not namespaced or namespace.__class__ is not str or (
                namespace not in NAMESPACES.ok and not NAMESPACES(namespace)):
            return False
        present += 1
    labels = meta.get("labels")
    if labels is not None:
        if not labels_ok(labels):
            return False
        present += 1
    annotations = meta.get("annotations")
    if annotations is not None:
        if not _annotations_ok(annotations):
            return False
        present += 1
    if len(meta) != present:  # other fields, or nulls: only the optional text fields are understood
        for field, value in meta.items():
            if field not in _META_FIELDS or (field in _META_TEXT and value is not None and value.__class__ is not str):
                return False
    return True


# ---------------------------------------------------------------- WorkloadEndpoint

_WEP_SPEC = frozenset({"orchestrator", "workload", "node", "containerID", "pod", "endpoint", "serviceAccountName",
                       "ipNetworks", "profiles", "interfaceName", "mac", "ports"})
_TEXT = frozenset({str, type(None)})
_PORT_PROTOCOL_NAMES = frozenset({"TCP", "UDP", "SCTP", "6", "17", "132"})
_PORT_PROTOCOL_NUMBERS = frozenset({6, 17, 132})
_WEP_PORT = frozenset({"name", "protocol", "port", "hostPort", "hostIP"})


_name_match = _SUBDOMAIN_RE.fullmatch
_iface_match = _INTERFACE_RE.fullmatch
_ipv4_match = _IPV4_HOST_RE.fullmatch
# (name, protocol, port) of single named ports found valid; for lists of several, a tuple of those.
_PORTS_OK: set[Any] = set()


def _wep(value: dict[str, Any]) -> bool:
    return _wep_fields(value) is not None


# What workload_endpoint_fields gives: metadata name, namespace and labels (None when left out), then
# spec.node, orchestrator, pod, workload, endpoint, serviceAccountName, interfaceName, mac (each a str or
# None), ipNetworks (a list of str or None), whether every one of them is a canonical IPv4 address with or
# without "/32", profiles (a list of str or None) and ports (as stored, or None).
WorkloadFields = tuple[Any, ...]


def _wep_fields(value: dict[str, Any]) -> WorkloadFields | None:
    if len(value) != 4 or value.get("kind") != "WorkloadEndpoint" or value.get("apiVersion") != V3:
        return None  # len 4: apiVersion, kind, metadata and spec (required), nothing else
    meta, spec = value.get("metadata"), value.get("spec")
    if meta.__class__ is not dict or spec.__class__ is not dict:
        return None
    name, namespace, labels = meta.get("name"), meta.get("namespace"), meta.get("labels")
    if not (len(meta) == 3 and name.__class__ is str and 0 < len(name) <= 253 and _name_match(name) is not None
            and namespace in NAMESPACES.ok and labels.__class__ is dict
            and LABEL_KEYS.ok.issuperset(labels) and LABEL_VALUES.ok.issuperset(labels.values())):
        # Not the usual name, namespace and labels (all seen valid before): the whole check.
        if not metadata_ok(meta, True, subdomain):
            return None
    if not spec.keys() <= _WEP_SPEC:
        return None
    node = spec.get("node")
    if node not in NAMES.ok and node is not None and (node.__class__ is not str or not NAMES(node)):
        return None
    orchestrator, pod, endpoint = spec.get("orchestrator"), spec.get("pod"), spec.get("endpoint")
    service_account, workload = spec.get("serviceAccountName"), spec.get("workload")
    if not ((orchestrator.__class__ is str or orchestrator is None) and (pod.__class__ is str or pod is None)
            and (endpoint.__class__ is str or endpoint is None) and (workload.__class__ is str or workload is None)
            and (service_account.__class__ is str or service_account is None)):
        return None
    iface = spec.get("interfaceName")
    if iface is not None and (iface.__class__ is not str or _iface_match(iface) is None):
        return None
    nets = spec.get("ipNetworks")
    plain_v4 = True
    if nets is not None:
        if nets.__class__ is not list:
            return None
        for net in nets:
            if net.__class__ is not str:
                return None
            if _ipv4_match(net) is None:
                if not _single_address(net):
                    return None
                plain_v4 = False
    profiles = spec.get("profiles")
    if profiles is not None and (profiles.__class__ is not list or (
            not NAMES.ok.issuperset(profiles) and not _names(profiles))):
        return None
    cid = spec.get("containerID")
    if cid is not None and (cid.__class__ is not str or (
            not (cid.isascii() and cid.isalnum()) and _CONTAINER_ID_RE.fullmatch(cid) is None)):
        return None
    mac = spec.get("mac")
    if mac is not None and (mac.__class__ is not str or _MAC_RE.fullmatch(mac) is None):
        return None
    ports = spec.get("ports")
    fields = (name, namespace, labels, node, orchestrator, pod, workload, endpoint, service_account, iface, mac,
              nets, plain_v4, profiles, ports)
    if ports is None:
        return fields
    if ports.__class__ is list and len(ports) == 1:
        port = ports[0]
        if port.__class__ is dict and len(port) == 3:
            port_name, protocol, number = port.get("name"), port.get("protocol"), port.get("port")
            if (port_name.__class__ is str and protocol.__class__ is str and number.__class__ is int
                    and (port_name, protocol, number) in _PORTS_OK):
                return fields  # the usual single named port, seen valid before (exact types: no 1 == True)
    elif ports.__class__ is list and 1 < len(ports) <= _PORTS_KEY_LIMIT:
        key = _ports_key(ports)
        if key is not None and key in _PORTS_OK:
            return fields  # a list of named ports seen valid before (two: ~1.5 µs less than checking it again)
    return fields if _wep_ports(ports) else None


_PORTS_KEY_LIMIT = 8


def _ports_key(ports: list[Any]) -> tuple[tuple[str, str, int], ...] | None:
    """``(name, protocol, port)`` of each entry when every one is exactly that (exact types), else None."""
    key = []
    for port in ports:
        if port.__class__ is not dict or len(port) != 3:
            return None
        name, protocol, number = port.get("name"), port.get("protocol"), port.get("port")
        if name.__class__ is not str or protocol.__class__ is not str or number.__class__ is not int:
            return None
        key.append((name, protocol, number))
    return tuple(key)


def _names(names: list[Any]) -> bool:
    for name in names:
        if name.__class__ is not str or not NAMES(name):
            return False
    return True


def _single_address(text: str) -> bool:
    # WorkloadEndpointSpec: a CIDR (fields._cidr) holding one address.
    if not text:
        return False
    try:
        return ipaddress.ip_network(text, strict=False).num_addresses == 1
    except ValueError:
        return False


def _wep_ports(ports: Any) -> bool:
    if ports.__class__ is not list:
        return False
    names: list[str] = []
    for port in ports:
        if port.__class__ is not dict or not port.keys() <= _WEP_PORT:
            return False
        protocol = port.get("protocol")
        if not ((protocol.__class__ is str and protocol in _PORT_PROTOCOL_NAMES)
                or (protocol.__class__ is int and protocol in _PORT_PROTOCOL_NUMBERS)):
            return False
        number = port.get("port")
        if number.__class__ is not int or not 0 < number < 65536:
            return False
        host_port = port.get("hostPort")
        if host_port is not None and (host_port.__class__ is not int or not 0 < host_port < 65536):
            return False
        host_ip = port.get("hostIP")
        if host_ip is not None and (host_ip.__class__ is not str or not _ip_address(host_ip)):
            return False
        name = port.get("name")
        if name is not None and name.__class__ is not str:
            return False
        if name:
            if name in names or (name not in PORT_NAMES.ok and not PORT_NAMES(name)):
                return False
            names.append(name)
        elif host_port is None:
            return False  # an unnamed port needs a hostPort (and hostPort 0 is out of range above)
    if len(ports) == 1 and len(ports[0]) == 3 and names and ports[0]["protocol"].__class__ is str:
        if len(_PORTS_OK) >= MEMO_LIMIT:  # remember the usual single named port (checked above: exact types)
            _PORTS_OK.clear()
        _PORTS_OK.add((names[0], ports[0]["protocol"], ports[0]["port"]))
    elif 1 < len(ports) <= _PORTS_KEY_LIMIT:
        key = _ports_key(ports)
        if key is not None:  # a list of named ports (each exactly name, protocol and port): remember it whole
            if len(_PORTS_OK) >= MEMO_LIMIT:
                _PORTS_OK.clear()
            _PORTS_OK.add(key)
    return True


def _ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- the guard and the entry point


def model_fingerprint() -> str:
    """A hash of the source text of the model modules whose rules this module and fastpolicy restate."""
    root = Path(libcalico.__file__).resolve().parent / "resources"
    digest = hashlib.sha256()
    for name in MODEL_MODULES:
        digest.update(name.encode() + b"\0")
        digest.update((root / f"{name}.py").read_bytes())
    return digest.hexdigest()


_CHECKS: dict[str, Callable[[dict[str, Any]], bool]] = {}
_enabled: bool | None = None


def enabled() -> bool:
    """Whether the fast path is on: the models are the ones it was checked against."""
    global _enabled
    if _enabled is None:
        try:
            found = model_fingerprint()
        except OSError as exc:  # no source to read (a zip or bytecode-only install)
            found = f"unavailable ({type(exc).__name__}: {exc})"
        _enabled = found == MODEL_FINGERPRINT
        if _enabled:
            from libcalico.syncer import fastconfig, fastkinds, fastpolicy

            _CHECKS.update({
                "WorkloadEndpoint": _wep,
                **fastpolicy.CHECKS,
                **fastkinds.CHECKS,
                **fastconfig.CHECKS,
            })
        else:
            log.warning("syncer fast validation disabled", reason="resource models changed",
                        expected=MODEL_FINGERPRINT, found=found,
                        review="libcalico/syncer/fast*.py")
    return _enabled


def accepts(kind: str, value: dict[str, Any]) -> bool:
    """True only if ``parse_resource(value)`` would succeed and give a ``kind``; False means "not sure: ask the model".

    Covers NetworkPolicy, GlobalNetworkPolicy, Profile, NetworkSet, GlobalNetworkSet,
    WorkloadEndpoint, Tier, IPPool, Node, HostEndpoint, ClusterInformation and FelixConfiguration
    (any other kind: False). ``value`` is JSON data as a decoder returns it;
    it is not changed. The key (name and namespace against the datastore path) is the caller's to check.
    """
    if not (_enabled or enabled()):
        return False
    check = _CHECKS.get(kind)
    if check is None or value.__class__ is not dict:
        return False
    try:
        return check(value)
    except TypeError:  # an unhashable value where a string belongs: not the plain form
        return False


def workload_endpoint_fields(value: Any) -> WorkloadFields | None:
    """The fields of a WorkloadEndpoint map (see :data:`WorkloadFields`), read while checking it as
    :func:`accepts` does: None unless the model certainly accepts it (a reader that needs them gets them
    without a second pass over the map)."""
    if not (_enabled or enabled()) or value.__class__ is not dict:
        return None
    try:
        return _wep_fields(value)
    except TypeError:  # an unhashable value where a string belongs: not the plain form
        return None


def accepts_workload_endpoint(value: dict[str, Any]) -> bool:
    """True only if the WorkloadEndpoint model accepts ``value``; False means "not sure": ask the model."""
    return accepts("WorkloadEndpoint", value)


def fast_kinds() -> frozenset[str]:
    """The kinds :func:`accepts` can say True for (none while the fast path is off)."""
    return frozenset(_CHECKS) if enabled() else frozenset()
