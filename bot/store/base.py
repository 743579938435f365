"""Shared plumbing of the repositories: query helpers and row-to-dataclass mapping."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from bot.store.database import Database, Row
from bot.store.shards import EVERYTHING, ShardScope

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
Clock = Callable[[], float]


@functools.cache
def field_names(cls: type[DataclassInstance]) -> tuple[str, ...]:
    """The names of dataclass `cls`'s fields, looked up once per class."""
    return tuple(f.name for f in fields(cls))


def build(cls: type[T], row: Row, **overrides: Any) -> T:
    """Build dataclass `cls` from the row's columns of the same names, with overrides."""
    # One pass over the row: sqlite3.Row finds a column by name by comparing it with every
    # column name in turn, which for a 40-column task costs more than building the task.
    columns = dict(zip(row.keys(), row, strict=True))
    columns.update(overrides)
    return cls(**{name: columns[name] for name in field_names(cls)})


def dump_list(values: Iterable[Any]) -> str:
    """Encode a list-like value for a JSON TEXT column."""
    return json.dumps(list(values), ensure_ascii=False)


def load_list(text: str | None) -> list[Any]:
    """Decode a JSON TEXT column holding a list (NULL reads as empty)."""
    return list(json.loads(text)) if text else []


class Repo:
    """Base of the repositories: the shared database connection, a clock, and the shards
    whose guilds this process serves (what "all unfinished work" means to it)."""

    def __init__(
        self, db: Database, clock: Clock = time.time, scope: ShardScope = EVERYTHING
    ) -> None:
        self._db = db
        self._clock = clock
        self._scope = scope

    async def _fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        return await self._db.fetch_one(sql, params)

    async def _fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        return await self._db.fetch_all(sql, params)
