"""Readiness: is the Discord gateway up, and does the database take writes right now?"""

from __future__ import annotations

import asyncio
import sqlite3

from bot.store import Store
from bot.store.errors import unavailable

# /readyz must answer quickly even when the database is locked by another process.
STORE_PROBE_TIMEOUT = 2.0


class GatewayWatch:
    """Follows the gateway connection through discord.py's events.

    Up from READY or RESUMED until a disconnect: while discord.py reconnects, the
    connection may be open again but the session is not usable until it has resumed.
    """

    def __init__(self) -> None:
        self.up = False

    async def connected(self) -> None:
        self.up = True

    async def disconnected(self) -> None:
        self.up = False


async def store_unwritable(store: Store) -> str | None:
    """Why the database refuses writes now (e.g. 'SQLITE_READONLY'), or None when it takes them.

    One autocommit statement that rewrites the schema version with its own value: a real
    page write (a read-only file refuses it), never an open transaction on the shared
    connection that other queries could slip into.
    """
    try:
        async with asyncio.timeout(STORE_PROBE_TIMEOUT):
            async with store.conn.execute("PRAGMA user_version") as cursor:
                row = await cursor.fetchone()
            version = int(row[0]) if row is not None else 0
            await store.conn.execute(f"PRAGMA user_version = {version}")
    except TimeoutError:
        return "timeout"
    except sqlite3.Error as exc:
        typed = unavailable(exc)
        return typed.cause if typed is not None else type(exc).__name__
    except ValueError:  # aiosqlite: the connection is closed
        return "closed"
    return None
