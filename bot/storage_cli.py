"""`miaohua-bot storage backup PATH`: a consistent copy of the database, even while the bot runs."""

from __future__ import annotations

import argparse
import sys

from bot.config import Settings
from bot.store.backup import BackupError, BackupReport, backup_database

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


def run_storage(settings: Settings, args: argparse.Namespace) -> int:
    """Run one `storage` subcommand; returns the exit code."""
    assert args.storage_command == "backup"
    source = settings.storage.path
    try:
        report = backup_database(source, args.path, force=args.force)
    except BackupError as exc:
        print(f"miaohua-bot: backup failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(_summary(settings, report))
    return EXIT_OK


def _summary(settings: Settings, report: BackupReport) -> str:
    lines = [
        f"backed up {settings.storage.path} to {report.target}: "
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
