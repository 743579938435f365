"""A min-heap of keys due at given times, with lazy removal."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TimerHeap(Generic[K]):
    """Keys (task ids, named poll rounds) scheduled at times; rescheduling replaces a time."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def __contains__(self, key: object) -> bool:
        return key in self._due

    def schedule(self, key: K, when: float) -> None:
        """Make `key` due at `when`."""
        self._due[key] = when
        heapq.heappush(self._heap, (when, next(self._seq), key))

    def discard(self, key: K) -> None:
        """Forget `key` if it is scheduled."""
        self._due.pop(key, None)

    def next_due(self) -> float | None:
        """Return the earliest due time, or None when empty."""
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        """Remove and return every key due at or before `now`, earliest first."""
        keys: list[K] = []
        while (when := self.next_due()) is not None and when <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._due[key]
            keys.append(key)
        return keys

    def _drop_stale(self) -> None:
        while self._heap:
            when, _, key = self._heap[0]
            if self._due.get(key) == when:
                return
            heapq.heappop(self._heap)
