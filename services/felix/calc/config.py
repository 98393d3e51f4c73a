"""Felix configuration from the datastore: FelixConfiguration ``default`` under ``node.<hostname>``.

The merged spec (camelCase keys, as stored) is what the daemon maps onto its
settings; a field the node resource sets overrides the cluster default. Other
nodes' resources are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from libcalico.resources import FelixConfiguration

DEFAULT_NAME = "default"
NODE_PREFIX = "node."


class ConfigMerger:
    """Holds the cluster and this node's FelixConfiguration specs; merges them."""

    def __init__(self, hostname: str) -> None:
        self._node_name = NODE_PREFIX + hostname
        self._specs: dict[str, dict[str, Any]] = {}

    def relevant(self, name: str) -> bool:
        """Whether a FelixConfiguration of this name concerns this node."""
        return name in (DEFAULT_NAME, self._node_name)

    def update(self, name: str, resource: FelixConfiguration | None) -> bool:
        """Record a FelixConfiguration (None: deleted); return whether the merged config may have changed."""
        if not self.relevant(name):
            return False
        if resource is None:
            return self._specs.pop(name, None) is not None
        spec = resource.spec.model_dump(mode="json", exclude_none=True, by_alias=True)
        changed = self._specs.get(name) != spec
        self._specs[name] = spec
        return changed

    def merged(self) -> dict[str, Any]:
        """The effective configuration: the default spec with this node's fields on top."""
        out = dict(self._specs.get(DEFAULT_NAME, {}))
        out.update(self._specs.get(self._node_name, {}))
        return out
