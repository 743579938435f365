"""Model training jobs: uploads, dataset creation, submission and progress."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.store.base import Repo, build, dump_list, load_list
from bot.store.database import Row

log = logging.getLogger(__name__)


class TrainingState(StrEnum):
    """Lifecycle of a training job."""

    UPLOADING = "uploading"
    CREATING_DATASET = "creating_dataset"
    SUBMITTING = "submitting"
    TRAINING = "training"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED_TRAINING_STATES = (TrainingState.DONE, TrainingState.FAILED, TrainingState.CANCELLED)


@dataclass(frozen=True, slots=True)
class Training:
    """One training job as persisted."""

    id: int
    guild_id: int
    channel_id: int
    user_id: int
    name: str
    description: str
    main_body: str
    base_model: str
    trigger_word: str
    nsfw: bool
    state: TrainingState
    uploaded_urls: tuple[str, ...]
    pending_images: tuple[str, ...]
    dataset_ids: tuple[str, ...]
    service_task_id: str | None
    progress: float
    model_name: str | None
    progress_message_id: int | None
    error: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    last_progress_at: float | None
    account_id: int | None  # the accounts row it runs on from start to end; None: demo account

    @property
    def active(self) -> bool:
        """True until the job is done, failed or cancelled."""
        return self.state not in FINISHED_TRAINING_STATES


def _training(row: Row) -> Training:
    return build(
        Training,
        row,
        nsfw=bool(row["nsfw"]),
        state=TrainingState(row["state"]),
        uploaded_urls=tuple(load_list(row["uploaded_urls"])),
        pending_images=tuple(load_list(row["pending_images"])),
        dataset_ids=tuple(str(x) for x in load_list(row["dataset_ids"])),
    )


def _plain(value: Any) -> Any:
    return value


def _strings(values: Iterable[Any]) -> str:
    return dump_list(str(v) for v in values)


# Columns `update` and `set_state` may write, with the encoder of each value.
_ENCODERS: dict[str, Callable[[Any], Any]] = {
    "name": _plain,
    "description": _plain,
    "main_body": _plain,
    "base_model": _plain,
    "trigger_word": _plain,
    "nsfw": lambda v: int(bool(v)),
    "uploaded_urls": _strings,
    "pending_images": _strings,
    "dataset_ids": _strings,
    "service_task_id": lambda v: None if v is None else str(v),
    "progress": float,
    "model_name": _plain,
    "progress_message_id": _plain,
    "error": _plain,
    "last_progress_at": _plain,
}

UPDATABLE_TRAINING_FIELDS: frozenset[str] = frozenset(_ENCODERS)

_INSERT = """
INSERT INTO trainings (guild_id, channel_id, user_id, name, description, main_body, base_model,
                       trigger_word, nsfw, pending_images, account_id, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
RETURNING *
"""

_GET = "SELECT * FROM trainings WHERE id = ?"
_GET_IN_GUILD = "SELECT * FROM trainings WHERE id = ? AND guild_id = ?"

_LIST_ACTIVE = """
SELECT * FROM trainings WHERE state NOT IN ('done', 'failed', 'cancelled') AND {scope}
ORDER BY id
"""

_COUNT_ACTIVE = """
SELECT COUNT(*) FROM trainings WHERE guild_id = ? AND state NOT IN ('done', 'failed', 'cancelled')
"""

_RECENT = "SELECT * FROM trainings WHERE guild_id = ? ORDER BY id DESC LIMIT ?"


def _assignments(fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    unknown = set(fields) - UPDATABLE_TRAINING_FIELDS
    if unknown:
        raise ValueError(f"cannot update training fields: {', '.join(sorted(unknown))}")
    names = sorted(fields)
    # Column names come from the _ENCODERS whitelist only; values are bound parameters.
    return [f"{n} = ?" for n in names], [_ENCODERS[n](fields[n]) for n in names]


class TrainingRepo(Repo):
    """Reads and writes `trainings`."""

    async def create(
        self,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        name: str,
        main_body: str,
        base_model: str,
        trigger_word: str,
        description: str = "",
        nsfw: bool = False,
        pending_images: Iterable[str] = (),
        account_id: int | None = None,
    ) -> Training:
        """Persist a new training job in state 'uploading', on the given account."""
        now = self._clock()
        params = (
            guild_id,
            channel_id,
            user_id,
            name,
            description,
            main_body,
            base_model,
            trigger_word,
            int(nsfw),
            _strings(pending_images),
            account_id,
            now,
            now,
        )
        row = await self._fetch_one(_INSERT, params)
        assert row is not None
        return _training(row)

    async def get(self, training_id: int) -> Training | None:
        """Return the training job, or None."""
        row = await self._fetch_one(_GET, (training_id,))
        return _training(row) if row else None

    async def get_in_guild(self, guild_id: int, training_id: int) -> Training | None:
        """Return the training job only if it belongs to the guild."""
        row = await self._fetch_one(_GET_IN_GUILD, (training_id, guild_id))
        return _training(row) if row else None

    async def update(self, training_id: int, **fields: Any) -> Training | None:
        """Write the given (whitelisted) fields without touching the state."""
        sets, values = _assignments(fields)
        sets.append("updated_at = ?")
        sql = f"UPDATE trainings SET {', '.join(sets)} WHERE id = ? RETURNING *"  # noqa: S608
        row = await self._fetch_one(sql, (*values, self._clock(), training_id))
        return _training(row) if row else None

    async def set_state(
        self,
        training_id: int,
        new_state: str,
        from_states: Iterable[str],
        **fields: Any,
    ) -> Training | None:
        """Move to `new_state` only from one of `from_states`, writing `fields` with it.

        Returns None (and changes nothing) when the job is in any other state.
        """
        new_state = TrainingState(new_state)
        allowed = [TrainingState(s).value for s in from_states]
        if not allowed:
            return None
        sets, values = _assignments(fields)
        now = self._clock()
        sets += ["state = ?", "updated_at = ?"]
        values += [new_state.value, now]
        if new_state in FINISHED_TRAINING_STATES:
            sets.append("finished_at = ?")
            values.append(now)
        marks = ", ".join("?" * len(allowed))
        sql = (
            f"UPDATE trainings SET {', '.join(sets)} "  # noqa: S608
            f"WHERE id = ? AND state IN ({marks}) RETURNING *"
        )
        row = await self._fetch_one(sql, (*values, training_id, *allowed))
        if row is None:
            log.debug("Training %s not moved to %s: not in %s", training_id, new_state, allowed)
            return None
        return _training(row)

    async def list_active(self) -> list[Training]:
        """Return this process's jobs (its shards' guilds) not yet done, failed or cancelled,
        oldest first."""
        scope, params = self._scope.where()
        rows = await self._fetch_all(_LIST_ACTIVE.format(scope=scope), params)
        return [_training(row) for row in rows]

    async def count_active(self, guild_id: int) -> int:
        """Count the guild's unfinished training jobs."""
        row = await self._fetch_one(_COUNT_ACTIVE, (guild_id,))
        return int(row[0]) if row else 0

    async def recent(self, guild_id: int, limit: int = 10) -> list[Training]:
        """Return the guild's latest training jobs, newest first."""
        return [_training(row) for row in await self._fetch_all(_RECENT, (guild_id, limit))]
