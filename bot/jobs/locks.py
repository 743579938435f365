"""Locks by key that exist only while in use, so idle keys cost no memory."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class _Held:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # holders plus waiters


class KeyedLocks(Generic[K]):
    """One `asyncio.Lock` per key, dropped as soon as nobody holds or waits for it.

    A `defaultdict(asyncio.Lock)` keeps a lock for every key ever used: with one key per
    (guild, member) a long-running bot would keep one per member who ever asked.
    """

    def __init__(self) -> None:
        self._held: dict[K, _Held] = {}

    def __len__(self) -> int:
        return len(self._held)

    @contextlib.asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        """Hold the lock of `key` for the body of the `async with`."""
        held = self._held.get(key)
        if held is None:
            held = self._held[key] = _Held()
        held.users += 1
        try:
            async with held.lock:
                yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._held[key]
