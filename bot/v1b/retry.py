"""Retry policy: which failures to retry, and exponential backoff with full jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .errors import ConnectionFailed, ServiceError, V1bError


@dataclass(frozen=True)
class RetryPolicy:
    """At most `max_retries` retries, sleeping no more than `budget` seconds in total."""

    max_retries: int = 3
    budget: float = 20.0
    base: float = 0.5
    cap: float = 8.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, attempt: int) -> float:
        """Return the sleep before retry number `attempt` (0-based), with full jitter."""
        return self.rng.uniform(0, min(self.cap, self.base * 2**attempt))

    def should_retry(self, exc: V1bError, *, read_only: bool, attempt: int) -> bool:
        """Whether a failed call may be sent again."""
        if attempt >= self.max_retries:
            return False
        if isinstance(exc, ConnectionFailed):
            # Never reached the server: safe to resend even a submit.
            return True
        return read_only and isinstance(exc, ServiceError)
