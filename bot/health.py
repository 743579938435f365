"""Readiness: is the Discord gateway up, and does the database take writes right now?"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable

from bot.store import Store, StoreUnavailable

# /readyz must answer quickly even when the database is locked by another process.
STORE_PROBE_TIMEOUT = 2.0


class GatewayWatch:
    """Follows each gateway connection (one per shard) through discord.py's events.

    A shard is up from READY or RESUMED until it disconnects: while discord.py reconnects, the
    connection may be open again but the session is not usable until it has resumed or
    identified afresh. The bot is up while every one of its shards is.
    """

    def __init__(self, shard_ids: Callable[[], Iterable[int]] | None = None) -> None:
        """`shard_ids` reads the shards the process runs (None: one unsharded connection)."""
        self._shard_ids = shard_ids
        self._up: set[int] = set()

    def down(self) -> list[int]:
        """The shards whose session is not usable now."""
        expected = (0,) if self._shard_ids is None else self._shard_ids()
        return sorted(set(expected) - self._up)

    @property
    def up(self) -> bool:
        """Whether every shard can serve members."""
        return not self.down()

    def problem(self) -> str | None:
        """Why the gateway cannot serve members now (naming the shards), or None."""
        down = self.down()
        if not down:
            return None
        if self._shard_ids is None:
            return "gateway disconnected"
        return "gateway disconnected: shard " + ", ".join(map(str, down))

    async def connected(self, shard_id: int = 0) -> None:
        self._up.add(shard_id)

    async def disconnected(self, shard_id: int = 0) -> None:
        self._up.discard(shard_id)


async def store_unwritable(store: Store) -> str | None:
    """Why the database refuses writes now (e.g. 'SQLITE_READONLY'), or None when it takes them.

    A real write that changes nothing (see `Database.check_writable`), never an open
    transaction on the shared connection that other queries could slip into.
    """
    try:
        async with asyncio.timeout(STORE_PROBE_TIMEOUT):
            await store.db.check_writable()
    except TimeoutError:
        return "timeout"
    except StoreUnavailable as exc:
        return exc.cause
    except sqlite3.Error as exc:
        return type(exc).__name__
    except ValueError:  # aiosqlite: the connection is closed
        return "closed"
    return None
