"""The store's typed failure: the database is there but does not take writes right now."""

from __future__ import annotations

import sqlite3

from bot.errors import ServiceFailure

# Primary result codes meaning "the database cannot take this now", not "this query is wrong":
# locked by another process past busy_timeout, read-only file or filesystem, full disk, I/O.
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
    }
)


class StoreUnavailable(ServiceFailure):
    """The database refused an operation for a reason outside the bot (`cause` says which).

    Nothing was written: every statement is its own transaction. The same operation can be
    tried again later and may succeed once the disk has room or the lock is gone.
    """

    key = "errors.store_unavailable"

    def __init__(self, cause: str) -> None:
        super().__init__(text=f"the database is unavailable: {cause}")
        self.cause = cause


def unavailable(exc: sqlite3.Error) -> StoreUnavailable | None:
    """The StoreUnavailable that `exc` means, or None when it is a fault of the query itself."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.OperationalError) or code is None:
        return None
    if code & 0xFF not in _UNAVAILABLE_CODES:  # extended codes keep the primary in the low byte
        return None
    return StoreUnavailable(getattr(exc, "sqlite_errorname", "") or str(exc))


class ConstraintViolation(ValueError):
    """A write broke one of the schema's rules (a CHECK, a foreign or unique key): a bug in
    the caller, raised alike by both backends; retrying it changes nothing."""
