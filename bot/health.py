"""Readiness: is the Discord gateway up, and does the database take writes right now?"""

from __future__ import annotations

import asyncio
import sqlite3

from bot.store import Store, StoreUnavailable

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
