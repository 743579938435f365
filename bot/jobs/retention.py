"""What the store keeps: finished tasks for `retention_days`, usage counters while they count."""

from __future__ import annotations

from dataclasses import dataclass

from bot.jobs.admission import utc_day
from bot.store import Store

DAY = 86_400.0
LONGEST_INTERVAL = 3_600.0


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one pass removed."""

    tasks: int
    usage_rows: int


def prune_interval(retention_days: float) -> float:
    """How often to prune: hourly, or ten times per retention period when that is shorter."""
    return min(LONGEST_INTERVAL, retention_days * DAY / 10)


async def prune(store: Store, *, retention_days: float, now: float) -> Pruned:
    """Delete finished tasks older than the retention, and usage counters no longer needed.

    A quota counts today's images; yesterday's row is kept too, so a task submitted before
    midnight and failing after it still gives its images back to a row that exists.
    """
    tasks = await store.tasks.prune_finished(now - retention_days * DAY)
    usage_rows = await store.usage.prune(utc_day(now - DAY))
    return Pruned(tasks, usage_rows)
