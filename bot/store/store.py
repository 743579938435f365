"""The Store: one database connection (SQLite or PostgreSQL), migrations and the repositories."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from bot.store.accounts import AccountRepo
from bot.store.base import Clock
from bot.store.database import Database, describe, is_postgresql, sqlite_path
from bot.store.datasets import DatasetRepo
from bot.store.errors import StoreUnavailable
from bot.store.history import HistoryRepo
from bot.store.migrate import migrate
from bot.store.models import ModelRepo
from bot.store.preferences import PreferencesRepo
from bot.store.settings import SettingsRepo
from bot.store.shards import EVERYTHING, ShardScope
from bot.store.styles import StyleRepo
from bot.store.tasks import TaskRepo
from bot.store.trainings import TrainingRepo
from bot.store.usage import UsageRepo
from bot.store.usage_report import UsageReportRepo

log = logging.getLogger(__name__)


class Store:
    """The bot's persistent state; open it with `await Store.open(path_or_url)`."""

    def __init__(
        self, db: Database, clock: Clock = time.time, scope: ShardScope = EVERYTHING
    ) -> None:
        self.db = db
        self.scope = scope
        self.accounts = AccountRepo(db, clock, scope)
        self.settings = SettingsRepo(db, clock, scope)
        self.tasks = TaskRepo(db, clock, scope)
        self.trainings = TrainingRepo(db, clock, scope)
        self.datasets = DatasetRepo(db, clock, scope)
        self.models = ModelRepo(db, clock, scope)
        self.usage = UsageRepo(db, clock, scope)
        self.styles = StyleRepo(db, clock, scope)
        self.preferences = PreferencesRepo(db, clock, scope)
        self.history = HistoryRepo(db, clock, scope)
        self.usage_report = UsageReportRepo(db, clock, scope)

    @classmethod
    async def open(
        cls,
        target: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        clock: Clock = time.time,
        scope: ShardScope = EVERYTHING,
    ) -> Self:
        """Open the database `target` names and bring its schema up to date.

        `target` is a SQLite file path (created if needed), a `sqlite:///path` URL or a
        `postgresql://user:password@host/database` URL. `scope` is the shards whose guilds'
        work this process serves.
        """
        db = await open_database(target, busy_timeout_ms=busy_timeout_ms)
        try:
            version = await migrate(db)
            await db.check_writable()
        except BaseException:
            await db.close()
            raise
        log.info("Opened store %s (schema version %d)", describe(target), version)
        return cls(db, clock, scope)

    @classmethod
    async def open_when_writable(
        cls,
        path: str | Path,
        *,
        first_delay: float = 0.5,
        max_delay: float = 5.0,
        scope: ShardScope = EVERYTHING,
    ) -> Self:
        """Open the database at `path`, waiting while it cannot be written (read-only, full).

        Says so once in the log, in one line, then tries again with a growing wait, so the
        bot carries on by itself once the file or its filesystem is writable again.
        Cancellation stops the wait.
        """
        delay = first_delay
        waited = False
        while True:
            try:
                store = await cls.open(path, scope=scope)
            except StoreUnavailable as exc:
                if not waited:
                    log.warning(
                        "cannot write the database %s (%s); waiting until it can",
                        describe(path),
                        exc.cause,
                    )
                    waited = True
                await asyncio.sleep(delay)
                delay = min(max_delay, delay * 2)
                continue
            if waited:
                log.warning("the database %s can be written again", describe(path))
            return store

    async def close(self) -> None:
        """Close the connection (SQLite checkpoints its WAL)."""
        await self.db.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def open_database(target: str | Path, *, busy_timeout_ms: int = 5000) -> Database:
    """Connect to the database `target` names, without touching its schema."""
    if is_postgresql(target):
        from bot.store.postgres import PostgresDatabase  # asyncpg only when it is used

        return await PostgresDatabase.open(str(target))
    path = sqlite_path(target)
    if path is None:
        raise ValueError(f"unsupported database URL: {describe(target)}")
    from bot.store.sqlite import SqliteDatabase

    return await SqliteDatabase.open(path, busy_timeout_ms=busy_timeout_ms)
