"""Jittered exponential backoff for reconnecting watchers: bounded, and never a tight loop."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Delay before attempt ``n`` (1-based) after consecutive failures: initial·multiplierⁿ⁻¹, capped, jittered."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError(f"retry policy: need 0 < initial ({self.initial}) <= maximum ({self.maximum})")
        if self.multiplier < 1:
            raise ValueError(f"retry policy: multiplier {self.multiplier} must be at least 1")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"retry policy: jitter {self.jitter} must be in [0, 1)")

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``failures`` consecutive failures (at least ``initial``·(1-jitter))."""
        steps = max(failures, 1) - 1
        base = self.maximum if steps > 64 else min(self.maximum, self.initial * self.multiplier**steps)
        spread = (rng or random).uniform(1 - self.jitter, 1 + self.jitter)
        return base * spread
