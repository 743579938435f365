"""The PostgreSQL backend: one asyncpg connection per process, used one statement at a time
(and, in a running bot, a second one that only holds its shards' advisory locks).

One connection (not a pool) keeps SQLite's semantics: statements of one process never run
concurrently, so a guarded `UPDATE ... WHERE state = ...` or a capped `INSERT ... SELECT`
behaves the same on both backends. Different processes serve different guilds (shards), so
they never race on the same rows. A lost connection makes the statement fail with
StoreUnavailable (which the callers retry) and is opened again by the next statement.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self, TypeVar

import asyncpg

from bot.store.database import POSTGRESQL, Database, Row, describe
from bot.store.dialect import FOLD_FUNCTION_SQL, migration_to_postgresql, to_postgresql
from bot.store.errors import ConstraintViolation, StoreUnavailable
from bot.store.shards import ShardsTaken

if TYPE_CHECKING:
    from bot.store.migrate import Migration
    from bot.store.shards import ShardScope

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
# How the bot's connections show in pg_stat_activity.
APPLICATION_NAME = "miaohua-bot"
# The advisory lock class of shard claims: (SHARD_LOCK, shard id) per shard.
SHARD_LOCK = 0x6D68  # "mh"
# Serializes migrations of every process sharing the database (pg_advisory_xact_lock key).
MIGRATION_LOCK = 0x6D685F6D6967  # "mh_mig"

# SQLSTATE classes meaning "the server cannot take this now", not "this query is wrong":
# connection failures, too many connections / disk full / out of memory, shutdowns.
_UNAVAILABLE_CLASSES = ("08", "53", "57")
_UNAVAILABLE_STATES = frozenset({"25006", "40001", "40P01"})  # read-only, serialization

_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)
# The Python type asyncpg takes for each column type the migrations create.
_PYTHON_TYPES: dict[str, type] = {
    "bigint": int,
    "integer": int,
    "smallint": int,
    "double precision": float,
    "real": float,
    "bytea": bytes,
    "text": str,
}

_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS mh_schema (version BIGINT NOT NULL)"


class PostgresDatabase(Database):
    """A PostgreSQL database named by a `postgresql://` URL."""

    dialect = POSTGRESQL

    def __init__(self, url: str) -> None:
        self._url = url
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()
        # Session-level advisory locks live as long as the connection that took them: a
        # connection of their own, which a crash of the process closes (and so releases).
        self._claim: asyncpg.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, url: str) -> Self:
        """Connect to the database at `url` (raising StoreUnavailable when it cannot)."""
        db = cls(url)
        await db._run(lambda conn: conn.execute("SELECT 1"))
        return db

    @property
    def url(self) -> str:
        """The URL it connects to, as it may be logged (no password)."""
        return describe(self._url)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        statement, args = to_postgresql(sql), tuple(params)
        return list(await self._run(lambda conn: conn.fetch(statement, *args)))

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        statement, args = to_postgresql(sql), tuple(params)
        status = await self._run(lambda conn: conn.execute(statement, *args))
        count = status.rsplit(" ", 1)[-1]  # "UPDATE 3", "DELETE 0", "INSERT 0 1"
        return int(count) if count.isdigit() else 0

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        statement, args = to_postgresql(sql), [tuple(r) for r in rows]
        if args:
            await self._run(lambda conn: conn.executemany(statement, args))

    async def schema_version(self) -> int:
        return await self._run(_version)

    async def apply_migration(self, migration: Migration) -> bool:
        script = migration_to_postgresql(migration.sql)

        async def apply(conn: asyncpg.Connection) -> bool:
            async with conn.transaction():
                # Processes starting together take turns; each sees the others' work.
                await conn.execute(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
                await conn.execute(_VERSION_TABLE)  # under the lock: one creator at a time
                current = await _version(conn)
                if current >= migration.version:
                    return False
                if current == 0:
                    await _create_functions(conn)
                await conn.execute(script)
                await conn.execute("DELETE FROM mh_schema")
                await conn.execute("INSERT INTO mh_schema (version) VALUES ($1)", migration.version)
                return True

        return await self._run(apply)

    async def check_writable(self) -> None:
        async def probe(conn: asyncpg.Connection) -> None:
            transaction = conn.transaction()
            await transaction.start()
            try:  # a real write (a hot standby or a read-only database refuses it), undone
                await conn.execute("UPDATE mh_schema SET version = version")
            finally:
                await transaction.rollback()

        await self._run(probe)

    async def claim_shards(self, scope: ShardScope, on_lost: Callable[[], None]) -> None:
        claim = await self._connect(f"{APPLICATION_NAME} shards")
        for shard in sorted(scope.ids):
            taken = await claim.fetchval("SELECT pg_try_advisory_lock($1, $2)", SHARD_LOCK, shard)
            if not taken:
                await claim.close()
                held_by = f"PostgreSQL advisory lock {SHARD_LOCK}, {shard}"
                raise ShardsTaken(shard, scope.count, self.url, held_by)
        self._claim = claim

        def lost(_: object) -> None:
            if self._claim is claim:  # not closed on purpose
                self._claim = None
                on_lost()

        claim.add_termination_listener(lost)

    # A copy made inside `transaction()` reads one snapshot of the whole database.
    _BEGIN = "BEGIN ISOLATION LEVEL REPEATABLE READ"

    async def table_names(self) -> list[str]:
        rows = await self.fetch_all(
            "SELECT CAST(table_name AS text) FROM information_schema.tables"
            " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
            " AND table_name <> 'mh_schema' ORDER BY 1"
        )
        return [str(row[0]) for row in rows]

    async def column_types(self, table: str) -> dict[str, type | None]:
        rows = await self.fetch_all(
            "SELECT CAST(column_name AS text), CAST(data_type AS text)"
            " FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = ?",
            (table,),
        )
        return {str(row[0]): _PYTHON_TYPES.get(str(row[1])) for row in rows}

    async def identity_marks(self) -> dict[str, int]:
        marks = {}
        for table, sequence in await self._identity_sequences():
            # The sequence's own state: ids handed out to rows deleted since count too.
            row = await self.fetch_one(f"SELECT last_value, is_called FROM {sequence}")  # noqa: S608
            assert row is not None
            marks[table] = int(row[0]) if row[1] else int(row[0]) - 1
        return marks

    async def raise_identities(self, marks: dict[str, int]) -> None:
        # Rows copied with their ids leave the sequence where it was: at the start.
        for table, sequence in await self._identity_sequences():
            row = await self.fetch_one(f"SELECT coalesce(max(id), 0) FROM {table}")  # noqa: S608
            assert row is not None
            highest = max(int(row[0]), marks.get(table, 0))
            if highest > 0:
                await self.fetch_all("SELECT setval(CAST(? AS regclass), ?)", (sequence, highest))

    async def _identity_sequences(self) -> list[tuple[str, str]]:
        """(table, sequence) of each table whose `id` the database generates."""
        rows = await self.fetch_all(
            "SELECT CAST(table_name AS text),"
            " pg_get_serial_sequence(quote_ident(table_name), column_name)"
            " FROM information_schema.columns WHERE table_schema = current_schema()"
            " AND column_name = 'id' AND is_identity = 'YES' ORDER BY 1"
        )
        return [(str(row[0]), str(row[1])) for row in rows]

    async def close(self) -> None:
        self._closed = True  # as with SQLite, a closed store stays closed
        if self._claim is not None:
            claim, self._claim = self._claim, None
            await _close(claim)
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await _close(conn)

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        async with self._lock:
            conn = await self._connection()
            try:
                return await work(conn)
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise ConstraintViolation(str(exc)) from exc
            except _CONNECTION_ERRORS as exc:
                lost = conn.is_closed() or _lost(exc)
                typed = _unavailable(exc, lost)
                if typed is None:
                    raise
                if lost:
                    self._conn = None
                    conn.terminate()
                raise typed from exc

    async def _connection(self) -> asyncpg.Connection:
        if self._closed:
            raise ValueError("Connection closed")  # what aiosqlite says, for the same mistake
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._connect(APPLICATION_NAME)
        return self._conn

    async def _connect(self, application_name: str) -> asyncpg.Connection:
        """A new connection, named in pg_stat_activity; StoreUnavailable when there is none."""
        try:
            return await asyncpg.connect(
                self._url,
                timeout=CONNECT_TIMEOUT,
                server_settings={"application_name": application_name},
            )
        except _CONNECTION_ERRORS as exc:
            # Only the error's type: the URL is described without its password.
            cause = f"cannot connect to {self.url}: {type(exc).__name__}"
            raise StoreUnavailable(cause) from exc


async def _version(conn: asyncpg.Connection) -> int:
    """The schema version recorded in the database (0 for an empty one).

    Only reads: creating the version table here would race with another process starting
    on the same empty database (concurrent CREATE TABLE IF NOT EXISTS can fail).
    """
    if await conn.fetchval("SELECT to_regclass('mh_schema')") is None:
        return 0
    return int(await conn.fetchval("SELECT max(version) FROM mh_schema") or 0)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=5)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        conn.terminate()


async def _create_functions(conn: asyncpg.Connection) -> None:
    full_folding = conn.get_server_version().major >= 18
    await conn.execute(FOLD_FUNCTION_SQL[full_folding])


def _lost(exc: BaseException) -> bool:
    """True when `exc` means the connection is gone (a subclass of InterfaceError is a
    client-side fault of the query, such as a parameter of the wrong type)."""
    if isinstance(exc, OSError | TimeoutError | asyncpg.InternalClientError):
        return True  # the protocol's state is unknown (e.g. a server's FATAL mid-way)
    if type(exc) is asyncpg.InterfaceError:
        return True
    return str(getattr(exc, "sqlstate", "") or "").startswith(("08", "57P"))


def _unavailable(exc: BaseException, lost: bool) -> StoreUnavailable | None:
    """The StoreUnavailable that `exc` means, or None when it is a fault of the query itself."""
    state = str(getattr(exc, "sqlstate", "") or "")
    if state in _UNAVAILABLE_STATES or state.startswith(_UNAVAILABLE_CLASSES):
        return StoreUnavailable(f"{type(exc).__name__} ({state})")
    if lost:
        return StoreUnavailable(f"connection lost ({type(exc).__name__})")
    return None
