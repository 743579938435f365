"""A member's own generation defaults in one guild, and where their results go."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from bot.store.base import Clock, Repo, build
from bot.store.database import Database, Row
from bot.store.guild_cache import KeyedCache
from bot.store.shards import EVERYTHING, ShardScope

log = logging.getLogger(__name__)

# The preferences a member may choose; a None value means "not chosen".
PREFERENCE_NAMES: tuple[str, ...] = ("model", "size", "count", "negative_prompt", "delivery")
DELIVERIES: tuple[str, ...] = ("channel", "dm")
# Members (per guild) whose preferences are kept in memory; the least recently read go first.
CACHED_MEMBERS = 50_000


@dataclass(frozen=True, slots=True)
class MemberPreferences:
    """What a member chose for their own generations in a guild; None: not chosen."""

    guild_id: int
    user_id: int
    model: str | None = None
    size: str | None = None
    count: int | None = None
    negative_prompt: str | None = None
    delivery: str | None = None
    updated_at: float | None = None

    @property
    def empty(self) -> bool:
        """True when the member chose nothing."""
        return all(getattr(self, name) is None for name in PREFERENCE_NAMES)


_GET = "SELECT * FROM member_preferences WHERE guild_id = ? AND user_id = ?"
_CLEAR = "DELETE FROM member_preferences WHERE guild_id = ? AND user_id = ? RETURNING guild_id"


def _upsert_sql(columns: list[str]) -> str:
    # Column names come from PREFERENCE_NAMES only; values are bound parameters.
    names = ", ".join(["guild_id", "user_id", *columns, "updated_at"])
    marks = ", ".join("?" * (len(columns) + 3))
    updates = ", ".join(f"{c} = excluded.{c}" for c in [*columns, "updated_at"])
    return (
        f"INSERT INTO member_preferences ({names}) VALUES ({marks}) "  # noqa: S608
        f"ON CONFLICT (guild_id, user_id) DO UPDATE SET {updates} RETURNING *"
    )


def _preferences(row: Row) -> MemberPreferences:
    return build(MemberPreferences, row)


class PreferencesRepo(Repo):
    """Reads and writes `member_preferences`.

    Every generation command reads its member's preferences, so they are kept in memory:
    a member changes them with a command in that guild, which reaches the process serving
    its shard, and every change goes through `update` or `clear` here, which keep the copy
    true (see bot/store/guild_cache.py).
    """

    def __init__(
        self, db: Database, clock: Clock = time.time, scope: ShardScope = EVERYTHING
    ) -> None:
        super().__init__(db, clock, scope)
        self._cache: KeyedCache[tuple[int, int], MemberPreferences] = KeyedCache(CACHED_MEMBERS)

    async def get(self, guild_id: int, user_id: int) -> MemberPreferences:
        """The member's preferences in the guild; all unset when they never chose any."""
        key = (guild_id, user_id)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        began = self._cache.read_began()
        row = await self._fetch_one(_GET, key)
        prefs = _preferences(row) if row else MemberPreferences(guild_id, user_id)
        self._cache.keep_read(key, prefs, began)
        return prefs

    async def update(self, guild_id: int, user_id: int, **changes: Any) -> MemberPreferences:
        """Change the given preferences (None unsets one; others keep theirs); return all."""
        unknown = set(changes) - set(PREFERENCE_NAMES)
        if unknown:
            raise ValueError(f"unknown preferences: {', '.join(sorted(unknown))}")
        if changes.get("delivery") not in (None, *DELIVERIES):
            raise ValueError(f"unknown delivery: {changes['delivery']!r}")
        columns = sorted(changes)
        params = (guild_id, user_id, *(changes[c] for c in columns), self._clock())
        with self._cache.changing((guild_id, user_id)):
            row = await self._fetch_one(_upsert_sql(columns), params)
        assert row is not None
        log.debug("Member %s of guild %s changed preferences: %s", user_id, guild_id, columns)
        prefs = _preferences(row)
        self._cache.keep((guild_id, user_id), prefs)
        return prefs

    async def clear(self, guild_id: int, user_id: int) -> bool:
        """Forget all of the member's preferences in the guild; True when any were stored."""
        with self._cache.changing((guild_id, user_id)):
            return await self._fetch_one(_CLEAR, (guild_id, user_id)) is not None
