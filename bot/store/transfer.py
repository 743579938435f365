"""Copy every row of one bot database into another, empty one (`storage migrate`).

The copy moves a deployment between backends (SQLite to PostgreSQL or back) or servers.
Values travel as they are stored: the Miaohua credentials stay ciphertext, so the new
database needs the same key. Both sides are read and written inside one transaction each:
the copy comes from one snapshot of the source, and a failed copy leaves the target empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bot.store.database import Database, Row
from bot.store.migrate import MigrationError, load_migrations, migrate

# Rows per SELECT and per execute_many.
BATCH = 500


@dataclass(frozen=True, slots=True)
class CopiedTable:
    """A table and its primary key, which orders the copy (and pages through it)."""

    name: str
    key: tuple[str, ...]


# Every table the migrations create, parents before the tables that refer to them
# (trained_models.training_id -> trainings). tasks.parent_id refers to tasks: a parent is
# always older, so copying by id inserts it before its children. A table the migrations
# create but this list lacks makes every copy fail (and tests/test_storage_migrate.py).
TABLES: tuple[CopiedTable, ...] = (
    CopiedTable("accounts", ("id",)),
    CopiedTable("guild_settings", ("guild_id",)),
    CopiedTable("trainings", ("id",)),
    CopiedTable("trained_models", ("id",)),
    CopiedTable("datasets", ("id",)),
    CopiedTable("tasks", ("id",)),
    CopiedTable("pruned_tasks", ("guild_id",)),
    CopiedTable("daily_usage", ("guild_id", "user_id", "day")),
    CopiedTable("member_preferences", ("guild_id", "user_id")),
    CopiedTable("styles", ("guild_id", "name_key")),
)


class TransferError(Exception):
    """The copy was refused or failed; the message is one line saying why and what to do."""


@dataclass(frozen=True, slots=True)
class TransferReport:
    """What was copied: the schema version and each table's rows (equal on both sides)."""

    schema_version: int
    row_counts: dict[str, int]


async def copy_database(
    source: Database, target: Database, *, batch: int = BATCH
) -> TransferReport:
    """Copy every table of `source` into `target`, which must be empty (a copy never merges).

    `source` must be at this code's schema version; `target` is brought to it first. Row
    counts are compared table by table before the target's transaction commits.
    """
    version = await check_source(source)
    await _prepare_target(target, version)
    marks = await source.identity_marks()
    counts: dict[str, int] = {}
    table = TABLES[0].name
    try:
        async with source.transaction(), target.transaction():
            for copied in TABLES:
                table = copied.name
                await _copy_table(source, target, copied, batch)
            table = "the id sequences"
            await target.raise_identities(marks)
            for copied in TABLES:
                table = copied.name
                counts[table] = await _verified_count(source, target, table)
    except TransferError as exc:
        raise TransferError(f"{exc}; {_NOTHING_COPIED}") from exc
    except Exception as exc:
        raise TransferError(f"copying {table} failed: {_one_line(exc)}; {_NOTHING_COPIED}") from exc
    return TransferReport(schema_version=version, row_counts=counts)


# Said after every failure inside the transaction: it was rolled back (or, with the
# connection lost, never committed).
_NOTHING_COPIED = (
    "nothing was committed to the target; if it still has rows, empty or delete it before "
    "trying again"
)


async def check_source(source: Database) -> int:
    """Refuse a source the copy cannot take whole; its schema version otherwise."""
    latest = load_migrations()[-1].version
    version = await source.schema_version()
    if version == 0:
        raise TransferError("the source is not a miaohua-bot database (it has no schema)")
    if version > latest:
        raise TransferError(
            f"the source is at schema version {version}, newer than this miaohua-bot knows "
            f"({latest}): migrate with the version that wrote it"
        )
    if version < latest:
        raise TransferError(
            f"the source is at schema version {version}, this miaohua-bot at {latest}: run "
            "this version of the bot on it once (it upgrades the schema at start), then migrate"
        )
    known = {copied.name for copied in TABLES}
    unknown = sorted(set(await source.table_names()) - known)
    if unknown:
        raise TransferError(
            f"the source has tables this miaohua-bot does not copy: {', '.join(unknown)}"
        )
    return version


async def _prepare_target(target: Database, version: int) -> None:
    # Checked before migrating: a refused target is left exactly as it was.
    for table in await target.table_names():
        rows = await _count(target, table)
        if rows:
            raise TransferError(
                f"the target is not empty (table {table} has {rows} rows): migrate only into "
                "an empty database, so that nothing is merged; the target was left as it was"
            )
    try:
        reached = await migrate(target)
    except MigrationError as exc:
        raise TransferError(f"the target's schema: {exc}") from exc
    if reached != version:
        raise TransferError(f"the target is at schema version {reached}, the source at {version}")


async def _copy_table(source: Database, target: Database, table: CopiedTable, batch: int) -> None:
    """Copy `table` in key order, `batch` rows at a time, converted to the target's types."""
    key = ", ".join(_quoted(name) for name in table.key)
    first = f"SELECT * FROM {_quoted(table.name)} ORDER BY {key} LIMIT ?"  # noqa: S608
    # Keyset paging: each page starts after the last key of the one before.
    after = ", ".join("?" for _ in table.key)
    more = (
        f"SELECT * FROM {_quoted(table.name)} WHERE ({key}) > ({after})"  # noqa: S608
        f" ORDER BY {key} LIMIT ?"
    )
    types = await target.column_types(table.name)
    rows = await source.fetch_all(first, (batch,))
    while rows:
        columns = list(rows[0].keys())
        missing = [name for name in columns if name not in types]
        if missing:
            raise TransferError(f"the target's {table.name} lacks columns {', '.join(missing)}")
        wanted = [types[name] for name in columns]
        insert = (
            f"INSERT INTO {_quoted(table.name)} ({', '.join(map(_quoted, columns))})"  # noqa: S608
            f" VALUES ({', '.join('?' for _ in columns)})"
        )
        values = [_converted(table.name, columns, wanted, row) for row in rows]
        await target.execute_many(insert, values)
        if len(rows) < batch:
            return
        last = rows[-1]
        rows = await source.fetch_all(more, (*(last[name] for name in table.key), batch))


def _converted(
    table: str, columns: Sequence[str], wanted: Sequence[type | None], row: Row
) -> tuple[Any, ...]:
    """The row's values as the target's columns take them.

    SQLite stores any value in any column; PostgreSQL (asyncpg) takes exactly the type of
    the column. A value whose meaning would change (2.5 for an integer) is refused.
    """
    out = []
    for name, want, value in zip(columns, wanted, row, strict=True):
        if value is None or want is None or type(value) is want:
            out.append(value)
        elif want is float and isinstance(value, int):
            out.append(float(value))
        elif want is int and isinstance(value, float) and value.is_integer():
            out.append(int(value))
        elif want is bytes and isinstance(value, bytearray | memoryview):
            out.append(bytes(value))
        elif want is bytes and isinstance(value, str):
            out.append(value.encode("utf-8"))
        elif want is str and isinstance(value, int | float):
            out.append(str(value))
        else:
            where = ", ".join(f"{k} {row[k]!r}" for k in _key_of(table))
            raise TransferError(
                f"{table}.{name} of the row with {where} holds a {type(value).__name__}, "
                f"which the target's {want.__name__} column cannot take unchanged"
            )
    return tuple(out)


def _key_of(table: str) -> tuple[str, ...]:
    return next(copied.key for copied in TABLES if copied.name == table)


async def _verified_count(source: Database, target: Database, table: str) -> int:
    copied, arrived = await _count(source, table), await _count(target, table)
    if copied != arrived:
        raise TransferError(f"{table} has {copied} rows in the source but {arrived} in the target")
    return arrived


async def _count(db: Database, table: str) -> int:
    row = await db.fetch_one(f"SELECT count(*) FROM {_quoted(table)}")  # noqa: S608
    assert row is not None
    return int(row[0])


def _quoted(name: str) -> str:
    # Names come from TABLES and the databases' own catalogs, never from input.
    return f'"{name}"'


def _one_line(exc: BaseException) -> str:
    """The error as one line of bounded length (a driver's message may quote a whole row)."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
