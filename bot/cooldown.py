"""Per-key cooldowns whose memory holds only the keys still cooling down."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Cooldowns(Generic[K]):
    """One cooldown of `seconds` per key (e.g. per member), started by `try_start`.

    Every cooldown lasts as long, so the order in which they started is the order in which
    they end: expired entries are dropped from the front on each use, and the memory never
    holds more keys than were started within the last `seconds`.
    """

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._ends: OrderedDict[K, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ends)

    def try_start(self, key: K) -> float:
        """Start the key's cooldown and return 0, or return the seconds it still has to wait."""
        now = self._clock()
        self._drop_expired(now)
        end = self._ends.get(key)
        if end is not None:
            return end - now
        self._ends[key] = now + self.seconds
        return 0.0

    def _drop_expired(self, now: float) -> None:
        while self._ends:
            key, end = next(iter(self._ends.items()))
            if end > now:
                return
            del self._ends[key]
