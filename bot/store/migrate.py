"""Numbered SQL migrations, the same files for SQLite and PostgreSQL.

SQLite tracks the version in `PRAGMA user_version`, PostgreSQL in the table `mh_schema`;
the files are written in SQLite's dialect and translated for PostgreSQL (bot/store/dialect.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

from bot.store.database import Database

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


async def schema_version(db: Database) -> int:
    """Return the database's schema version (0 for an empty database)."""
    return await db.schema_version()


async def migrate(
    db: Database,
    migrations: Sequence[Migration] | None = None,
    *,
    target: int | None = None,
) -> int:
    """Apply every pending migration up to `target` (default: all); return the new version.

    Each migration runs in its own transaction together with its version bump.
    """
    migrations = load_migrations() if migrations is None else migrations
    latest = migrations[-1].version if migrations else 0
    target = latest if target is None else target
    current = await db.schema_version()
    if current > latest:
        raise MigrationError(
            f"database schema version {current} is newer than this code knows ({latest})"
        )
    for migration in migrations:
        if current < migration.version <= target:
            try:
                applied = await db.apply_migration(migration)
            except Exception:
                log.exception("Migration %04d_%s failed", migration.version, migration.name)
                raise
            if applied:
                log.info("Applied migration %04d_%s", migration.version, migration.name)
            current = migration.version
    return current
