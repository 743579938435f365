"""Per-guild copies of what a repository read, kept true by the repository's own writes.

A guild's commands and the changes to what they read all reach the process serving its
shard, through one repository, so that repository can keep a copy in memory and drop it
whenever it changes the rows behind it. What belongs to one member in one guild (their
preferences) is kept the same way, keyed by guild and member.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Guilds kept in memory; the least recently read is dropped first.
CACHED_GUILDS = 20_000


class KeyedCache(Generic[K, V]):
    """A bounded, least-recently-read-first cache of one value per key.

    A read that began before a change may return what the change replaced: `read_began`
    and `keep_read` keep such a value out.
    """

    def __init__(self, size: int = CACHED_GUILDS) -> None:
        self.size = size
        self._values: OrderedDict[K, V] = OrderedDict()
        self._changes = 0

    def get(self, key: K) -> V | None:
        """The key's copy, or None when none is kept."""
        value = self._values.get(key)
        if value is not None:
            self._values.move_to_end(key)
        return value

    def read_began(self) -> int:
        """A mark to hand to `keep_read` with what the read returns."""
        return self._changes

    def keep_read(self, key: K, value: V, began: int) -> None:
        """Keep what a read returned, unless something changed since it began."""
        if began == self._changes:
            self.keep(key, value)

    def keep(self, key: K, value: V) -> None:
        """Keep a value known to be current (what a write returned)."""
        self._values[key] = value
        self._values.move_to_end(key)
        while len(self._values) > self.size:
            self._values.popitem(last=False)

    def forget(self, key: K) -> None:
        """Drop the key's copy, and any read under way."""
        self._changes += 1
        self._values.pop(key, None)

    @contextmanager
    def changing(self, key: K) -> Iterator[None]:
        """Around a write: no copy while it runs, none after (a failed write's outcome is
        unknown: the next read asks the database)."""
        self.forget(key)
        try:
            yield
        finally:
            self.forget(key)


class GuildCache(KeyedCache[int, V]):
    """A bounded cache of one value per guild id (see `KeyedCache`)."""
