"""Training datasets created at the service, remembered per guild."""

from __future__ import annotations

from dataclasses import dataclass

from bot.store.base import Repo, build
from bot.store.database import Row


@dataclass(frozen=True, slots=True)
class Dataset:
    """A dataset at the service (`dataset_id` is the service's id)."""

    guild_id: int
    dataset_id: str
    name: str
    image_count: int
    created_by: int | None
    created_at: float


_ADD = """
INSERT INTO datasets (guild_id, dataset_id, name, image_count, created_by, created_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (guild_id, dataset_id) DO UPDATE SET
    name = excluded.name,
    image_count = excluded.image_count
RETURNING *
"""

_GET = "SELECT * FROM datasets WHERE guild_id = ? AND dataset_id = ?"
_LIST = "SELECT * FROM datasets WHERE guild_id = ? ORDER BY id"
_DELETE = "DELETE FROM datasets WHERE guild_id = ? AND dataset_id = ? RETURNING id"


def _dataset(row: Row) -> Dataset:
    return build(Dataset, row, dataset_id=str(row["dataset_id"]))


class DatasetRepo(Repo):
    """Reads and writes `datasets`."""

    async def add(
        self,
        *,
        guild_id: int,
        dataset_id: str,
        name: str,
        image_count: int,
        created_by: int | None = None,
    ) -> Dataset:
        """Remember a dataset (re-adding one updates its name and image count)."""
        params = (guild_id, str(dataset_id), name, image_count, created_by, self._clock())
        row = await self._fetch_one(_ADD, params)
        assert row is not None
        return _dataset(row)

    async def get(self, guild_id: int, dataset_id: str) -> Dataset | None:
        """Return the guild's dataset with that service id, or None."""
        row = await self._fetch_one(_GET, (guild_id, str(dataset_id)))
        return _dataset(row) if row else None

    async def for_guild(self, guild_id: int) -> list[Dataset]:
        """Return the guild's datasets, oldest first."""
        return [_dataset(row) for row in await self._fetch_all(_LIST, (guild_id,))]

    async def delete(self, guild_id: int, dataset_id: str) -> bool:
        """Forget a dataset; True when it was known."""
        return await self._fetch_one(_DELETE, (guild_id, str(dataset_id))) is not None
