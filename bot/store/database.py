"""The one place the repositories reach a database: SQLite or PostgreSQL, same interface.

Repositories write their SQL once, in SQLite's dialect with `?` / `?N` parameters; the
PostgreSQL backend translates it (bot/store/dialect.py holds every difference). Each
statement is its own transaction on both backends, and one process's statements never
interleave (one connection each), so a single guarded `UPDATE ... RETURNING` is atomic on
both.
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from bot.store.migrate import Migration
    from bot.store.shards import ShardScope

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
MEMORY = ":memory:"


class Row(Protocol):
    """A result row: columns by name or position (sqlite3.Row and asyncpg.Record both are)."""

    def __getitem__(self, key: int | str, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> Iterable[str]: ...


class Database(abc.ABC):
    """A connection to the bot's database, with the few operations the store needs."""

    dialect: str

    @abc.abstractmethod
    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Row]:
        """Run one statement and return every row it yields (RETURNING included)."""

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Row | None:
        """Run one statement and return its first row, or None."""
        rows = await self.fetch_all(sql, params)
        return rows[0] if rows else None

    @abc.abstractmethod
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        """Run one statement and return how many rows it changed."""

    @abc.abstractmethod
    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement once per parameter row."""

    @abc.abstractmethod
    async def schema_version(self) -> int:
        """The number of the last migration applied (0 for an empty database)."""

    @abc.abstractmethod
    async def apply_migration(self, migration: Migration) -> bool:
        """Apply one migration with its version bump in one transaction.

        Returns False when the database already had it (another process got there first).
        """

    @abc.abstractmethod
    async def check_writable(self) -> None:
        """Raise StoreUnavailable unless the database takes writes now (nothing is kept)."""

    @abc.abstractmethod
    async def claim_shards(self, scope: ShardScope, on_lost: Callable[[], None]) -> None:
        """Hold the shards of `scope` for this process until `close`, so that no other
        process serves them meanwhile; raise ShardsTaken when another one already does.

        `on_lost` is called should the claim end without `close` (its connection lost).
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection (and give up the shards it holds)."""

    # Whole-database operations, for `storage migrate` (bot/store/transfer.py) ------------

    # Starts the transaction of `transaction()`: one snapshot for every read inside it.
    _BEGIN = "BEGIN"

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Run the statements inside as one transaction, reading one snapshot.

        Only for a caller that has the connection to itself (`storage migrate`): the bot's
        concurrent statements would otherwise land in the transaction too.
        """
        await self.execute(self._BEGIN)
        try:
            yield
        except BaseException:
            await self.execute("ROLLBACK")
            raise
        await self.execute("COMMIT")

    @abc.abstractmethod
    async def table_names(self) -> list[str]:
        """The bot's tables, without the database's own bookkeeping (schema version, ids)."""

    @abc.abstractmethod
    async def column_types(self, table: str) -> dict[str, type | None]:
        """The Python type each column of `table` stores (None: any)."""

    @abc.abstractmethod
    async def identity_marks(self) -> dict[str, int]:
        """The highest id each table with generated ids has handed out (deleted rows too)."""

    @abc.abstractmethod
    async def raise_identities(self, marks: dict[str, int]) -> None:
        """Make each table's next generated id exceed both its rows' ids and `marks`."""


def describe(target: str | Path) -> str:
    """`target` as it may be logged: a URL loses its password, a path stays a path."""
    text = str(target)
    if "://" not in text:
        return text
    parts = urlsplit(text)
    if parts.password is None:
        return text
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sqlite_path(target: str | Path) -> Path | str | None:
    """The SQLite file `target` names (a path or `sqlite:///path`), or None for another URL.

    As in SQLAlchemy, `sqlite:///data/bot.db` is relative and `sqlite:////srv/bot.db` absolute.
    """
    text = str(target)
    if text.startswith("sqlite://"):
        rest = text.removeprefix("sqlite://")
        if not rest.startswith("/"):
            raise ValueError("a SQLite URL looks like sqlite:///relative/path or sqlite:////abs")
        path = rest[1:]
        return MEMORY if path in ("", MEMORY) else Path(path)
    if "://" in text:
        return None
    return MEMORY if text == MEMORY else Path(text)


def is_postgresql(target: str | Path) -> bool:
    """True when `target` is a PostgreSQL URL."""
    return str(target).startswith(("postgresql://", "postgres://"))
