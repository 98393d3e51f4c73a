"""CNI output documents: results, errors and version reports, in the shape each cniVersion defines.

Results are built in the 1.0.0 shape and converted on the way out: 0.3.x and
0.4.0 add ``"version"`` to each IP; 0.1.0 and 0.2.0 use ``ip4``/``ip6``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from services.cni.errors import CniError
from services.cni.request import LATEST_VERSION, SUPPORTED_VERSIONS


@dataclass(frozen=True)
class Interface:
    """An interface the plugin created: host side (no sandbox) or container side."""

    name: str
    mac: str = ""
    sandbox: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.mac:
            out["mac"] = self.mac
        if self.sandbox:
            out["sandbox"] = self.sandbox
        return out


@dataclass
class Result:
    """A 1.0.0-shaped result."""

    ips: list[tuple[str, int | None, str | None]] = field(default_factory=list)  # address/prefix, iface, gateway
    interfaces: list[Interface] = field(default_factory=list)
    routes: list[tuple[str, str | None]] = field(default_factory=list)
    dns: dict[str, Any] = field(default_factory=dict)

    def to_json(self, version: str) -> dict[str, Any]:
        """The result document for a cniVersion."""
        if version in ("0.1.0", "0.2.0"):
            return self._legacy(version)
        ips = []
        for address, iface, gateway in self.ips:
            entry: dict[str, Any] = {}
            if version in ("0.3.0", "0.3.1", "0.4.0"):
                entry["version"] = str(ipaddress.ip_interface(address).version)
            entry["address"] = address
            if gateway:
                entry["gateway"] = gateway
            if iface is not None:
                entry["interface"] = iface
            ips.append(entry)
        out: dict[str, Any] = {"cniVersion": version}
        if self.interfaces:
            out["interfaces"] = [i.to_json() for i in self.interfaces]
        out["ips"] = ips
        if self.routes:
            out["routes"] = [{"dst": d, **({"gw": g} if g else {})} for d, g in self.routes]
        out["dns"] = dict(self.dns)
        return out

    def _legacy(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version}
        for family, key in ((4, "ip4"), (6, "ip6")):
            for address, _, gateway in self.ips:
                if ipaddress.ip_interface(address).version != family:
                    continue
                entry: dict[str, Any] = {"ip": address}
                if gateway:
                    entry["gateway"] = gateway
                routes = [{"dst": d, **({"gw": g} if g else {})} for d, g in self.routes
                          if ipaddress.ip_network(d).version == family]
                if routes:
                    entry["routes"] = routes
                out[key] = entry
                break
        out["dns"] = dict(self.dns)
        return out

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Result:
        """Read a result (any supported version) back, e.g. a ``prevResult`` or a delegated plugin's output."""
        res = cls(dns=dict(doc.get("dns") or {}))
        for iface in doc.get("interfaces") or []:
            res.interfaces.append(Interface(str(iface.get("name", "")), str(iface.get("mac", "") or ""),
                                            str(iface.get("sandbox", "") or "")))
        for ip in doc.get("ips") or []:
            res.ips.append((str(ip["address"]), ip.get("interface"), ip.get("gateway")))
        for key in ("ip4", "ip6"):
            if isinstance(doc.get(key), dict):
                res.ips.append((str(doc[key]["ip"]), None, doc[key].get("gateway")))
        for route in doc.get("routes") or []:
            res.routes.append((str(route["dst"]), route.get("gw")))
        return res

    def addresses(self) -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
        """The IPs as interfaces (address with prefix)."""
        return [ipaddress.ip_interface(a) for a, _, _ in self.ips]


def error_json(err: CniError, version: str) -> dict[str, Any]:
    """The spec's error document."""
    out: dict[str, Any] = {"cniVersion": version if version in SUPPORTED_VERSIONS else LATEST_VERSION,
                           "code": err.code, "msg": err.msg}
    if err.details:
        out["details"] = err.details
    return out


def version_json(version: str) -> dict[str, Any]:
    """The VERSION command's document."""
    return {"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}


def ipam_result(addresses: Sequence[ipaddress.IPv4Interface | ipaddress.IPv6Interface],
                dns: dict[str, Any] | None = None) -> Result:
    """What calico-ipam returns: each address as a host route (/32 or /128), no interfaces."""
    return Result(ips=[(f"{a.ip}/{a.max_prefixlen}", None, None) for a in addresses], dns=dict(dns or {}))
