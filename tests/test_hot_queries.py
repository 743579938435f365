"""Every statement run per command or per poll finds its rows through an index, so its cost
does not grow with the number of tasks (see bot/store/hot_queries.py and `bench --scale`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store
from bot.store.hot_queries import HOT_QUERIES, query_plan, reads_without_index


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "bot.db")
    yield db
    await db.close()


@pytest.mark.parametrize("name", list(HOT_QUERIES))
async def test_every_hot_query_reads_through_an_index(store: Store, name: str) -> None:
    sql, params = HOT_QUERIES[name]
    plan = await query_plan(store.db, sql, params)
    assert not reads_without_index(plan), plan
    if not sql.lstrip().upper().startswith("INSERT"):  # an upsert on its key has no read step
        assert any(step.startswith("SEARCH ") for step in plan), plan


async def test_a_query_reading_every_task_is_caught(store: Store) -> None:
    plan = await query_plan(store.db, "SELECT * FROM tasks WHERE prompt = ?", ("fox",))
    assert reads_without_index(plan) == ["SCAN tasks"]
