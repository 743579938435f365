"""The Store: one SQLite connection, its pragmas, migrations and the repositories."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite

from bot.store.accounts import AccountRepo
from bot.store.base import Clock
from bot.store.datasets import DatasetRepo
from bot.store.errors import StoreUnavailable, unavailable
from bot.store.history import HistoryRepo, register_functions
from bot.store.migrate import migrate
from bot.store.models import ModelRepo
from bot.store.preferences import PreferencesRepo
from bot.store.settings import SettingsRepo
from bot.store.styles import StyleRepo
from bot.store.tasks import TaskRepo
from bot.store.trainings import TrainingRepo
from bot.store.usage import UsageRepo
from bot.store.usage_report import UsageReportRepo

log = logging.getLogger(__name__)

MEMORY = ":memory:"


class Store:
    """The bot's persistent state; open it with `await Store.open(path)`."""

    def __init__(self, conn: aiosqlite.Connection, clock: Clock = time.time) -> None:
        self.conn = conn
        self.accounts = AccountRepo(conn, clock)
        self.settings = SettingsRepo(conn, clock)
        self.tasks = TaskRepo(conn, clock)
        self.trainings = TrainingRepo(conn, clock)
        self.datasets = DatasetRepo(conn, clock)
        self.models = ModelRepo(conn, clock)
        self.usage = UsageRepo(conn, clock)
        self.styles = StyleRepo(conn, clock)
        self.preferences = PreferencesRepo(conn, clock)
        self.history = HistoryRepo(conn, clock)
        self.usage_report = UsageReportRepo(conn, clock)

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        clock: Clock = time.time,
    ) -> Self:
        """Open (creating if needed) the database at `path` and bring its schema up to date."""
        if str(path) != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every statement is its own transaction; migrations BEGIN explicitly.
        try:
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        except sqlite3.Error as exc:  # no file yet, and its directory cannot be written
            if (typed := unavailable(exc)) is not None:
                raise typed from exc
            raise
        try:
            conn.row_factory = aiosqlite.Row
            await _configure(conn, busy_timeout_ms)
            version = await migrate(conn)
            await _check_writable(conn, version)
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.Error) and (typed := unavailable(exc)) is not None:
                raise typed from exc
            raise
        log.info("Opened store %s (schema version %d)", path, version)
        return cls(conn, clock)

    @classmethod
    async def open_when_writable(
        cls, path: str | Path, *, first_delay: float = 0.5, max_delay: float = 5.0
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
                store = await cls.open(path)
            except StoreUnavailable as exc:
                if not waited:
                    log.warning(
                        "cannot write the database %s (%s); waiting until it can", path, exc.cause
                    )
                    waited = True
                await asyncio.sleep(delay)
                delay = min(max_delay, delay * 2)
                continue
            if waited:
                log.warning("the database %s can be written again", path)
            return store

    async def close(self) -> None:
        """Close the connection (checkpointing the WAL)."""
        await self.conn.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


async def _check_writable(conn: aiosqlite.Connection, version: int) -> None:
    # SQLite silently opens a file it cannot write read-only (reads work, even BEGIN
    # IMMEDIATE does), and such a connection stays read-only after the filesystem becomes
    # writable again. A write that changes nothing, rolled back, shows this at start, where
    # opening again is the cure.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute(f"PRAGMA user_version = {int(version)}")
    finally:
        if conn.in_transaction:
            await conn.execute("ROLLBACK")


async def _configure(conn: aiosqlite.Connection, busy_timeout_ms: int) -> None:
    await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    await conn.execute("PRAGMA foreign_keys = ON")
    # In-memory databases cannot use WAL and answer 'memory'; that is fine.
    await conn.execute("PRAGMA journal_mode = WAL")
    # NORMAL is durable across application crashes in WAL mode and much faster than FULL.
    await conn.execute("PRAGMA synchronous = NORMAL")
    await register_functions(conn)
