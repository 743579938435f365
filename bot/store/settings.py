"""Per-guild settings: generation defaults, channel and word filters, limits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.store.base import Clock, Repo, build, dump_list, load_list
from bot.store.database import Database, Row
from bot.store.guild_cache import GuildCache
from bot.store.shards import EVERYTHING, ShardScope

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A guild's settings; None generation defaults mean "the service form's default"."""

    guild_id: int
    model: str | None = None
    size: str | None = None
    count: int | None = None
    scale: int | None = None
    negative_prompt: str = ""
    allowed_channels: tuple[int, ...] = field(default=())
    blocked_words: tuple[str, ...] = field(default=())
    user_running: int | None = None
    daily_quota: int | None = None
    language: str | None = None
    trainer_role_id: int | None = None
    user_queued: int | None = None
    log_channel_id: int | None = None
    updated_at: float | None = None


def _plain(value: Any) -> Any:
    return value


# Column name -> encoder of the Python value for that column.
_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "model": _plain,
    "size": _plain,
    "count": _plain,
    "scale": _plain,
    "negative_prompt": lambda v: v or "",
    "allowed_channels": lambda v: dump_list(int(x) for x in v),
    "blocked_words": lambda v: dump_list(str(x) for x in v),
    "user_running": _plain,
    "daily_quota": _plain,
    "language": _plain,
    "trainer_role_id": _plain,
    "user_queued": _plain,
    "log_channel_id": _plain,
}

SETTING_NAMES: frozenset[str] = frozenset(_ENCODERS)

_GET = "SELECT * FROM guild_settings WHERE guild_id = ?"

_LANGUAGES = "SELECT guild_id, language FROM guild_settings WHERE language IS NOT NULL"

_RESET = "DELETE FROM guild_settings WHERE guild_id = ? RETURNING guild_id"


def _settings(row: Row) -> GuildSettings:
    return build(
        GuildSettings,
        row,
        allowed_channels=tuple(load_list(row["allowed_channels"])),
        blocked_words=tuple(load_list(row["blocked_words"])),
    )


def _upsert_sql(columns: list[str]) -> str:
    # Column names come from the _ENCODERS whitelist only; values are bound parameters.
    names = ", ".join(["guild_id", *columns, "updated_at"])
    marks = ", ".join("?" * (len(columns) + 2))
    updates = ", ".join(f"{c} = excluded.{c}" for c in [*columns, "updated_at"])
    return (
        f"INSERT INTO guild_settings ({names}) VALUES ({marks}) "  # noqa: S608
        f"ON CONFLICT (guild_id) DO UPDATE SET {updates} RETURNING *"
    )


class SettingsRepo(Repo):
    """Reads and writes `guild_settings`; tells listeners about every change.

    Every command reads its guild's settings (often twice), so they are kept in memory:
    a guild's commands all reach the process serving its shard, and every change of them
    goes through `update` or `reset` here, which keep the copy true.
    """

    def __init__(
        self, db: Database, clock: Clock = time.time, scope: ShardScope = EVERYTHING
    ) -> None:
        super().__init__(db, clock, scope)
        self._listeners: list[Callable[[GuildSettings], None]] = []
        self._cache: GuildCache[GuildSettings] = GuildCache()

    def on_change(self, listener: Callable[[GuildSettings], None]) -> None:
        """Call listener(settings) with a guild's settings after each change of them."""
        self._listeners.append(listener)

    async def get(self, guild_id: int) -> GuildSettings:
        """Return the guild's settings, defaults when it never changed any."""
        cached = self._cache.get(guild_id)
        if cached is not None:
            return cached
        began = self._cache.read_began()
        row = await self._fetch_one(_GET, (guild_id,))
        settings = _settings(row) if row else GuildSettings(guild_id=guild_id)
        self._cache.keep_read(guild_id, settings, began)
        return settings

    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        """Change the given settings (others keep their value) and return the result."""
        unknown = set(changes) - SETTING_NAMES
        if unknown:
            raise ValueError(f"unknown settings: {', '.join(sorted(unknown))}")
        columns = sorted(changes)
        values = [_ENCODERS[c](changes[c]) for c in columns]
        with self._cache.changing(guild_id):
            row = await self._fetch_one(_upsert_sql(columns), (guild_id, *values, self._clock()))
        assert row is not None
        log.debug("Guild %s settings changed: %s", guild_id, ", ".join(columns))
        updated = _settings(row)
        self._cache.keep(guild_id, updated)
        for listener in self._listeners:
            listener(updated)
        return updated

    async def languages(self) -> dict[int, str]:
        """Every guild's chosen language, for guilds that chose one."""
        rows = await self._fetch_all(_LANGUAGES, ())
        return {row["guild_id"]: row["language"] for row in rows}

    async def reset(self, guild_id: int) -> bool:
        """Drop all of the guild's settings back to defaults; True when any were set."""
        with self._cache.changing(guild_id):
            return await self._fetch_one(_RESET, (guild_id,)) is not None
