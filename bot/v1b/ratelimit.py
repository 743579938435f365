"""An async token bucket that serves its waiters in arrival order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Token bucket: `rate` requests per second on average, bursts of up to `burst`."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self._burst
        self._updated = clock()
        # asyncio.Lock wakes its waiters first-in first-out: that is the queue.
        self._lock = asyncio.Lock()

    @property
    def rate(self) -> float:
        """Average requests per second allowed."""
        return self._rate

    @property
    def burst(self) -> float:
        """Requests allowed back to back after an idle period."""
        return self._burst

    @property
    def waiting(self) -> bool:
        """Whether some caller is queued for a token."""
        return self._lock.locked()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def acquire(self) -> None:
        """Wait until a request may be sent, then take one token."""
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                await self._sleep((1 - self._tokens) / self._rate)
                self._refill()
            self._tokens -= 1

    async def __aenter__(self) -> RateLimiter:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None
