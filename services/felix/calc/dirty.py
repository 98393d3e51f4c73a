"""What changed since the last flush: the keys whose messages the sequencer must look at again."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Dirty:
    """Keys touched since the last flush, per kind of message."""

    policies: set[str] = field(default_factory=set)  # policy datastore keys
    profiles: set[str] = field(default_factory=set)  # profile names
    endpoints: set[str] = field(default_factory=set)  # local endpoint datastore keys
    ipsets: set[str] = field(default_factory=set)  # IP-set ids (de)activated
    config: bool = False
    routes: bool = False

    def clear(self) -> None:
        """Forget everything (after a flush)."""
        self.policies.clear()
        self.profiles.clear()
        self.endpoints.clear()
        self.ipsets.clear()
        self.config = False
        self.routes = False
