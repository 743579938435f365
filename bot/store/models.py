"""Models trained by a guild, usable for generation under the service's model name."""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.store.base import Clock, Repo, build
from bot.store.database import Database, Row
from bot.store.guild_cache import GuildCache
from bot.store.shards import EVERYTHING, ShardScope


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """A guild's trained model; `model_name` is what the service calls it."""

    guild_id: int
    model_name: str
    display_name: str
    trigger_word: str
    trained_by: int | None
    training_id: int | None
    created_at: float


_ADD = """
INSERT INTO trained_models (guild_id, model_name, display_name, trigger_word, trained_by,
                            training_id, created_at)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (guild_id, model_name) DO UPDATE SET
    display_name = excluded.display_name,
    trigger_word = excluded.trigger_word,
    trained_by = excluded.trained_by,
    training_id = excluded.training_id
RETURNING *
"""

_GET = "SELECT * FROM trained_models WHERE guild_id = ? AND model_name = ?"
_LIST = "SELECT * FROM trained_models WHERE guild_id = ? ORDER BY id"
_RENAME = """
UPDATE trained_models SET display_name = ? WHERE guild_id = ? AND model_name = ? RETURNING *
"""
_DELETE = "DELETE FROM trained_models WHERE guild_id = ? AND model_name = ? RETURNING id"


def _model(row: Row) -> TrainedModel:
    return build(TrainedModel, row)


class ModelRepo(Repo):
    """Reads and writes `trained_models`.

    Every generation command checks its model against the guild's list, so the lists are
    kept in memory: a guild's commands and trainings run in the process serving its
    shard, and every change goes through this repository, which drops the guild's copy.
    """

    def __init__(
        self, db: Database, clock: Clock = time.time, scope: ShardScope = EVERYTHING
    ) -> None:
        super().__init__(db, clock, scope)
        self._lists: GuildCache[tuple[TrainedModel, ...]] = GuildCache()

    async def add(
        self,
        *,
        guild_id: int,
        model_name: str,
        display_name: str | None = None,
        trigger_word: str = "",
        trained_by: int | None = None,
        training_id: int | None = None,
    ) -> TrainedModel:
        """Remember a trained model (re-adding one updates it); display name defaults to it."""
        params = (
            guild_id,
            model_name,
            display_name or model_name,
            trigger_word,
            trained_by,
            training_id,
            self._clock(),
        )
        with self._lists.changing(guild_id):
            row = await self._fetch_one(_ADD, params)
        assert row is not None
        return _model(row)

    async def get(self, guild_id: int, model_name: str) -> TrainedModel | None:
        """Return the guild's model with that service name, or None."""
        row = await self._fetch_one(_GET, (guild_id, model_name))
        return _model(row) if row else None

    async def for_guild(self, guild_id: int) -> list[TrainedModel]:
        """Return the guild's trained models, oldest first."""
        cached = self._lists.get(guild_id)
        if cached is not None:
            return list(cached)
        began = self._lists.read_began()
        models = tuple(_model(row) for row in await self._fetch_all(_LIST, (guild_id,)))
        self._lists.keep_read(guild_id, models, began)
        return list(models)

    async def rename(
        self, guild_id: int, model_name: str, display_name: str
    ) -> TrainedModel | None:
        """Change the name shown to users; None when the model is unknown."""
        with self._lists.changing(guild_id):
            row = await self._fetch_one(_RENAME, (display_name, guild_id, model_name))
        return _model(row) if row else None

    async def delete(self, guild_id: int, model_name: str) -> bool:
        """Forget a trained model; True when it was known."""
        with self._lists.changing(guild_id):
            return await self._fetch_one(_DELETE, (guild_id, model_name)) is not None
