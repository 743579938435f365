"""Which guilds' work this process owns when the bot runs as several sharded processes.

Discord puts guild `g` on shard `(g >> 22) % shard_count`. A process serves the guilds of
its shards only: it resumes, polls, delivers and prunes their tasks and trainings and no
others, so two processes sharing one database never touch the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


class ShardsTaken(RuntimeError):
    """Another live process already serves one of the shards this process was given."""

    def __init__(self, shard: int, count: int, database: str, held_by: str) -> None:
        """`held_by` names what holds the shard (a lock file, an advisory lock)."""
        super().__init__(
            f"shard {shard} of {count} is already served by another process "
            f"on {database} ({held_by})"
        )


@dataclass(frozen=True, slots=True)
class ShardScope:
    """The shards (out of `count`) whose guilds this process serves."""

    count: int = 1
    ids: frozenset[int] = frozenset({0})

    @classmethod
    def of(cls, count: int | None, ids: Iterable[int] | None) -> ShardScope:
        """The scope of `discord.shard_count` / `discord.shard_ids` (None: all shards)."""
        total = count or 1
        chosen = frozenset(range(total) if ids is None else ids)
        if not chosen or any(not 0 <= i < total for i in chosen):
            raise ValueError(f"shard ids must be between 0 and {total - 1}")
        return cls(total, chosen)

    @property
    def everything(self) -> bool:
        """True when this process serves every guild."""
        return len(self.ids) == self.count

    def owns(self, guild_id: int) -> bool:
        """True when the guild's shard is one of this process's."""
        return shard_of(guild_id, self.count) in self.ids

    def where(self, column: str = "guild_id") -> tuple[str, tuple[Any, ...]]:
        """A SQL condition (`?` parameters) true for this scope's guilds, and its values."""
        if self.everything:
            return "1 = 1", ()
        marks = ", ".join("?" * len(self.ids))
        return f"(({column} >> 22) % ?) IN ({marks})", (self.count, *sorted(self.ids))

    def __str__(self) -> str:
        if self.everything:
            return f"all {self.count} shard(s)"
        return f"shard(s) {', '.join(map(str, sorted(self.ids)))} of {self.count}"


EVERYTHING = ShardScope()


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard Discord puts the guild on."""
    return (guild_id >> 22) % shard_count
