"""Calico IPAM: IP pools cut into blocks, blocks affine to hosts, addresses held by handles.

    >>> ipam = IPAM(backend)
    >>> got = await ipam.auto_assign(AssignRequest(host="node1", num4=1, handle="k8s-pod-network.abc"))
    >>> await ipam.release_by_handle("k8s-pod-network.abc")

Datastore keys and value shapes are Calico's (see :mod:`libcalico.ipam.keys`
and :mod:`libcalico.ipam.model`), so the kubernetes backend maps them onto
Calico's IPAM custom resources unchanged.
"""

from libcalico.ipam.allocator import IPAM, AllocationInfo, Assignment, AssignRequest, ReleaseRequest
from libcalico.ipam.errors import (
    AddressInUse,
    AddressNotInPool,
    AddressReserved,
    BlockNotEmpty,
    ContentionExceeded,
    CorruptIPAMData,
    InvalidIPAMConfig,
    IPAMError,
    NoFreeAddresses,
    NoQualifiedPool,
)
from libcalico.ipam.model import IPAMSettings

__all__ = [
    "IPAM",
    "AddressInUse",
    "AddressNotInPool",
    "AddressReserved",
    "AllocationInfo",
    "AssignRequest",
    "Assignment",
    "BlockNotEmpty",
    "ContentionExceeded",
    "CorruptIPAMData",
    "IPAMError",
    "IPAMSettings",
    "InvalidIPAMConfig",
    "NoFreeAddresses",
    "NoQualifiedPool",
    "ReleaseRequest",
]
