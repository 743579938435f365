"""Generation tasks and their guarded state machine.

Every transition is a single `UPDATE ... WHERE id = ? AND state IN (...)`: a transition
from the wrong state changes nothing and returns None (or False), which is what makes
submission, completion and delivery happen exactly once even with concurrent workers or
restarts. Only the updates whose callers use the task return it: building one costs more
than the statement, so the others return whether they applied.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.store.base import Repo, build, load_list
from bot.store.database import Row

log = logging.getLogger(__name__)


class TaskState(StrEnum):
    """Lifecycle of a generation task."""

    QUEUED = "queued"
    SUBMITTED = "submitted"
    DONE = "done"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_TASK_STATES = (TaskState.QUEUED, TaskState.SUBMITTED)
# States no task leaves on its own: such a task may be deleted once it is old enough.
FINISHED_TASK_STATES = (TaskState.DELIVERED, TaskState.FAILED, TaskState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Task:
    """One generation request as persisted; `id` is the task number shown to users."""

    id: int
    guild_id: int
    channel_id: int
    user_id: int
    interaction_id: int | None
    status_message_id: int | None
    result_message_id: int | None
    parent_id: int | None
    kind: str
    model: str
    prompt: str
    negative_prompt: str
    count: int
    scale: int
    seed: int
    size: str
    init_image_url: str | None
    state: TaskState
    service_task_id: str | None
    seed_used: int | None
    wait_time: int | None
    images: tuple[dict[str, Any], ...]
    error: str | None
    error_detail: str | None
    locale: str | None
    created_at: float
    queued_at: float
    submitted_at: float | None
    done_at: float | None
    delivered_at: float | None
    failed_at: float | None
    updated_at: float
    next_poll_at: float | None
    poll_count: int
    attempts: int
    account_id: int | None  # the accounts row it was submitted with; None: the demo account
    origin: str | None  # 'rerun' or 'remix' of `parent_id`; None for a task from a command
    style: str | None  # the server style's name when the task was made
    member_prompt: str | None  # the member's own words when a style wrapped them
    # 'channel' or 'dm': where the result goes; once delivered, where it IS (a refused
    # place falls back to the other one).
    delivery: str
    removed_by: int | None  # the moderator who deleted the result: never posted again

    @property
    def active(self) -> bool:
        """True while the task is queued or running at the service."""
        return self.state in ACTIVE_TASK_STATES


def _task(row: Row) -> Task:
    return build(
        Task,
        row,
        state=TaskState(row["state"]),
        images=tuple(load_list(row["result_json"])),
    )


_INSERT = """
INSERT INTO tasks (guild_id, channel_id, user_id, interaction_id, parent_id, kind, model,
                   prompt, negative_prompt, count, scale, seed, size, init_image_url, locale,
                   origin, style, member_prompt, delivery, created_at, queued_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING *
"""

_GET = "SELECT * FROM tasks WHERE id = ?"
_GET_IN_GUILD = "SELECT * FROM tasks WHERE id = ? AND guild_id = ?"

_MARK_SUBMITTED = """
UPDATE tasks
SET state = 'submitted', service_task_id = ?, account_id = ?, submitted_at = ?, updated_at = ?,
    wait_time = NULL, next_poll_at = NULL, poll_count = 0
WHERE id = ? AND state = 'queued'
RETURNING *
"""

_RECORD_PROGRESS = """
UPDATE tasks
SET wait_time = ?, next_poll_at = ?, poll_count = poll_count + 1, updated_at = ?
WHERE id = ? AND state = 'submitted'
RETURNING *
"""

_MARK_DONE = """
UPDATE tasks
SET state = 'done', result_json = ?, seed_used = ?, done_at = ?, updated_at = ?,
    wait_time = NULL, next_poll_at = NULL
WHERE id = ? AND state = 'submitted'
RETURNING *
"""

_MARK_DELIVERED = """
UPDATE tasks
SET state = 'delivered', result_message_id = ?, delivery = COALESCE(?, delivery),
    delivered_at = ?, updated_at = ?
WHERE id = ? AND state = 'done'
RETURNING id
"""

_MARK_FAILED = """
UPDATE tasks
SET state = 'failed', error = ?, error_detail = ?, failed_at = ?, updated_at = ?,
    next_poll_at = NULL
WHERE id = ? AND state IN ('queued', 'submitted', 'done')
RETURNING *
"""

_MARK_CANCELLED = """
UPDATE tasks
SET state = 'cancelled', updated_at = ?, next_poll_at = NULL
WHERE id = ? AND state IN ('queued', 'submitted')
RETURNING *
"""

_REQUEUE = """
UPDATE tasks
SET state = 'queued', service_task_id = NULL, account_id = NULL, submitted_at = NULL,
    wait_time = NULL,
    next_poll_at = ?, poll_count = 0, attempts = attempts + 1, updated_at = ?
WHERE id = ? AND state IN ('queued', 'submitted')
RETURNING *
"""

# The statements below return only the id: their callers need to know whether they applied,
# not the whole task (building a Task costs more than the statement itself).
_SET_STATUS_MESSAGE = """
UPDATE tasks SET status_message_id = ?, updated_at = ? WHERE id = ? RETURNING id
"""

_MARK_REMOVED = """
UPDATE tasks SET removed_by = ?, updated_at = ? WHERE id = ? AND state = 'delivered'
RETURNING id
"""

_SET_RESULT_MESSAGE = """
UPDATE tasks SET result_message_id = ?, delivery = COALESCE(?, delivery), updated_at = ?
WHERE id = ? AND state = 'delivered'
RETURNING id
"""


_COUNT_ACTIVE = """
SELECT COUNT(*) FROM tasks
WHERE guild_id = ?1 AND state IN ('queued', 'submitted')
  AND (CAST(?2 AS BIGINT) IS NULL OR user_id = ?2)
"""

_RECENT = """
SELECT * FROM tasks WHERE guild_id = ?1 AND (CAST(?2 AS BIGINT) IS NULL OR user_id = ?2)
ORDER BY id DESC LIMIT ?3
"""

_BY_RESULT_MESSAGE = "SELECT * FROM tasks WHERE guild_id = ? AND result_message_id = ?"


_PRUNABLE = """
SELECT id, guild_id FROM tasks
WHERE state IN ('delivered', 'failed', 'cancelled') AND updated_at < ? AND {scope}
ORDER BY id LIMIT ?
"""

_RAISE_PRUNED_MARK = """
INSERT INTO pruned_tasks (guild_id, pruned_through) VALUES (?, ?)
ON CONFLICT (guild_id)
DO UPDATE SET pruned_through = MAX(pruned_tasks.pruned_through, excluded.pruned_through)
"""

# The state and age are checked again: only a row that is still finished and old goes.
_DELETE_PRUNABLE = """
DELETE FROM tasks
WHERE id IN (SELECT value FROM json_each(?))
  AND state IN ('delivered', 'failed', 'cancelled') AND updated_at < ?
"""

_PRUNED_THROUGH = "SELECT pruned_through FROM pruned_tasks WHERE guild_id = ?"


class TaskRepo(Repo):
    """Reads and writes `tasks`; each method persists immediately."""

    async def create(
        self,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        kind: str,
        model: str,
        prompt: str,
        count: int,
        scale: int,
        size: str,
        negative_prompt: str = "",
        seed: int = -1,
        init_image_url: str | None = None,
        interaction_id: int | None = None,
        parent_id: int | None = None,
        locale: str | None = None,
        origin: str | None = None,
        style: str | None = None,
        member_prompt: str | None = None,
        delivery: str = "channel",
    ) -> Task:
        """Persist a new task in state 'queued' and return it with its id."""
        now = self._clock()
        params = (
            guild_id,
            channel_id,
            user_id,
            interaction_id,
            parent_id,
            kind,
            model,
            prompt,
            negative_prompt,
            count,
            scale,
            seed,
            size,
            init_image_url,
            locale,
            origin,
            style,
            member_prompt,
            delivery,
            now,
            now,
            now,
        )
        row = await self._fetch_one(_INSERT, params)
        assert row is not None
        return _task(row)

    async def get(self, task_id: int) -> Task | None:
        """Return the task, or None."""
        row = await self._fetch_one(_GET, (task_id,))
        return _task(row) if row else None

    async def get_in_guild(self, guild_id: int, task_id: int) -> Task | None:
        """Return the task only if it belongs to the guild."""
        row = await self._fetch_one(_GET_IN_GUILD, (task_id, guild_id))
        return _task(row) if row else None

    async def get_by_result_message(self, guild_id: int, message_id: int) -> Task | None:
        """Return the guild's task whose result was posted as `message_id`, or None."""
        row = await self._fetch_one(_BY_RESULT_MESSAGE, (guild_id, message_id))
        return _task(row) if row else None

    async def mark_submitted(
        self, task_id: int, service_task_id: str, account_id: int | None = None
    ) -> Task | None:
        """queued -> submitted, recording the service's task id and the account it runs on."""
        now = self._clock()
        params = (str(service_task_id), account_id, now, now, task_id)
        return await self._transition(_MARK_SUBMITTED, params)

    async def record_progress(
        self, task_id: int, wait_time: int | None, next_poll_at: float | None
    ) -> Task | None:
        """Record a poll of a submitted task: its queue position and when to poll next."""
        return await self._transition(
            _RECORD_PROGRESS, (wait_time, next_poll_at, self._clock(), task_id)
        )

    async def mark_done(
        self, task_id: int, images: Iterable[dict[str, Any]], seed_used: int | None
    ) -> Task | None:
        """submitted -> done, storing the result images and the seed actually used."""
        now = self._clock()
        result = json.dumps(list(images), ensure_ascii=False)
        return await self._transition(_MARK_DONE, (result, seed_used, now, now, task_id))

    async def mark_delivered(
        self, task_id: int, result_message_id: int, place: str | None = None
    ) -> bool:
        """done -> delivered, recording the message that carries the result and its place
        ('channel' or 'dm'; None: the place asked for); False when the task was not done."""
        now = self._clock()
        return await self._applied(_MARK_DELIVERED, (result_message_id, place, now, now, task_id))

    async def mark_failed(self, task_id: int, error: str, detail: str = "") -> Task | None:
        """queued/submitted/done -> failed with a reason code and a detail text."""
        now = self._clock()
        return await self._transition(_MARK_FAILED, (error, detail, now, now, task_id))

    async def mark_cancelled(self, task_id: int) -> Task | None:
        """queued/submitted -> cancelled."""
        return await self._transition(_MARK_CANCELLED, (self._clock(), task_id))

    async def requeue(self, task_id: int, *, not_before: float | None = None) -> Task | None:
        """queued/submitted -> queued (e.g. after 603), counting the attempt.

        `not_before` is stored in `next_poll_at` as the earliest time to submit again.
        """
        return await self._transition(_REQUEUE, (not_before, self._clock(), task_id))

    async def set_status_message(self, task_id: int, message_id: int) -> bool:
        """Remember the progress message of the task; False when there is no such task."""
        return await self._applied(_SET_STATUS_MESSAGE, (message_id, self._clock(), task_id))

    async def set_result_message(
        self, task_id: int, message_id: int, place: str | None = None
    ) -> bool:
        """Record where a delivered task's result was posted again (None: the same place);
        False when the task is not (or no longer) delivered."""
        return await self._applied(_SET_RESULT_MESSAGE, (message_id, place, self._clock(), task_id))

    async def mark_removed(self, task_id: int, moderator_id: int) -> bool:
        """Remember that a moderator deleted a delivered task's result, so it stays gone;
        False when the task is not delivered."""
        return await self._applied(_MARK_REMOVED, (moderator_id, self._clock(), task_id))

    async def list_by_state(self, *states: str) -> list[Task]:
        """Return this process's tasks (its shards' guilds) in any of the given states,
        oldest first."""
        if not states:
            return []
        marks = ", ".join("?" * len(states))
        scope, scope_params = self._scope.where()
        sql = f"SELECT * FROM tasks WHERE state IN ({marks}) AND {scope} ORDER BY id"  # noqa: S608
        return [_task(row) for row in await self._fetch_all(sql, (*states, *scope_params))]

    async def count_active(self, guild_id: int, user_id: int | None = None) -> int:
        """Count queued and submitted tasks of the guild (or of one user in it)."""
        row = await self._fetch_one(_COUNT_ACTIVE, (guild_id, user_id))
        return int(row[0]) if row else 0

    async def recent(
        self, guild_id: int, user_id: int | None = None, limit: int = 10
    ) -> list[Task]:
        """Return the guild's (or user's) latest tasks, newest first."""
        rows = await self._fetch_all(_RECENT, (guild_id, user_id, limit))
        return [_task(row) for row in rows]

    async def prune_finished(self, before: float, *, batch: int = 500) -> int:
        """Delete this process's finished tasks last changed before `before` (epoch); return
        how many.

        Works in batches so other statements run in between. Each guild's pruning mark is
        raised before its rows go, so a task missing below the mark was pruned, not unknown.
        """
        removed = 0
        scope, scope_params = self._scope.where()
        prunable = _PRUNABLE.format(scope=scope)
        while True:
            rows = await self._fetch_all(prunable, (before, *scope_params, batch))
            if not rows:
                return removed
            marks: dict[int, int] = {}
            for task_id, guild_id in rows:
                marks[guild_id] = max(marks.get(guild_id, 0), task_id)
            await self._db.execute_many(_RAISE_PRUNED_MARK, list(marks.items()))
            ids = json.dumps([task_id for task_id, _ in rows])
            removed += await self._db.execute(_DELETE_PRUNABLE, (ids, before))
            if len(rows) < batch:
                return removed

    async def was_pruned(self, guild_id: int, task_id: int) -> bool:
        """True when the guild's task `task_id` may have been deleted as too old."""
        row = await self._fetch_one(_PRUNED_THROUGH, (guild_id,))
        return row is not None and task_id <= int(row[0])

    async def _transition(self, sql: str, params: tuple[Any, ...]) -> Task | None:
        row = await self._fetch_one(sql, params)
        if row is None:
            log.debug("Task update skipped (id %s absent or in another state)", params[-1])
            return None
        return _task(row)

    async def _applied(self, sql: str, params: tuple[Any, ...]) -> bool:
        """Run an update that returns the id only; whether it changed the task."""
        if await self._fetch_one(sql, params) is None:
            log.debug("Task update skipped (id %s absent or in another state)", params[-1])
            return False
        return True
