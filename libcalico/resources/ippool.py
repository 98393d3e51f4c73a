"""IPAM kinds: IPPool, IPReservation and IPAMConfiguration.

IPPool defaults and checks follow Calico's client (``validateAndSetDefaults``):
``blockSize`` 26 (IPv4) or 122 (IPv6), ``ipipMode``/``vxlanMode`` ``Never``,
``nodeSelector`` ``all()``, ``allowedUses`` ``[Workload, Tunnel]``,
``assignmentMode`` ``Automatic``. The CIDR is written in canonical form
(``fd00:0::/48`` becomes ``fd00::/48``); like Calico, a CIDR with host bits set
is rejected rather than silently masked.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, ClassVar, Literal

import pydantic
from pydantic import Field, PlainValidator

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import (
    CIDR,
    KindBase,
    Loc,
    Selector,
    SpecModel,
    choice,
    int_range,
    raise_problems,
)

EncapMode = choice("mode", "Always", "CrossSubnet", "Never")
AllowedUse = choice("allowed use", "Workload", "Tunnel", "LoadBalancer")
AssignmentMode = choice("assignmentMode", "Automatic", "Manual")

V4_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
V6_LINK_LOCAL = ipaddress.ip_network("fe80::/10")


def _pool_cidr(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("IPPool CIDR must be specified")
    if "/" not in value:
        raise ValueError(f"IPPool CIDR {value!r} must be a valid subnet (address/prefix-length)")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"IPPool CIDR {value!r} must be a valid subnet") from None
    if ipaddress.ip_address(value.split("/", 1)[0]) != net.network_address:
        raise ValueError(f"IPPool CIDR {value!r} is not strictly masked (did you mean {net}?)")
    if (net.version == 4 and net.overlaps(V4_LINK_LOCAL)) or (net.version == 6 and net.overlaps(V6_LINK_LOCAL)):
        link_local = V4_LINK_LOCAL if net.version == 4 else V6_LINK_LOCAL
        raise ValueError(f"IPPool CIDR overlaps with IPv{net.version} Link Local range {link_local}")
    return str(net)


PoolCIDR = Annotated[str, PlainValidator(_pool_cidr)]


class IPPoolSpec(SpecModel):
    """Spec of an IPPool."""

    cidr: PoolCIDR
    vxlanMode: EncapMode = "Never"  # type: ignore[valid-type]
    ipipMode: EncapMode = "Never"  # type: ignore[valid-type]
    natOutgoing: bool = False
    disabled: bool | None = None
    disableBGPExport: bool | None = None
    blockSize: int_range("blockSize", 0, 128) | None = None  # type: ignore[valid-type]
    nodeSelector: Selector = "all()"
    namespaceSelector: Selector | None = None
    allowedUses: list[AllowedUse] | None = None  # type: ignore[valid-type]
    assignmentMode: AssignmentMode = "Automatic"  # type: ignore[valid-type]

    @pydantic.model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        # Calico treats an empty mode or selector as unset, then applies its default.
        if isinstance(data, dict):
            empty = [k for k in ("vxlanMode", "ipipMode", "nodeSelector", "assignmentMode") if data.get(k) == ""]
            if empty:
                data = {k: v for k, v in data.items() if k not in empty}
        return data

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The pool's CIDR as an ``ipaddress`` network."""
        return ipaddress.ip_network(self.cidr)

    @pydantic.model_validator(mode="after")
    def _defaults_and_checks(self) -> IPPoolSpec:
        net = self.network
        problems: list[tuple[Loc, str]] = []
        if not self.blockSize:
            self.blockSize = 26 if net.version == 4 else 122
        if not self.allowedUses:
            self.allowedUses = ["Workload", "Tunnel"]
        low, high = (20, 32) if net.version == 4 else (116, 128)
        if not low <= self.blockSize <= high:
            problems.append((("blockSize",), f"IPv{net.version} block size must be between {low} and {high}"))
        elif not self.disabled and net.prefixlen > self.blockSize:
            problems.append((("cidr",), f"IP pool size is too small for use with Calico IPAM: the prefix "
                                        f"/{net.prefixlen} must be equal to or shorter than the block size "
                                        f"{self.blockSize}"))
        if self.vxlanMode != "Never" and self.ipipMode != "Never":
            problems.append((("vxlanMode",), "cannot enable both VXLAN and IPIP on the same IPPool"))
        if net.version == 6 and self.ipipMode != "Never":
            problems.append((("ipipMode",), "IPIP is not supported on an IPv6 IP pool"))
        uses = self.allowedUses
        if len(set(uses)) != len(uses):
            problems.append((("allowedUses",), "allowed uses must not repeat"))
        if "LoadBalancer" in uses:
            for use in uses:
                if use != "LoadBalancer":
                    problems.append((("allowedUses",), f"LoadBalancer cannot be used at the same time as {use}"))
            if self.ipipMode != "Never" or self.vxlanMode != "Never":
                problems.append((("allowedUses",),
                                 "neither ipipMode nor vxlanMode can be enabled on a LoadBalancer IP pool"))
            if self.disableBGPExport:
                problems.append((("disableBGPExport",),
                                 "an IP pool with allowed use LoadBalancer must not disable BGP export"))
            if self.nodeSelector != "all()":
                problems.append((("nodeSelector",),
                                 "an IP pool with allowed use LoadBalancer must have node selector all()"))
        raise_problems(problems)
        return self


@register
class IPPool(KindBase):
    """A range of addresses Calico IPAM assigns workload and tunnel addresses from."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="IPPool", plural="ippools", namespaced=False,
                                        aliases=("ippool", "ippools", "ipp", "ipps", "pool", "pools"))
    kind: Literal["IPPool"] = "IPPool"
    spec: IPPoolSpec


class IPReservationSpec(SpecModel):
    """Spec of an IPReservation: addresses IPAM must not hand out."""

    reservedCIDRs: list[CIDR] | None = None

    @pydantic.model_validator(mode="after")
    def _unique(self) -> IPReservationSpec:
        seen: set[str] = set()
        problems: list[tuple[Loc, str]] = []
        for i, cidr in enumerate(self.reservedCIDRs or []):
            if cidr in seen:
                problems.append((("reservedCIDRs", i), f"{cidr} is listed more than once"))
            seen.add(cidr)
        raise_problems(problems)
        return self


@register
class IPReservation(KindBase):
    """Addresses reserved from Calico IPAM."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="IPReservation", plural="ipreservations", namespaced=False,
                                        aliases=("ipreservation", "ipreservations", "reservation", "reservations"))
    kind: Literal["IPReservation"] = "IPReservation"
    spec: IPReservationSpec = Field(default_factory=IPReservationSpec)


def _only_default(name: str) -> None:
    if name != "default":
        raise ValueError(f"the only valid name is 'default', not {name!r}")


class IPAMConfigurationSpec(SpecModel):
    """Cluster-wide IPAM settings."""

    strictAffinity: bool = False
    maxBlocksPerHost: int_range("maxBlocksPerHost", 0, 1_000_000) | None = None  # type: ignore[valid-type]
    autoAllocateBlocks: bool = True
    kubeVirtVMAddressPersistence: choice("kubeVirtVMAddressPersistence", "Enabled", "Disabled") | None = None  # type: ignore[valid-type]


@register
class IPAMConfiguration(KindBase):
    """The single cluster-wide IPAM configuration (named ``default``)."""

    KIND: ClassVar[KindInfo] = KindInfo(
        kind="IPAMConfiguration", plural="ipamconfigurations", namespaced=False,
        aliases=("ipamconfiguration", "ipamconfigurations", "ipamconfig", "ipamconfigs"),
    )
    kind: Literal["IPAMConfiguration"] = "IPAMConfiguration"
    spec: IPAMConfigurationSpec = Field(default_factory=IPAMConfigurationSpec)

    @classmethod
    def check_name(cls, name: str) -> None:
        """Calico only accepts the name ``default``."""
        _only_default(name)
