"""The bot's database as the benchmark sees it: where each scenario's bot keeps its state
(a SQLite file, or a fresh database on an embedded PostgreSQL) and the reads of its tasks,
the same on either backend."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import asyncpg

from bench.postgres import EmbeddedPostgres

BACKENDS = ("sqlite", "postgresql")
TASK_COLUMNS = (
    "id, guild_id, state, service_task_id, result_message_id, channel_id, error, size, count,"
    " poll_count"
)
FINISHED = ("delivered", "failed")


class BenchStorage:
    """The backend the benchmarked bot runs on, for the whole run."""

    def __init__(self, backend: str = "sqlite") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown storage {backend!r}: one of {', '.join(BACKENDS)}")
        self.backend = backend
        self._postgres = EmbeddedPostgres() if backend == "postgresql" else None

    async def __aenter__(self) -> BenchStorage:
        if self._postgres is not None:
            await self._postgres.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._postgres is not None:
            await self._postgres.stop()

    async def fresh(self, cwd: Path) -> str:
        """An empty database for one bot run: `storage.url` for PostgreSQL, else the
        `storage.path` of a SQLite file in the scenario's directory."""
        if self._postgres is not None:
            return await self._postgres.create()
        return str(cwd / "bot.sqlite3")

    def server_cpu_seconds(self) -> float:
        """CPU time of the database server so far (SQLite runs inside the bot: 0)."""
        return self._postgres.cpu_seconds() if self._postgres is not None else 0.0

    def describe(self) -> dict[str, str]:
        """What the report records: the backend, and the server's version."""
        if self._postgres is not None:
            return {"backend": self.backend, "version": self._postgres.version}
        return {"backend": self.backend, "version": sqlite3.sqlite_version}


def is_url(target: str) -> bool:
    return target.startswith(("postgresql://", "postgres://"))


async def read_tasks(target: str) -> list[dict[str, Any]]:
    """Every task of the bot's database (a SQLite path or a PostgreSQL URL), as dicts."""
    query = f"SELECT {TASK_COLUMNS} FROM tasks"
    if is_url(target):
        conn = await asyncpg.connect(target)
        try:
            return [dict(row) for row in await conn.fetch(query)]
        finally:
            await conn.close()
    return await asyncio.to_thread(_read_sqlite, Path(target), query)


def _read_sqlite(db: Path, query: str) -> list[dict[str, Any]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(query).fetchall()]


async def wait_finished(target: str, n: int, timeout: float) -> list[dict[str, Any]]:
    """The tasks, once at least `n` exist and every one is delivered or failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await read_tasks(target)
        if len(rows) >= n and all(r["state"] in FINISHED for r in rows):
            return rows
        await asyncio.sleep(0.5)
    raise RuntimeError("tasks did not finish in time")
