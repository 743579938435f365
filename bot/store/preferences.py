"""A member's own generation defaults in one guild, and where their results go."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from bot.store.base import Repo, build
from bot.store.database import Row

log = logging.getLogger(__name__)

# The preferences a member may choose; a None value means "not chosen".
PREFERENCE_NAMES: tuple[str, ...] = ("model", "size", "count", "negative_prompt", "delivery")
DELIVERIES: tuple[str, ...] = ("channel", "dm")


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
    """Reads and writes `member_preferences`."""

    async def get(self, guild_id: int, user_id: int) -> MemberPreferences:
        """The member's preferences in the guild; all unset when they never chose any."""
        row = await self._fetch_one(_GET, (guild_id, user_id))
        return _preferences(row) if row else MemberPreferences(guild_id, user_id)

    async def update(self, guild_id: int, user_id: int, **changes: Any) -> MemberPreferences:
        """Change the given preferences (None unsets one; others keep theirs); return all."""
        unknown = set(changes) - set(PREFERENCE_NAMES)
        if unknown:
            raise ValueError(f"unknown preferences: {', '.join(sorted(unknown))}")
        if changes.get("delivery") not in (None, *DELIVERIES):
            raise ValueError(f"unknown delivery: {changes['delivery']!r}")
        columns = sorted(changes)
        params = (guild_id, user_id, *(changes[c] for c in columns), self._clock())
        row = await self._fetch_one(_upsert_sql(columns), params)
        assert row is not None
        log.debug("Member %s of guild %s changed preferences: %s", user_id, guild_id, columns)
        return _preferences(row)

    async def clear(self, guild_id: int, user_id: int) -> bool:
        """Forget all of the member's preferences in the guild; True when any were stored."""
        return await self._fetch_one(_CLEAR, (guild_id, user_id)) is not None
