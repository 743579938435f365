"""A consistent copy of the bot's SQLite database, safe to take while the bot runs.

SQLite's online backup API copies the pages of one snapshot. The source is in WAL mode, so
the read transaction the copy holds never blocks the bot's writes; the bot only keeps
appending to its WAL a little longer, until the copy is done.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

# Pages per step (1 MiB of 4 KiB pages): the copy runs as short calls, not one long one;
# the snapshot stays pinned across them (see _copy).
STEP_PAGES = 256


class BackupError(Exception):
    """No good copy was made; the message is one line saying why (the target is untouched)."""


@dataclass(frozen=True)
class BackupReport:
    """What was copied, read back from the copy itself."""

    target: Path
    size_bytes: int
    schema_version: int
    row_counts: dict[str, int]


def backup_database(
    source: Path,
    target: Path,
    *,
    force: bool = False,
) -> BackupReport:
    """Copy the database at `source` to `target` and check the copy's integrity.

    The copy is written beside `target` under a temporary name and only then moved into
    place, so `target` is never a half-written file. An existing `target` is replaced only
    with `force`. The copy is a self-contained file (rollback journal, not WAL), readable
    by `Store.open` once copied back.
    """
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise BackupError(f"no database at {source} (check storage.path)")
    if _same_file(source, target):
        # Replacing the live file would leave the bot writing to an unlinked one.
        raise BackupError(f"{target} is the database itself; back it up to another file")
    if target.exists() and not force:
        raise BackupError(f"{target} already exists (use --force to replace it)")
    if target.exists() and not target.is_file():
        raise BackupError(f"{target} exists and is not a file")
    if not target.parent.is_dir():
        raise BackupError(f"directory {target.parent} does not exist")
    try:
        # mkstemp creates the file 0600: the copy holds encrypted credentials.
        fd, temp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".tmp", dir=target.parent
        )
    except OSError as exc:
        raise BackupError(f"cannot write in {target.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    temp = Path(temp_name)
    try:
        _copy(source, temp)
        report = _verify(temp)
        _fsync(temp)
        _move_into_place(temp, target, force=force)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return BackupReport(
        target=target,
        size_bytes=target.stat().st_size,
        schema_version=report[0],
        row_counts=report[1],
    )


def _same_file(source: Path, target: Path) -> bool:
    """Whether `target` is the database or one of its -wal/-shm/-journal files."""
    if target.resolve().parent != source.resolve().parent:
        return False
    name, base = target.resolve().name, source.resolve().name
    return name in {base, f"{base}-wal", f"{base}-shm", f"{base}-journal"} or (
        target.exists() and os.path.samefile(source, target)
    )


def _copy(source: Path, temp: Path) -> None:
    try:
        # Never created: a wrong path must not leave an empty database behind. Not read-only:
        # a read-only connection to a stopped bot's database leaves -wal/-shm files behind
        # (owned by whoever ran the backup); this one only reads, and removes them on close.
        src = sqlite3.connect(f"file:{source}?mode=rw", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot open the database {source}: {exc}") from None
    try:
        dst = sqlite3.connect(temp)
        try:
            src.execute("PRAGMA busy_timeout = 30000")
            # Pin one snapshot for the whole copy. Without it each step starts a new read
            # transaction, and every write the bot makes in between restarts the copy from
            # page one, which a busy bot could do forever.
            src.execute("BEGIN")
            _check_is_bot_database(src, source)
            src.backup(dst, pages=STEP_PAGES)
            src.execute("COMMIT")
            # Self-contained file: no -wal/-shm beside the copy; the bot turns WAL back on.
            dst.execute("PRAGMA journal_mode = DELETE")
        finally:
            dst.close()
    except sqlite3.Error as exc:
        raise BackupError(f"copying {source} failed: {exc}") from None
    finally:
        src.close()


def _check_is_bot_database(conn: sqlite3.Connection, source: Path) -> None:
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{source} is not a readable SQLite database: {exc}") from None
    if "tasks" not in tables:
        raise BackupError(f"{source} is not a miaohua-bot database (it has no tasks table)")


def _verify(copy: Path) -> tuple[int, dict[str, int]]:
    """Check the copy's integrity; its schema version and the rows of each table."""
    conn = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if problems != ["ok"]:
            raise BackupError(f"the copy failed its integrity check: {problems[0]}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        names = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
                " AND name NOT LIKE 'sqlite_%' ORDER BY name"
            )
        ]
        counts = {
            # Names come from the copy's own sqlite_master, quoted all the same.
            name: int(conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])  # noqa: S608
            for name in names
        }
    except sqlite3.Error as exc:
        raise BackupError(f"cannot read the copy back: {exc}") from None
    finally:
        conn.close()
    return version, counts


def _fsync(path: Path) -> None:
    with open(path, "rb") as file:
        os.fsync(file.fileno())


def _move_into_place(temp: Path, target: Path, *, force: bool) -> None:
    try:
        if force:
            os.replace(temp, target)
        else:
            # A hard link fails if `target` appeared meanwhile: never clobber without --force.
            try:
                os.link(temp, target)
            except FileExistsError:
                raise
            except OSError:  # no hard links on this filesystem: check, then rename
                if target.exists():
                    raise FileExistsError from None
                os.rename(temp, target)
            else:
                temp.unlink()
    except FileExistsError:
        raise BackupError(f"{target} already exists (use --force to replace it)") from None
    except OSError as exc:
        raise BackupError(f"cannot write {target}: {exc.strerror or exc}") from None
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
