"""Network set kinds: NetworkSet (namespaced) and GlobalNetworkSet (cluster-wide)."""

from __future__ import annotations

from typing import ClassVar, Literal

import pydantic
from pydantic import Field

from libcalico.resources.base import KindInfo, register
from libcalico.resources.fields import CIDR, KindBase, SpecModel, raise_problems

RESERVED_NAMESPACE_LABEL = "projectcalico.org/namespace"


class NetworkSetSpec(SpecModel):
    """A list of networks that selectors can match by the set's labels."""

    nets: list[CIDR] | None = None


class _NetworkSetBase(KindBase):
    @pydantic.model_validator(mode="after")
    def _reserved_label(self) -> _NetworkSetBase:
        if RESERVED_NAMESPACE_LABEL in (self.metadata.labels or {}):
            raise_problems([(("metadata", "labels", RESERVED_NAMESPACE_LABEL),
                             f"{RESERVED_NAMESPACE_LABEL} is not a valid label name")])
        return self


@register
class NetworkSet(_NetworkSetBase):
    """Networks labelled for use in the policies of one namespace."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="NetworkSet", plural="networksets", namespaced=True,
                                        aliases=("networkset", "networksets", "netsets"))
    kind: Literal["NetworkSet"] = "NetworkSet"
    spec: NetworkSetSpec = Field(default_factory=NetworkSetSpec)


@register
class GlobalNetworkSet(_NetworkSetBase):
    """Networks labelled for use in policies cluster-wide."""

    KIND: ClassVar[KindInfo] = KindInfo(kind="GlobalNetworkSet", plural="globalnetworksets", namespaced=False,
                                        aliases=("globalnetworkset", "globalnetworksets"))
    kind: Literal["GlobalNetworkSet"] = "GlobalNetworkSet"
    spec: NetworkSetSpec = Field(default_factory=NetworkSetSpec)
