"""The dataplane driver's process-level options and its counters (see :mod:`dataplane`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from services.felix.dataplane.settings import DataplaneSettings


@dataclass(frozen=True, slots=True)
class DataplaneOptions:
    """Process-level options (not from FelixConfiguration)."""

    hostname: str
    netns: str | None = None  # run against this network namespace (name or path); None: our own
    nft_backend: str = "libnftables"  # or "nft" (the program)
    settings: DataplaneSettings = field(default_factory=DataplaneSettings)
    pending_retry_interval: float = 0.5  # retry a missing workload interface (link events usually come first)
    max_backoff: float = 30.0
    # Called once, while the first table is in nft's hands (a process, so this thread is free):
    # blocking work that must not delay readiness goes here (Felix's start-up collection).
    while_programming: Callable[[], None] | None = None


@dataclass(slots=True)
class DataplaneStats:
    """Counters for health and metrics."""

    turns: int = 0
    nft_batches: int = 0
    nft_failures: int = 0
    replaces: int = 0
    refreshes: int = 0
    repairs: int = 0
    last_apply_seconds: float = 0.0
    last_nft_seconds: float = 0.0
    last_routes_seconds: float = 0.0
    last_error: str = ""
