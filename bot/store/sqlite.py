"""The SQLite backend: one autocommit connection in WAL mode, used from the event loop."""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import aiosqlite

from bot.store.database import MEMORY, SQLITE, Database, Row
from bot.store.errors import ConstraintViolation, unavailable
from bot.store.history import FOLD_FUNCTION, fold
from bot.store.shards import ShardsTaken

if TYPE_CHECKING:
    from bot.store.migrate import Migration
    from bot.store.shards import ShardScope

log = logging.getLogger(__name__)

T = TypeVar("T")

_ITER_CHUNK_SIZE = 64  # aiosqlite's default: rows fetched per hop when iterating a cursor
# Changes between two checkpoints of the write-ahead log. SQLite's own checkpoint would run
# inside whichever statement crossed 1,000 pages, disk syncs included: on the loop.
CHECKPOINT_CHANGES = 500
# Sleeps between attempts at a statement that found the file locked, the last repeated
# until the busy timeout has passed (what SQLite's own busy wait does, without the loop).
_BUSY_SLEEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05)


class _Locked(Exception):
    """The file is locked by another connection; nothing was written."""

    def __init__(self, error: sqlite3.OperationalError) -> None:
        super().__init__(str(error))
        self.error = error


class SqliteDatabase(Database):
    """A SQLite file (or `:memory:`); `conn` is its aiosqlite connection.

    The bot's statements run on the event loop's own thread: they take tens of microseconds,
    less than a hop to aiosqlite's thread and back, and under load that thread waits for the
    interpreter lock behind the loop, so every command's statements queued behind each
    other's. What could make the loop wait does not run there: a statement that finds the
    file locked by another process sleeps and tries again (SQLite's busy wait would block
    the loop), and the write-ahead log is checkpointed, disk syncs and all, on aiosqlite's
    thread. Either keeps its place in line: statements issued meanwhile wait behind it, so
    none overtakes another, and the two threads never use the connection at once.
    """

    dialect = SQLITE

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: str | Path = MEMORY,
        *,
        direct: sqlite3.Connection | None = None,
        busy_timeout_ms: int = 5000,
    ) -> None:
        self.conn = conn
        self._path = path
        # `conn`'s own sqlite3 connection, used from the loop (None: every statement goes
        # through aiosqlite, as for a connection opened elsewhere).
        self._direct = direct
        self.busy_timeout_ms = busy_timeout_ms  # how long a statement waits for a locked file
        self._closed = False
        # What waits its turn behind a locked file or a checkpoint, and the task taking turns.
        self._line: deque[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._checkpoint_at = direct.total_changes if direct is not None else 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._shard_locks: list[int] = []  # open lock files (descriptors) of claimed shards

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000) -> Self:
        """Open (creating if needed) the database file at `path`, configured for the bot."""
        if str(path) != MEMORY:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        opened: list[sqlite3.Connection] = []

        def connect() -> sqlite3.Connection:
            # Autocommit: every statement is its own transaction; migrations BEGIN explicitly.
            # Not bound to aiosqlite's thread: the loop uses it too, never at the same time.
            raw = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            opened.append(raw)
            return raw

        with _typed_errors():  # no file yet, and its directory cannot be written
            conn = await aiosqlite.Connection(connect, _ITER_CHUNK_SIZE)
        try:
            with _typed_errors():
                conn.row_factory = aiosqlite.Row
                await _configure(conn, busy_timeout_ms)
                # From here on the waits are the loop's (see the class's note).
                await conn.execute("PRAGMA busy_timeout = 0")
                await conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, direct=opened[0], busy_timeout_ms=busy_timeout_ms)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        args = tuple(params)
        if self._direct is None:
            # execute_fetchall runs statement and fetch in one hop on the db thread, so an
            # INSERT/UPDATE ... RETURNING completes before any other coroutine's statement.
            with _typed_errors():
                return list(await self.conn.execute_fetchall(sql, args))
        return await self._run(lambda raw: raw.execute(sql, args).fetchall())

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        args = tuple(params)
        if self._direct is None:
            with _typed_errors():
                async with self.conn.execute(sql, args) as cursor:
                    return max(cursor.rowcount, 0)
        return await self._run(lambda raw: max(raw.execute(sql, args).rowcount, 0))

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = [tuple(r) for r in rows]
        if self._direct is None:
            with _typed_errors():
                await self.conn.executemany(sql, batch)
            return
        await self._run(lambda raw: raw.executemany(sql, batch))

    async def _run(self, statement: Callable[[sqlite3.Connection], T]) -> T:
        """Run one statement on the loop: at once, unless others wait in line or the file is
        locked; then in its turn, tried again until the busy timeout has passed."""
        if not self._line:
            try:
                result = self._now(statement)
            except _Locked:
                pass  # nothing was written: it waits its turn like the statements behind it
            else:
                # Still a point where other coroutines run, as a trip to a thread was: a loop
                # of statements (a reload, a cleanup) does not hold the loop to itself.
                await asyncio.sleep(0)
                return result
        return await self._in_turn(lambda: self._when_free(statement))

    def _now(self, statement: Callable[[sqlite3.Connection], T]) -> T:
        raw = self._direct
        if raw is None or self._closed:
            raise ValueError("Connection closed")  # what aiosqlite says, for the same mistake
        with _typed_errors():
            try:
                result = statement(raw)
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    raise _Locked(exc) from None
                raise
        if raw.total_changes - self._checkpoint_at >= CHECKPOINT_CHANGES:
            self._checkpoint_soon(raw.total_changes)
        return result

    async def _when_free(self, statement: Callable[[sqlite3.Connection], T]) -> T:
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        sleeps = iter(_BUSY_SLEEPS)
        while True:
            try:
                return self._now(statement)
            except _Locked as locked:
                if time.monotonic() >= deadline:
                    with _typed_errors():
                        raise locked.error from None
            await asyncio.sleep(next(sleeps, _BUSY_SLEEPS[-1]))

    async def _in_turn(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` once everything in line before it has run; what comes later waits."""
        turn: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._line.append((work, turn))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return await turn

    async def _drain(self) -> None:
        # One task takes the turns: a statement whose turn comes runs at once, with no trip
        # around the loop (hundreds of waiters each woken in turn would never catch up).
        try:
            while self._line:
                work, turn = self._line[0]
                if not turn.done():  # else its caller gave up waiting: it never runs
                    try:
                        result = await work()
                    except Exception as exc:
                        if not turn.done():
                            turn.set_exception(exc)
                    else:
                        if not turn.done():
                            turn.set_result(result)
                self._line.popleft()
        finally:
            self._drainer = None

    def _checkpoint_soon(self, changes: int) -> None:
        self._checkpoint_at = changes
        if self._checkpointing is None and str(self._path) != MEMORY:
            self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint())

    async def _checkpoint(self) -> None:
        # PASSIVE copies what it can without waiting for readers or writers (other processes
        # on the file): nothing here waits for a lock, only for the disk.
        try:
            with _typed_errors():
                await self._in_turn(
                    lambda: self.conn.execute_fetchall("PRAGMA wal_checkpoint(PASSIVE)")
                )
        except Exception:
            log.warning("checkpoint of the database's write-ahead log failed", exc_info=True)
        finally:
            self._checkpointing = None

    async def schema_version(self) -> int:
        rows = await self.fetch_all("PRAGMA user_version")
        return int(rows[0][0])

    async def apply_migration(self, migration: Migration) -> bool:
        if self._direct is None:
            return await self._migrate(migration)

        async def with_sqlites_busy_wait() -> bool:
            # A migration runs on aiosqlite's thread: there SQLite itself may wait for a
            # locked file (the loop does the waiting for every other statement).
            await self.conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            try:
                return await self._migrate(migration)
            finally:
                await self.conn.execute("PRAGMA busy_timeout = 0")

        return await self._in_turn(with_sqlites_busy_wait)

    async def _migrate(self, migration: Migration) -> bool:
        # Statement by statement in one write transaction that reads the version again
        # under its lock: processes creating one new file together take turns, and the
        # second finds the work done. (executescript would commit before its first statement.)
        try:
            with _typed_errors():
                await self.conn.execute("BEGIN IMMEDIATE")
                rows = await self.conn.execute_fetchall("PRAGMA user_version")
                if int(next(iter(rows))[0]) >= migration.version:
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
        if self._closed:
            return
        for pending in (self._checkpointing, self._drainer):
            if pending is not None:
                await pending
        self._closed = True
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


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    # Extended codes (SQLITE_BUSY_SNAPSHOT, ...) keep the primary one in the low byte.
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_BUSY


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
