"""A guild's usage over its last days, read with a few aggregate queries (for `/usage`).

Everything comes from `tasks` and `trainings`: `daily_usage` holds only today's and
yesterday's quota counters. Finished tasks are deleted `storage.retention_days` after their
last change, so a report can see no further back than that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from bot.store.base import Repo

# The reason code both `FailReason` and `TrainingFailReason` store for a 604 "not enough
# points" answer (the store imports neither; a test keeps the three equal).
POINTS_REASON = "not_enough_points"

# The images of a delivered task are those the service returned (the requested count if the
# result was not kept): COALESCE(json_array_length(result_json), count).
# `date(..., 'unixepoch')` is the UTC day.
# The rows these read are found through tasks_guild_state_idx / trainings_guild_idx.
_IMAGES_PER_DAY = """
SELECT date(delivered_at, 'unixepoch') AS day,
       CAST(SUM(COALESCE(json_array_length(result_json), count)) AS BIGINT) AS images,
       COUNT(*) AS tasks
FROM tasks
WHERE guild_id = ?1 AND state = 'delivered' AND delivered_at >= ?2
GROUP BY day
"""

_MEMBERS = """
SELECT COUNT(DISTINCT user_id) AS members
FROM tasks
WHERE guild_id = ?1 AND state = 'delivered' AND delivered_at >= ?2
"""

_TOP_MEMBERS = """
SELECT user_id, CAST(SUM(COALESCE(json_array_length(result_json), count)) AS BIGINT) AS images,
       COUNT(*) AS tasks
FROM tasks
WHERE guild_id = ?1 AND state = 'delivered' AND delivered_at >= ?2
GROUP BY user_id
ORDER BY images DESC, tasks DESC, user_id
LIMIT ?3
"""

_FAILURES = """
SELECT COALESCE(error, '') AS reason, COUNT(*) AS tasks
FROM tasks
WHERE guild_id = ?1 AND state = 'failed' AND failed_at >= ?2
GROUP BY reason
ORDER BY tasks DESC, reason
"""

_TRAININGS = """
SELECT COUNT(CASE WHEN created_at >= ?2 THEN 1 END) AS started,
       COUNT(CASE WHEN state = 'done' AND finished_at >= ?2 THEN 1 END) AS done,
       COUNT(CASE WHEN state = 'failed' AND finished_at >= ?2 THEN 1 END) AS failed,
       COUNT(CASE WHEN state = 'cancelled' AND finished_at >= ?2 THEN 1 END) AS cancelled
FROM trainings
WHERE guild_id = ?1 AND (created_at >= ?2 OR finished_at >= ?2)
"""

# One row per UTC day on which work failed for lack of points: when it first happened,
# how many tasks and trainings failed so, and (on every row) how many such days there were.
_POINTS_OUTAGES = """
SELECT day, MIN(at) AS first_at, COUNT(CASE WHEN kind = 'task' THEN 1 END) AS tasks,
       COUNT(CASE WHEN kind = 'training' THEN 1 END) AS trainings, COUNT(*) OVER () AS days
FROM (
    SELECT date(failed_at, 'unixepoch') AS day, failed_at AS at, 'task' AS kind
    FROM tasks
    WHERE guild_id = ?1 AND state = 'failed' AND error = ?3 AND failed_at >= ?2
    UNION ALL
    SELECT date(finished_at, 'unixepoch'), finished_at, 'training'
    FROM trainings
    WHERE guild_id = ?1 AND state = 'failed' AND error = ?3 AND finished_at >= ?2
) AS failures
GROUP BY day
ORDER BY day DESC
LIMIT ?4
"""


@dataclass(frozen=True, slots=True)
class DayImages:
    """Images delivered on one UTC day."""

    day: date
    images: int


@dataclass(frozen=True, slots=True)
class MemberImages:
    """Images delivered to one member, and in how many tasks."""

    user_id: int
    images: int
    tasks: int


@dataclass(frozen=True, slots=True)
class FailureCount:
    """Tasks that failed for one reason code ('' when none was stored)."""

    reason: str
    tasks: int


@dataclass(frozen=True, slots=True)
class TrainingCounts:
    """Trainings started in the period, and those that ended in it, by outcome."""

    started: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0


@dataclass(frozen=True, slots=True)
class PointsOutage:
    """A UTC day on which the account ran out of points: first failure, tasks, trainings."""

    day: date
    first_at: float
    tasks: int
    trainings: int


@dataclass(frozen=True, slots=True)
class UsageReport:
    """A guild's usage from `since` (midnight UTC of `days[0].day`) to now."""

    guild_id: int
    since: float
    days: tuple[DayImages, ...]  # every day of the period, oldest first, zero days included
    images: int
    tasks: int  # delivered tasks
    members: int  # members who got images
    top_members: tuple[MemberImages, ...]
    failures: tuple[FailureCount, ...]  # most frequent first
    trainings: TrainingCounts
    points_outages: tuple[PointsOutage, ...]  # latest day first
    points_outage_days: int  # days with an outage, also those beyond `points_outages`

    @property
    def failed_tasks(self) -> int:
        """Tasks that failed in the period, whatever the reason."""
        return sum(failure.tasks for failure in self.failures)

    @property
    def busiest(self) -> int:
        """The most images delivered on one day of the period."""
        return max((day.images for day in self.days), default=0)


def kept_days(days: int, retention_days: float) -> int:
    """How many of the last `days` UTC days (today included) have all their finished tasks
    still kept: those ending before `now - retention_days` may be pruned. At least today."""
    return max(1, min(days, int(retention_days)))


def period_start(days: int, now: float) -> tuple[date, float]:
    """The first UTC day of the `days` days ending today, and its midnight as epoch seconds."""
    first = datetime.fromtimestamp(now, UTC).date() - timedelta(days=days - 1)
    return first, datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()


class UsageReportRepo(Repo):
    """Reads usage figures of a guild; writes nothing."""

    async def report(
        self, guild_id: int, *, days: int, top: int = 10, outages: int = 10
    ) -> UsageReport:
        """The guild's usage over the `days` UTC days ending today (today included)."""
        if days < 1:
            raise ValueError("a report covers at least one day")
        first, since = period_start(days, self._clock())
        key = (guild_id, since)
        per_day = {row["day"]: row for row in await self._fetch_all(_IMAGES_PER_DAY, key)}
        timeline = []
        tasks = 0
        for offset in range(days):
            day = first + timedelta(days=offset)
            row = per_day.get(day.isoformat())
            timeline.append(DayImages(day, int(row["images"]) if row else 0))
            tasks += int(row["tasks"]) if row else 0
        members = await self._fetch_one(_MEMBERS, key)
        assert members is not None
        top_rows = await self._fetch_all(_TOP_MEMBERS, (*key, top))
        failure_rows = await self._fetch_all(_FAILURES, key)
        trainings = await self._fetch_one(_TRAININGS, key)
        assert trainings is not None
        outage_rows = await self._fetch_all(_POINTS_OUTAGES, (*key, POINTS_REASON, outages))
        return UsageReport(
            guild_id=guild_id,
            since=since,
            days=tuple(timeline),
            images=sum(day.images for day in timeline),
            tasks=tasks,
            members=int(members["members"]),
            top_members=tuple(
                MemberImages(int(r["user_id"]), int(r["images"]), int(r["tasks"])) for r in top_rows
            ),
            failures=tuple(FailureCount(r["reason"], int(r["tasks"])) for r in failure_rows),
            trainings=TrainingCounts(
                started=int(trainings["started"]),
                done=int(trainings["done"]),
                failed=int(trainings["failed"]),
                cancelled=int(trainings["cancelled"]),
            ),
            points_outages=tuple(
                PointsOutage(
                    date.fromisoformat(r["day"]),
                    float(r["first_at"]),
                    int(r["tasks"]),
                    int(r["trainings"]),
                )
                for r in outage_rows
            ),
            points_outage_days=int(outage_rows[0]["days"]) if outage_rows else 0,
        )
