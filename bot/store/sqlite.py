"""The SQLite backend: one autocommit aiosqlite connection in WAL mode."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import aiosqlite

from bot.store.database import MEMORY, SQLITE, Database, Row
from bot.store.errors import ConstraintViolation, unavailable
from bot.store.history import FOLD_FUNCTION, fold
from bot.store.shards import ShardsTaken

if TYPE_CHECKING:
    from bot.store.migrate import Migration
    from bot.store.shards import ShardScope

log = logging.getLogger(__name__)


class SqliteDatabase(Database):
    """A SQLite file (or `:memory:`); `conn` is the aiosqlite connection itself."""

    dialect = SQLITE

    def __init__(self, conn: aiosqlite.Connection, path: str | Path = MEMORY) -> None:
        self.conn = conn
        self._path = path
        self._shard_locks: list[int] = []  # open lock files (descriptors) of claimed shards

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000) -> Self:
        """Open (creating if needed) the database file at `path`, configured for the bot."""
        if str(path) != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: every statement is its own transaction; migrations BEGIN explicitly.
        with _typed_errors():  # no file yet, and its directory cannot be written
            conn = await aiosqlite.connect(str(path), isolation_level=None)
        try:
            with _typed_errors():
                conn.row_factory = aiosqlite.Row
                await _configure(conn, busy_timeout_ms)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        # execute_fetchall runs statement and fetch in one hop on the db thread, so an
        # INSERT/UPDATE ... RETURNING completes before any other coroutine's statement.
        with _typed_errors():
            return list(await self.conn.execute_fetchall(sql, tuple(params)))

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        with _typed_errors():
            async with self.conn.execute(sql, tuple(params)) as cursor:
                return max(cursor.rowcount, 0)

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with _typed_errors():
            await self.conn.executemany(sql, [tuple(r) for r in rows])

    async def schema_version(self) -> int:
        with _typed_errors():
            rows = await self.conn.execute_fetchall("PRAGMA user_version")
        return int(next(iter(rows))[0])

    async def apply_migration(self, migration: Migration) -> bool:
        # Statement by statement in one write transaction that reads the version again
        # under its lock: processes creating one new file together take turns, and the
        # second finds the work done. (executescript would commit before its first statement.)
        try:
            with _typed_errors():
                await self.conn.execute("BEGIN IMMEDIATE")
                if await self.schema_version() >= migration.version:
                    await self.conn.execute("COMMIT")
                    return False
                for statement in _statements(migration.sql):
                    await self.conn.execute(statement)
                await self.conn.execute(f"PRAGMA user_version = {int(migration.version)}")
                await self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                await self.conn.rollback()
            raise
        return True

    async def check_writable(self) -> None:
        # SQLite silently opens a file it cannot write read-only (reads work, even BEGIN
        # IMMEDIATE does), and such a connection stays read-only after the filesystem becomes
        # writable again. Rewriting the schema version with its own value is a real page
        # write in one autocommit statement: no transaction other queries could slip into.
        version = await self.schema_version()
        await self.execute(f"PRAGMA user_version = {int(version)}")

    async def claim_shards(self, scope: ShardScope, on_lost: Callable[[], None]) -> None:
        # A lock file per shard beside the database: the kernel drops the lock with the
        # process, however it ends, so a crashed process never keeps its shards.
        if str(self._path) == MEMORY:
            return
        for shard in sorted(scope.ids):
            lock_file = Path(f"{self._path}.shard-{shard}.lock")
            fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                self._release_shards()
                raise ShardsTaken(
                    shard, scope.count, str(self._path), f"lock {lock_file.name}"
                ) from None
            self._shard_locks.append(fd)

    def _release_shards(self) -> None:
        while self._shard_locks:
            os.close(self._shard_locks.pop())  # closing the descriptor drops its lock

    async def close(self) -> None:
        """Close the connection (checkpointing the WAL) and give up the shards."""
        try:
            await self.conn.close()
        finally:
            self._release_shards()

    async def table_names(self) -> list[str]:
        # sqlite_sequence and sqlite_stat* belong to SQLite; the version is a PRAGMA.
        rows = await self.fetch_all(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
            " AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        )
        return [str(row[0]) for row in rows]

    async def column_types(self, table: str) -> dict[str, type | None]:
        rows = await self.fetch_all("SELECT name, type FROM pragma_table_info(?)", (table,))
        return {str(row[0]): _affinity(str(row[1])) for row in rows}

    async def identity_marks(self) -> dict[str, int]:
        # AUTOINCREMENT keeps each table's highest id ever in sqlite_sequence.
        if not await self.fetch_all(_HAS_SEQUENCES):
            return {}
        rows = await self.fetch_all("SELECT name, seq FROM sqlite_sequence")
        return {str(row[0]): int(row[1]) for row in rows}

    async def raise_identities(self, marks: dict[str, int]) -> None:
        # Inserting explicit ids already raised sqlite_sequence to the highest one copied.
        if not marks or not await self.fetch_all(_HAS_SEQUENCES):
            return
        for table, mark in marks.items():
            await self.execute(
                "UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1 AND seq < ?2", (table, mark)
            )
            await self.execute(
                "INSERT INTO sqlite_sequence (name, seq) SELECT ?1, ?2"
                " WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)",
                (table, mark),
            )


_HAS_SEQUENCES = "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'"


def _affinity(declared: str) -> type | None:
    """The type SQLite's affinity rules give a column declared `declared` (None: any)."""
    declared = declared.upper()
    if "INT" in declared:
        return int
    if any(word in declared for word in ("CHAR", "CLOB", "TEXT")):
        return str
    if "BLOB" in declared or not declared:
        return bytes if declared else None
    if any(word in declared for word in ("REAL", "FLOA", "DOUB")):
        return float
    return None  # NUMERIC: whatever the value is


@contextmanager
def _typed_errors() -> Iterator[None]:
    # A full disk, a read-only file or a lock held too long: a typed, retryable error.
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise ConstraintViolation(str(exc)) from exc
    except sqlite3.Error as exc:
        if (typed := unavailable(exc)) is not None:
            raise typed from exc
        raise


async def _configure(conn: aiosqlite.Connection, busy_timeout_ms: int) -> None:
    await conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    await conn.execute("PRAGMA foreign_keys = ON")
    # In-memory databases cannot use WAL and answer 'memory'; that is fine.
    await _use_wal(conn, busy_timeout_ms)
    # NORMAL is durable across application crashes in WAL mode and much faster than FULL.
    await conn.execute("PRAGMA synchronous = NORMAL")
    # The history search's folding, which SQLite's lower() and LIKE lack (ASCII only).
    await conn.create_function(FOLD_FUNCTION, 1, fold, deterministic=True)


async def _use_wal(conn: aiosqlite.Connection, busy_timeout_ms: int) -> None:
    # Switching a new file to WAL needs it to itself, and SQLite answers "locked" at once,
    # without its busy wait, while another process opens the same new file: wait here.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + busy_timeout_ms / 1000
    while True:
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or loop.time() >= deadline:
                raise
        await asyncio.sleep(0.01)


def _statements(script: str) -> list[str]:
    """Split an SQL script into its statements (a trigger's body stays whole); a trailing
    remainder without a semicolon is a statement too, unless it is only comments."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    code = [
        line for line in pending.splitlines() if line.strip() and not line.lstrip().startswith("--")
    ]
    if code:
        statements.append(pending.strip())
    return statements
