"""Daily per-user generation counters, for quotas."""

from __future__ import annotations

from bot.store.base import Repo

# One statement: concurrent increments can neither lose updates nor race on the insert.
_INCREMENT = """
INSERT INTO daily_usage (guild_id, user_id, day, count) VALUES (?, ?, ?, ?)
ON CONFLICT (guild_id, user_id, day) DO UPDATE SET count = daily_usage.count + excluded.count
RETURNING count
"""

# The same increment, made only while the member has fewer than ?5 unfinished tasks: the
# member's line and their quota checked in one round trip, with nothing charged when the
# line is full (no row comes back).
_INCREMENT_UNLESS_BUSY = """
INSERT INTO daily_usage (guild_id, user_id, day, count)
SELECT ?1, ?2, ?3, ?4
WHERE (
    SELECT COUNT(*) FROM tasks
    WHERE guild_id = ?1 AND user_id = ?2 AND state IN ('queued', 'submitted')
) < ?5
ON CONFLICT (guild_id, user_id, day) DO UPDATE SET count = daily_usage.count + excluded.count
RETURNING count
"""

_REFUND = """
UPDATE daily_usage SET count = MAX(0, count - ?)
WHERE guild_id = ? AND user_id = ? AND day = ?
RETURNING count
"""

_GET = "SELECT count FROM daily_usage WHERE guild_id = ? AND user_id = ? AND day = ?"

_PRUNE = "DELETE FROM daily_usage WHERE day < ?"


class UsageRepo(Repo):
    """Reads and writes `daily_usage`; `day` is an ISO date string such as '2024-05-01'."""

    async def increment(self, guild_id: int, user_id: int, day: str, n: int = 1) -> int:
        """Add `n` to the user's count for `day` and return the new count."""
        row = await self._fetch_one(_INCREMENT, (guild_id, user_id, day, n))
        assert row is not None
        return int(row[0])

    async def increment_unless_busy(
        self, guild_id: int, user_id: int, day: str, n: int, *, busy_at: int
    ) -> int | None:
        """Add `n` to the user's count for `day` and return the new count, unless they have
        `busy_at` or more queued and submitted tasks in the guild: then change nothing and
        return None."""
        row = await self._fetch_one(_INCREMENT_UNLESS_BUSY, (guild_id, user_id, day, n, busy_at))
        return int(row[0]) if row else None

    async def refund(self, guild_id: int, user_id: int, day: str, n: int = 1) -> int:
        """Give back `n` counted on `day` (never below zero); return the new count."""
        row = await self._fetch_one(_REFUND, (n, guild_id, user_id, day))
        return int(row[0]) if row else 0

    async def get(self, guild_id: int, user_id: int, day: str) -> int:
        """Return the user's count for `day` (0 when nothing was counted)."""
        row = await self._fetch_one(_GET, (guild_id, user_id, day))
        return int(row[0]) if row else 0

    async def prune(self, before_day: str) -> int:
        """Delete the counters of days before `before_day`; return how many were removed."""
        return await self._db.execute(_PRUNE, (before_day,))
