"""The statements the bot runs for every command and every poll, named for their query plans.

What grows with the number of pending tasks must be found through an index, never by
reading every task: `python -m bench --scale` prints each one's `EXPLAIN QUERY PLAN`
(SQLite) and tests/test_hot_queries.py holds them to it. The dispatcher's pick and the
poller's due tasks need no query at all: they are in memory (bot/jobs/queue.py,
bot/jobs/timers.py), read from the store once, at start.
"""

from __future__ import annotations

from typing import Any

from bot.store import accounts, preferences, settings, tasks, usage
from bot.store.database import Database
from bot.store.shards import ShardScope

_GUILD, _USER, _TASK = 10_000, 30_000, 1
_DAY = "2026-01-01"
_SHARD_1_OF_2, _SHARD_1_OF_2_PARAMS = ShardScope.of(2, [1]).where()

# name -> (SQL in the store's dialect, example parameters)
HOT_QUERIES: dict[str, tuple[str, tuple[Any, ...]]] = {
    "admission: a member's unfinished tasks": (tasks._COUNT_ACTIVE, (_GUILD, _USER)),
    "per-guild count of unfinished tasks": (tasks._COUNT_ACTIVE, (_GUILD, None)),
    "admission: daily quota": (usage._INCREMENT, (_GUILD, _USER, _DAY, 1)),
    "admission: a member's line and daily quota": (
        usage._INCREMENT_UNLESS_BUSY,
        (_GUILD, _USER, _DAY, 1, 4),
    ),
    "command: guild settings": (settings._GET, (_GUILD,)),
    "command: member preferences": (preferences._GET, (_GUILD, _USER)),
    "command: guild account": (accounts._GET, (_GUILD,)),
    "task by id": (tasks._GET, (_TASK,)),
    "dispatch: mark submitted": (tasks._MARK_SUBMITTED, ("svc", 1, 0.0, 0.0, _TASK)),
    "status message id": (tasks._SET_STATUS_MESSAGE, (1, 0.0, _TASK)),
    "poll: record progress": (tasks._RECORD_PROGRESS, (3, 0.0, 0.0, _TASK)),
    "poll: mark done": (tasks._MARK_DONE, ("[]", 1, 0.0, 0.0, _TASK)),
    "poll: mark failed": (tasks._MARK_FAILED, ("e", "", 0.0, 0.0, _TASK)),
    # As one process of a bot sharded two ways runs them (all shards: no condition).
    "start: reload by state": (
        f"SELECT * FROM tasks WHERE state IN (?) AND {_SHARD_1_OF_2} ORDER BY id",  # noqa: S608
        ("submitted", *_SHARD_1_OF_2_PARAMS),
    ),
    "account: work still running on it": (accounts._RUNNING_TASKS, (_GUILD, 1)),
    "housekeeping: retired accounts to delete": (
        accounts._PRUNE.format(scope=_SHARD_1_OF_2),
        ("[]", *_SHARD_1_OF_2_PARAMS),
    ),
    "housekeeping: finished tasks to prune": (
        tasks._PRUNABLE.format(scope=_SHARD_1_OF_2),
        (0.0, *_SHARD_1_OF_2_PARAMS, 500),
    ),
}


async def query_plan(db: Database, sql: str, params: tuple[Any, ...]) -> list[str]:
    """SQLite's `EXPLAIN QUERY PLAN` of a statement: one line per step."""
    rows = await db.fetch_all(f"EXPLAIN QUERY PLAN {sql}", params)
    return [str(row[3]) for row in rows]


def reads_without_index(plan: list[str]) -> list[str]:
    """The steps of a plan that read a whole table or a whole index (a SCAN), rather than
    searching one (a SCAN of a constant row or of a table-valued function is fine)."""
    return [
        step
        for step in plan
        if step.startswith("SCAN ")
        and not any(fine in step for fine in ("CONSTANT ROW", "VIRTUAL TABLE", "json_each"))
    ]
