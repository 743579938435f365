"""`miaohua-bot storage backup PATH`: a consistent copy of the database, even while the bot runs;
`miaohua-bot storage migrate --from URL --to URL`: move a deployment to another database."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bot.config import Settings
from bot.store.backup import BackupError, BackupReport, backup_database
from bot.store.database import Database, describe, is_postgresql, sqlite_path
from bot.store.errors import StoreUnavailable
from bot.store.migrate import MigrationError
from bot.store.transfer import TransferError, TransferReport, check_source, copy_database

EXIT_OK, EXIT_FAILED = 0, 1


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    """The `storage` subcommands."""
    actions = parser.add_subparsers(dest="storage_command", required=True, metavar="ACTION")
    backup = actions.add_parser(
        "backup",
        help="copy the SQLite database to PATH, consistently even while the bot runs; "
        "exit 1 when no good copy was made",
    )
    backup.add_argument("path", metavar="PATH", help="file to write the copy to")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    backup.add_argument("--config", metavar="PATH", help="TOML settings file")
    migrate = actions.add_parser(
        "migrate",
        help="copy every table of one database into another, empty one (e.g. SQLite to "
        "PostgreSQL) and check the row counts; stop the bot first; exit 1 on failure",
        description="URLs: sqlite:///relative/path, sqlite:////absolute/path, a plain path, "
        "or postgresql://user:password@host/database. The target must be empty; the "
        "accounts stay encrypted, so the bot needs the same security key on the new database.",
    )
    migrate.add_argument("--from", dest="source", required=True, metavar="URL", help="copy from")
    migrate.add_argument("--to", dest="target", required=True, metavar="URL", help="copy into")
    migrate.add_argument("--config", metavar="PATH", help="TOML settings file")


def run_storage(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `storage` subcommand; returns the exit code."""
    if args.storage_command == "migrate":
        return _run_migrate(settings, args.source, args.target)
    assert args.storage_command == "backup"
    database = settings.storage.database
    if is_postgresql(database):
        print(
            f"miaohua-bot: backup failed: {_pg_dump_advice(database, args.path)}", file=sys.stderr
        )
        return EXIT_FAILED
    source = sqlite_path(database)
    assert isinstance(source, Path)  # storage.url is validated as sqlite:/// or postgresql://
    try:
        report = backup_database(source, args.path, force=args.force)
    except BackupError as exc:
        print(f"miaohua-bot: backup failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(settings, report))
    return EXIT_OK


def _pg_dump_advice(url: str | Path, path: str) -> str:
    shown = shlex.quote(describe(url))
    return (
        "storage.url is a PostgreSQL database, which PostgreSQL's own tools back up: "
        f"pg_dump --format=custom --file={shlex.quote(path)} {shown} "
        f"(restore into an empty database with pg_restore --clean --dbname {shown} "
        f"{shlex.quote(path)})"
    )


def _summary(settings: Settings, report: BackupReport) -> str:
    lines = [
        f"backed up {describe(settings.storage.database)} to {report.target}: "
        f"{_size(report.size_bytes)}, schema version {report.schema_version}, integrity ok",
        *(f"  {table}: {rows} rows" for table, rows in report.row_counts.items()),
    ]
    # The Miaohua credentials in the copy are encrypted with a key that is not in it.
    if settings.security.secret_key is not None:
        lines.append(
            "the copy's Miaohua accounts are encrypted with security.secret_key, which is "
            "not in the copy: keep that passphrase to restore them"
        )
    else:
        lines.append(
            f"the copy's Miaohua accounts are encrypted with the key in "
            f"{settings.security.key_file}, which is not in the copy: back that file up "
            "too (separately), or restored accounts cannot be read"
        )
    return "\n".join(lines)


def _size(size: int) -> str:
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KiB"
    return f"{size / (1024 * 1024):.1f} MiB"


def _run_migrate(settings: Settings, source: str, target: str) -> int:
    try:
        problem = _refusal(source, target)
        if problem is not None:
            raise TransferError(problem)
        print(f"migrating {describe(source)} to {describe(target)}")
        # Said before the copy starts, so that whoever runs it can still stop it.
        print(
            "warning: the bot must be stopped while migrating: whatever it writes to "
            f"{describe(source)} after the copy is lost"
        )
        print(f"warning: {_key_reminder(settings)}")
        report = asyncio.run(_migrate(source, target))
    except (TransferError, StoreUnavailable, MigrationError, ValueError, OSError) as exc:
        print(f"miaohua-bot: migrate failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(_migrate_summary(report, target))
    return EXIT_OK


async def _migrate(source: str, target: str) -> TransferReport:
    from bot.store.store import open_database

    src = await open_database(source)
    try:
        await check_source(src)  # before the target is opened: a SQLite one would be created
        dst: Database = await open_database(target)
        try:
            return await copy_database(src, dst)
        finally:
            await dst.close()
    finally:
        await src.close()


def _refusal(source: str, target: str) -> str | None:
    """Why the copy must not start, or None."""
    for url in (source, target):
        if "://" in url and not (url.startswith("sqlite:///") or is_postgresql(url)):
            return f"unsupported database URL {describe(url)} (sqlite:///path or postgresql://)"
        if sqlite_path(url) == ":memory:":
            return "an in-memory database cannot be migrated from or to"
    path = sqlite_path(source)
    if isinstance(path, Path) and not path.is_file():
        return f"no database at {path}"
    if _same_database(source, target):
        return f"--from and --to are the same database ({describe(source)})"
    return None


def _same_database(a: str, b: str) -> bool:
    path_a, path_b = sqlite_path(a), sqlite_path(b)
    if isinstance(path_a, Path) and isinstance(path_b, Path):
        if path_a.exists() and path_b.exists():
            return os.path.samefile(path_a, path_b)
        return path_a.resolve() == path_b.resolve()
    return is_postgresql(a) and is_postgresql(b) and _server_database(a) == _server_database(b)


def _server_database(url: str) -> tuple[str, int, str]:
    """(host or socket directory, port, database) that a PostgreSQL URL connects to."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = parts.hostname or (query.get("host") or ["localhost"])[0]
    port = parts.port or int((query.get("port") or ["5432"])[0])
    database = parts.path.lstrip("/") or (query.get("dbname") or [parts.username or ""])[0]
    return host, port, database


def _key_reminder(settings: Settings) -> str:
    # The accounts are copied as ciphertext; only the key they were encrypted with reads them.
    if settings.security.secret_key is not None:
        return (
            "the Miaohua accounts are copied encrypted: run the bot on the new database with "
            "the same security.secret_key"
        )
    return (
        "the Miaohua accounts are copied encrypted: run the bot on the new database with the "
        f"same key file ({settings.security.key_file}, security.key_file)"
    )


def _migrate_summary(report: TransferReport, target: str) -> str:
    total = sum(report.row_counts.values())
    setting = "storage.url" if "://" in target else "storage.path"
    lines = [f"  {table}: {rows} rows" for table, rows in report.row_counts.items()]
    lines.append(
        f"migrated {total} rows in {len(report.row_counts)} tables (schema version "
        f"{report.schema_version}), each table's row count checked; set {setting} to "
        f"{describe(target)} and start the bot"
    )
    return "\n".join(lines)
