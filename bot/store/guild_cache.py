"""Per-guild copies of what a repository read, kept true by the repository's own writes.

A guild's commands and the changes to what they read all reach the process serving its
shard, through one repository, so that repository can keep a copy in memory and drop it
whenever it changes the rows behind it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

V = TypeVar("V")

# Guilds kept in memory; the least recently read is dropped first.
CACHED_GUILDS = 20_000


class GuildCache(Generic[V]):
    """A bounded, least-recently-read-first cache of one value per guild.

    A read that began before a change may return what the change replaced: `read_began`
    and `keep_read` keep such a value out.
    """

    def __init__(self, size: int = CACHED_GUILDS) -> None:
        self.size = size
        self._values: OrderedDict[int, V] = OrderedDict()
        self._changes = 0

    def get(self, guild_id: int) -> V | None:
        """The guild's copy, or None when none is kept."""
        value = self._values.get(guild_id)
        if value is not None:
            self._values.move_to_end(guild_id)
        return value

    def read_began(self) -> int:
        """A mark to hand to `keep_read` with what the read returns."""
        return self._changes

    def keep_read(self, guild_id: int, value: V, began: int) -> None:
        """Keep what a read returned, unless something changed since it began."""
        if began == self._changes:
            self.keep(guild_id, value)

    def keep(self, guild_id: int, value: V) -> None:
        """Keep a value known to be current (what a write returned)."""
        self._values[guild_id] = value
        self._values.move_to_end(guild_id)
        while len(self._values) > self.size:
            self._values.popitem(last=False)

    def forget(self, guild_id: int) -> None:
        """Drop the guild's copy, and any read under way."""
        self._changes += 1
        self._values.pop(guild_id, None)

    @contextmanager
    def changing(self, guild_id: int) -> Iterator[None]:
        """Around a write: no copy while it runs, none after (a failed write's outcome is
        unknown: the next read asks the database)."""
        self.forget(guild_id)
        try:
            yield
        finally:
            self.forget(guild_id)
