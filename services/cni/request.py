"""One CNI invocation, from ``CNI_*`` environment variables and stdin to a validated request (no I/O).

Checks run in the order the reference ``skel`` library runs them, each failing
with the spec's code: the command (4), the variables that command needs (4),
the container ID and interface name (4), stdin as JSON (6), the configuration's
``cniVersion`` (1), then the configuration itself (7).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.cni.errors import (
    DECODING_FAILURE,
    INCOMPATIBLE_VERSION,
    INVALID_ENVIRONMENT,
    CniError,
)
from services.cni.netconf import NetConf, parse_netconf

SUPPORTED_VERSIONS = ("0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST_VERSION = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
_NEEDS = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": (),
    "VERSION": (),
}
_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class CniRequest:
    """A validated CNI invocation."""

    command: str
    version: str
    container_id: str = ""
    netns: str = ""
    ifname: str = ""
    args: dict[str, str] = field(default_factory=dict)
    path: tuple[str, ...] = ()
    conf: NetConf | None = None
    stdin: bytes = b""

    @property
    def netconf(self) -> NetConf:
        assert self.conf is not None, "VERSION requests carry no configuration"
        return self.conf


def parse_cni_args(text: str) -> dict[str, str]:
    """``CNI_ARGS`` (``K=V;K2=V2``) as a dict; raise CniError code 4 for a pair without '='."""
    out: dict[str, str] = {}
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CniError(INVALID_ENVIRONMENT, "invalid CNI_ARGS", f"{pair!r} is not KEY=VALUE")
        out[key] = value
    return out


def check_ifname(name: str) -> None:
    """Raise CniError code 4 unless ``name`` is a usable Linux interface name."""
    problem = ""
    if len(name) > 15:
        problem = f"interface name {name!r} is too long (at most 15 characters)"
    elif name in (".", ".."):
        problem = f"interface name {name!r} is not allowed"
    elif any(c in name for c in "/:") or any(c.isspace() for c in name):
        problem = f"interface name {name!r} contains '/', ':' or whitespace"
    if problem:
        raise CniError(INVALID_ENVIRONMENT, "invalid CNI_IFNAME", problem)


def _version_of(doc: Any) -> str:
    if isinstance(doc, dict):
        version = doc.get("cniVersion", "")
        if isinstance(version, str):
            return version or "0.1.0"
    return "0.1.0"


def decode_stdin(stdin: bytes) -> Any:
    """The JSON document on stdin; raise CniError code 6."""
    try:
        return json.loads(stdin.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CniError(DECODING_FAILURE, "error decoding network config", str(exc)) from None


def check_version(version: str) -> None:
    """Raise CniError code 1 for a cniVersion this plugin does not speak."""
    if version not in SUPPORTED_VERSIONS:
        raise CniError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version!r}, plugin supports {list(SUPPORTED_VERSIONS)}")


def parse_request(env: Mapping[str, str], stdin: bytes) -> CniRequest:
    """Validate one invocation; raise CniError with the spec's code."""
    command = env.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENVIRONMENT, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, f"unknown CNI_COMMAND: {command}",
                       f"expected one of {', '.join(COMMANDS)}")
    if command == "VERSION":
        version = LATEST_VERSION
        if stdin.strip():
            doc = decode_stdin(stdin)
            if isinstance(doc, dict) and doc.get("cniVersion") in SUPPORTED_VERSIONS:
                version = str(doc["cniVersion"])
        return CniRequest(command, version, stdin=stdin)
    missing = [name for name in _NEEDS[command] if not env.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"required env variables [{','.join(missing)}] missing")
    container_id = env.get("CNI_CONTAINERID", "")
    if container_id and not _CONTAINER_ID.match(container_id):
        raise CniError(INVALID_ENVIRONMENT, "invalid characters in CNI_CONTAINERID",
                       f"{container_id!r}: must start with a letter or digit, then letters, digits, '_', '.' or '-'")
    ifname = env.get("CNI_IFNAME", "")
    if ifname:
        check_ifname(ifname)
    args = parse_cni_args(env.get("CNI_ARGS", ""))
    doc = decode_stdin(stdin)
    version = _version_of(doc)
    check_version(version)
    if command == "CHECK" and version in ("0.1.0", "0.2.0", "0.3.0", "0.3.1"):
        raise CniError(INCOMPATIBLE_VERSION, "config version does not allow CHECK",
                       f"CHECK needs cniVersion 0.4.0 or later, config is {version!r}")
    conf = parse_netconf(doc)
    path = tuple(p for p in env.get("CNI_PATH", "").split(":") if p)
    return CniRequest(command, version, container_id, env.get("CNI_NETNS", ""), ifname, args, path, conf, stdin)
