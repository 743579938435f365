"""SQLite statements run on the event loop's thread, yet nothing the loop would wait for does.

See `SqliteDatabase`: a locked file is waited for by sleeping on the loop, in line with the
statements behind it, and the write-ahead log is checkpointed on aiosqlite's thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import sqlite as sqlite_backend
from bot.store.errors import StoreUnavailable
from bot.store.sqlite import SqliteDatabase


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    opened = await SqliteDatabase.open(tmp_path / "bot.db", busy_timeout_ms=3000)
    await opened.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
    try:
        yield opened
    finally:
        await opened.close()


class _Ticker:
    """Counts the loop's turns while it runs: a blocked loop counts none."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    def stop(self) -> None:
        self._task.cancel()


async def test_a_statement_runs_on_the_loops_own_thread(db: SqliteDatabase) -> None:
    seen: list[int] = []

    def where() -> int:
        seen.append(threading.get_ident())
        return 1

    await db.conn.create_function("where_am_i", 0, where)
    await db.fetch_all("SELECT where_am_i()")
    assert seen == [threading.get_ident()]


async def test_a_locked_file_is_waited_for_in_order_without_blocking_the_loop(
    db: SqliteDatabase, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writing: the file is locked
    ticker = _Ticker()
    try:
        started = time.monotonic()
        write = asyncio.create_task(db.execute("INSERT INTO t (v) VALUES ('first')"))
        await asyncio.sleep(0)
        # A read would find the file free, but it was issued after the write: it waits too.
        read = asyncio.create_task(db.fetch_all("SELECT v FROM t"))
        await asyncio.sleep(0.3)
        assert not write.done() and not read.done()
        assert ticker.ticks >= 10  # the loop went on meanwhile
        other.execute("COMMIT")
        assert await write == 1
        assert [row[0] for row in await read] == ["first"]
        assert time.monotonic() - started >= 0.3
    finally:
        ticker.stop()
        other.close()


async def test_a_file_locked_past_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "bot.db", busy_timeout_ms=300)
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    other = sqlite3.connect(tmp_path / "bot.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    ticker = _Ticker()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as raised:
            await db.execute("INSERT INTO t DEFAULT VALUES")
        waited = time.monotonic() - started
        assert raised.value.cause == "SQLITE_BUSY"
        assert 0.3 <= waited < 3
        assert ticker.ticks >= 10
        other.execute("ROLLBACK")
        assert await db.execute("INSERT INTO t DEFAULT VALUES") == 1  # free again: it writes
    finally:
        ticker.stop()
        other.close()
        await db.close()


async def test_the_log_is_checkpointed_on_aiosqlites_thread_in_line(
    db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_backend, "CHECKPOINT_CHANGES", 5)
    checkpoints: list[str] = []
    behind: list[asyncio.Task[list[object]]] = []
    real = db.conn.execute_fetchall

    async def spy(sql: str, params: object = None) -> object:
        if "wal_checkpoint" in sql:
            checkpoints.append(sql)
            # A statement issued while the checkpoint runs waits behind it.
            behind.append(asyncio.create_task(db.fetch_all("SELECT count(*) FROM t")))
            await asyncio.sleep(0.05)
            assert not behind[0].done()
        return await real(sql, params)

    monkeypatch.setattr(db.conn, "execute_fetchall", spy)
    for i in range(4):
        await db.execute("INSERT INTO t (v) VALUES (?)", (str(i),))
    assert checkpoints == []
    await db.execute("INSERT INTO t (v) VALUES ('5')")
    await asyncio.sleep(0.2)
    assert checkpoints == ["PRAGMA wal_checkpoint(PASSIVE)"]  # through aiosqlite's thread
    assert [row[0] for row in await behind[0]] == [5]


async def test_a_closed_database_refuses_statements(db: SqliteDatabase) -> None:
    await db.close()
    with pytest.raises(ValueError, match="closed"):
        await db.fetch_all("SELECT 1")
