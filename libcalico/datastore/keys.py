"""Calico's datastore key layout.

Resources live at ``/calico/resources/v3/projectcalico.org/<plural>/[<namespace>/]<name>``
(namespaced kinds carry the namespace segment, cluster-wide kinds do not), IPAM
under ``/calico/ipam/v2/``, Felix status under ``/calico/felix/v2/``.
"""

from __future__ import annotations

from dataclasses import dataclass

RESOURCE_ROOT = "/calico/resources/v3/projectcalico.org/"
IPAM_ROOT = "/calico/ipam/v2/"
FELIX_ROOT = "/calico/felix/v2/"


@dataclass(frozen=True, slots=True)
class ResourceKey:
    """Where one resource lives: its plural kind, namespace (or None) and name."""

    plural: str
    name: str
    namespace: str | None = None

    @property
    def path(self) -> str:
        if self.namespace is not None:
            return f"{RESOURCE_ROOT}{self.plural}/{self.namespace}/{self.name}"
        return f"{RESOURCE_ROOT}{self.plural}/{self.name}"


def resource_prefix(plural: str, namespace: str | None = None) -> str:
    """The key prefix under which every resource of one kind (and namespace) lives."""
    if namespace is not None:
        return f"{RESOURCE_ROOT}{plural}/{namespace}/"
    return f"{RESOURCE_ROOT}{plural}/"


def parse_resource_key(path: str, namespaced: bool) -> ResourceKey:
    """Split a resource path back into its parts; raise ValueError for any other path."""
    if not path.startswith(RESOURCE_ROOT):
        raise ValueError(f"not a resource key: {path!r}")
    parts = path[len(RESOURCE_ROOT) :].split("/")
    if namespaced and len(parts) == 3 and all(parts):
        return ResourceKey(parts[0], parts[2], parts[1])
    if not namespaced and len(parts) == 2 and all(parts):
        return ResourceKey(parts[0], parts[1])
    raise ValueError(f"malformed resource key: {path!r}")


def plural_of_key(path: str) -> str | None:
    """The plural kind segment of a resource path, or None for a non-resource key."""
    if not path.startswith(RESOURCE_ROOT):
        return None
    return path[len(RESOURCE_ROOT) :].split("/", 1)[0]
