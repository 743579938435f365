"""Shared plumbing of the repositories: query helpers and row-to-dataclass mapping."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

import aiosqlite

from bot.store.errors import unavailable

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")
Clock = Callable[[], float]


def build(cls: type[T], row: aiosqlite.Row, **overrides: Any) -> T:
    """Build dataclass `cls` from the row's columns of the same names, with overrides."""
    values = {
        f.name: overrides[f.name] if f.name in overrides else row[f.name] for f in fields(cls)
    }
    return cls(**values)


def dump_list(values: Iterable[Any]) -> str:
    """Encode a list-like value for a JSON TEXT column."""
    return json.dumps(list(values), ensure_ascii=False)


def load_list(text: str | None) -> list[Any]:
    """Decode a JSON TEXT column holding a list (NULL reads as empty)."""
    return list(json.loads(text)) if text else []


class Repo:
    """Base of the repositories: one shared autocommit connection and a clock."""

    def __init__(self, conn: aiosqlite.Connection, clock: Clock = time.time) -> None:
        self._conn = conn
        self._clock = clock

    async def _fetch_one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        # execute_fetchall runs statement and fetch in one hop on the db thread, so an
        # INSERT/UPDATE ... RETURNING completes before any other coroutine's statement.
        rows = await self._fetch_all(sql, params)
        return rows[0] if rows else None

    async def _fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        try:
            return list(await self._conn.execute_fetchall(sql, tuple(params)))
        except sqlite3.Error as exc:
            # A full disk, a read-only file or a lock held too long: a typed, retryable error.
            if (typed := unavailable(exc)) is not None:
                raise typed from exc
            raise
