"""Numbered SQL migrations tracked by `PRAGMA user_version`."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import aiosqlite

log = logging.getLogger(__name__)

_FILE_NAME = re.compile(r"^(\d{4})_(\w+)\.sql$")


class MigrationError(RuntimeError):
    """The migration files or the database's schema version are inconsistent."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file: its version number, name and SQL script."""

    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """Read the packaged migration files, ordered and checked to be numbered 1..n."""
    folder = resources.files("bot.store").joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    if [m.version for m in found] != list(range(1, len(found) + 1)):
        raise MigrationError("migration files must be numbered 0001, 0002, ... without gaps")
    return found


async def schema_version(conn: aiosqlite.Connection) -> int:
    """Return the database's schema version (0 for an empty database)."""
    rows = await conn.execute_fetchall("PRAGMA user_version")
    return int(next(iter(rows))[0])


async def migrate(
    conn: aiosqlite.Connection,
    migrations: Sequence[Migration] | None = None,
    *,
    target: int | None = None,
) -> int:
    """Apply every pending migration up to `target` (default: all); return the new version.

    The connection must be in autocommit mode (`isolation_level=None`): each migration
    runs in its own explicit transaction together with its `user_version` bump.
    """
    migrations = load_migrations() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    target = latest if target is None else target
    current = await schema_version(conn)
    if current > latest:
        raise MigrationError(
            f"database schema version {current} is newer than this code knows ({latest})"
        )
    for migration in migrations:
        if current < migration.version <= target:
            await _apply(conn, migration)
            current = migration.version
    return current


async def _apply(conn: aiosqlite.Connection, migration: Migration) -> None:
    # executescript commits any open transaction first, so BEGIN/COMMIT live in the script.
    script = (
        f"BEGIN IMMEDIATE;\n{migration.sql}\n"
        f"PRAGMA user_version = {int(migration.version)};\nCOMMIT;\n"
    )
    try:
        await conn.executescript(script)
    except Exception:
        if conn.in_transaction:
            await conn.rollback()
        log.exception("Migration %04d_%s failed", migration.version, migration.name)
        raise
    log.info("Applied migration %04d_%s", migration.version, migration.name)
