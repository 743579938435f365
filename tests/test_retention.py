"""A long-running bot stays bounded: old tasks and usage rows are pruned, idle state dropped."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.forms import FormCache
from bot.housekeeping import Housekeeping
from bot.i18n import t
from bot.jobs.admission import utc_day
from bot.jobs.locks import KeyedLocks
from bot.jobs.retention import DAY, prune, prune_interval
from bot.store import Store, TaskState
from tests.conftest import CH_A, GUILD_A, GUILD_B, MEMBER_A, MEMBER_A2, locale_names
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text

START = 1_700_000_000.0


class Clock:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "bot.db", clock=clock)
    yield s
    await s.close()


async def _task(store: Store, guild_id: int = GUILD_A, **fields: object) -> int:
    params: dict[str, object] = {
        "guild_id": guild_id,
        "channel_id": CH_A,
        "user_id": MEMBER_A,
        "kind": "t2i",
        "model": "m",
        "prompt": "p",
        "count": 1,
        "scale": 7,
        "size": "512x512",
    }
    params.update(fields)
    return (await store.tasks.create(**params)).id  # type: ignore[arg-type]


async def _finish(store: Store, task_id: int, state: TaskState) -> None:
    if state == TaskState.CANCELLED:
        assert await store.tasks.mark_cancelled(task_id)
        return
    assert await store.tasks.mark_submitted(task_id, f"svc-{task_id}")
    if state == TaskState.FAILED:
        assert await store.tasks.mark_failed(task_id, "service_error")
        return
    assert await store.tasks.mark_done(task_id, [{"url": "u"}], 1)
    if state == TaskState.DELIVERED:
        assert await store.tasks.mark_delivered(task_id, 555)


# --- the store -----------------------------------------------------------------------------


async def test_prune_deletes_old_finished_tasks_only_and_remembers_how_far(store, clock):
    old = {}
    for state in (TaskState.DELIVERED, TaskState.FAILED, TaskState.CANCELLED):
        old[state] = await _task(store)
        await _finish(store, old[state], state)
    old_queued = await _task(store)
    old_done = await _task(store)  # finished at the service, not yet posted: still owed
    await _finish(store, old_done, TaskState.DONE)
    other_guild = await _task(store, guild_id=GUILD_B)
    await _finish(store, other_guild, TaskState.DELIVERED)
    clock.now += 90 * DAY
    recent = await _task(store, parent_id=old[TaskState.DELIVERED])
    await _finish(store, recent, TaskState.DELIVERED)
    clock.now += 1

    assert await store.tasks.prune_finished(clock.now - 90 * DAY, batch=2) == 4

    left = {task.id for task in await store.tasks.recent(GUILD_A, limit=100)}
    assert left == {old_queued, old_done, recent}
    assert await store.tasks.recent(GUILD_B) == []
    assert (await store.tasks.get(recent)).parent_id is None  # its source went with the rest
    for task_id in old.values():
        assert await store.tasks.was_pruned(GUILD_A, task_id)
    assert await store.tasks.was_pruned(GUILD_B, other_guild)
    assert not await store.tasks.was_pruned(GUILD_A, recent)
    assert await store.tasks.prune_finished(clock.now - 90 * DAY) == 0


async def test_usage_counters_are_kept_for_today_and_yesterday_only(store, clock):
    today = utc_day(clock.now)
    for days_ago in (0, 1, 2, 30):
        await store.usage.increment(GUILD_A, MEMBER_A, utc_day(clock.now - days_ago * DAY), 3)
    pruned = await prune(store, retention_days=90, now=clock.now)
    assert (pruned.tasks, pruned.usage_rows) == (0, 2)
    assert await store.usage.get(GUILD_A, MEMBER_A, today) == 3
    assert await store.usage.get(GUILD_A, MEMBER_A, utc_day(clock.now - DAY)) == 3
    assert await store.usage.get(GUILD_A, MEMBER_A, utc_day(clock.now - 2 * DAY)) == 0


def test_prune_runs_hourly_or_ten_times_per_short_retention():
    assert prune_interval(90) == 3600
    assert prune_interval(1 / 24) == pytest.approx(360)


# --- in-memory state -----------------------------------------------------------------------


async def test_keyed_locks_exclude_per_key_and_forget_idle_keys():
    locks: KeyedLocks[int] = KeyedLocks()
    order: list[str] = []
    first_in = asyncio.Event()
    release = asyncio.Event()

    async def holder(key: int, name: str, wait: asyncio.Event | None) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            first_in.set()
            if wait is not None:
                await wait.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(holder(1, "a", release))
    await first_in.wait()
    second = asyncio.create_task(holder(1, "b", None))
    cancelled = asyncio.create_task(holder(1, "c", None))
    other = asyncio.create_task(holder(2, "d", None))
    await other
    await asyncio.sleep(0)
    cancelled.cancel()
    assert len(locks) == 1  # key 1 is held with waiters; key 2 is gone once released
    release.set()
    await asyncio.gather(first, second, cancelled, return_exceptions=True)
    assert order == ["a in", "d in", "d out", "a out", "b in", "b out"]
    assert len(locks) == 0


# --- through the bot -----------------------------------------------------------------------


@pytest.mark.slow
async def test_per_member_state_is_dropped_once_their_tasks_are_over(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    await h.bot.store.settings.update(GUILD_A, user_running=5)
    ids = []
    for member in (MEMBER_A, MEMBER_A2):
        for n in range(2):
            text = await answer_text(await imagine(h, f"tree {n}", user_id=member))
            ids.append(task_id_of(text))
    for task_id in ids:
        await wait_result(h, task_id)

    def leftovers() -> dict[str, int]:
        sizes = h.bot.memory_sizes()
        sizes.pop("forms")  # one cached form per guild, not per member or task
        return {name: count for name, count in sizes.items() if count}

    # Deliveries and the final status edits (at most one per 2 s) finish after the posts.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while leftovers():
        assert loop.time() < deadline, f"still held after every task ended: {leftovers()}"
        await asyncio.sleep(0.05)
    assert all(t.state == TaskState.DELIVERED for t in await h.bot.store.tasks.recent(GUILD_A))


@pytest.mark.parametrize("locale", locale_names(), ids=str)
async def test_buttons_on_a_pruned_result_answer_that_it_is_too_old(harness_factory, locale):
    days = 1 / DAY  # one second: the bot's own periodic job prunes within the test
    h = await harness_factory(miaohua=FAST_POLLING, storage={"retention_days": days})
    text = await answer_text(await imagine(h, "a lighthouse at dusk", count=2))
    task_id = task_id_of(text)
    result = await wait_result(h, task_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while await h.bot.store.tasks.get(task_id) is not None:
        assert loop.time() < deadline, "the finished task was never pruned"
        await asyncio.sleep(0.05)

    expected = t("result.too_old", str(locale), id=task_id, days=f"{days:g}")
    for custom_id in (
        f"mh:rerun:{task_id}",
        f"mh:remix:{task_id}",
        f"mh:var:{task_id}:1",
        f"mh:del:{task_id}",
    ):
        ix = await h.fake.click(
            result, custom_id, user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A,
            locale=str(locale),
        )  # fmt: skip
        assert await answer_text(ix) == expected
    assert await h.bot.store.tasks.recent(GUILD_A) == []  # nothing was queued again
    assert h.fake.message(int(result["id"])) is not None  # nor deleted
    ix = await h.fake.slash(
        "status", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A,
        options={"task": task_id}, locale=str(locale),
    )  # fmt: skip
    assert await answer_text(ix) == expected


async def test_a_button_on_a_task_gone_without_pruning_still_says_not_found(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    task_id = task_id_of(await answer_text(await imagine(h, "a quiet harbour")))
    result = await wait_result(h, task_id)
    await h.bot.housekeeping.run_once()  # nothing is old enough: nothing goes
    assert await h.bot.store.tasks.get(task_id) is not None
    await h.bot.store.db.execute("DELETE FROM tasks WHERE id = ?", (task_id,))
    ix = await h.fake.click(
        result, f"mh:rerun:{task_id}", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert await answer_text(ix) == t("result.not_found", "en-US", id=task_id)


async def test_form_cache_drops_forms_long_unused_but_keeps_a_recent_stale_copy():
    class Accounts:
        async def session_for(self, guild_id: int) -> object:
            return Session()

    class Session:
        async def generation_form(self) -> str:
            return "form"

    now = [0.0]
    forms = FormCache(Accounts(), ttl=10, clock=lambda: now[0])
    await forms.generation_form(GUILD_A)
    now[0] = 50.0
    await forms.generation_form(GUILD_B)
    now[0] = 10 * 10 + 1.0  # GUILD_A's copy is ten TTLs old, GUILD_B's is not
    assert forms.forget_idle() == 1
    assert len(forms) == 1


async def test_housekeeping_logs_its_health_and_survives_a_failed_pass(store, clock, caplog):
    passes = 0
    real_prune = store.usage.prune

    async def flaky_prune(before_day: str) -> int:
        nonlocal passes
        passes += 1
        if passes == 1:
            raise sqlite3.OperationalError("disk I/O error")
        return await real_prune(before_day)

    store.usage.prune = flaky_prune  # type: ignore[method-assign]
    job = Housekeeping(store, retention_days=0.1 / DAY, sizes=lambda: {"queues": 0})
    caplog.set_level(logging.INFO, logger="bot.housekeeping")
    job.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while passes < 2 or "housekeeping: pruned" not in caplog.text:
        assert loop.time() < deadline, "no second pass"
        await asyncio.sleep(0.01)
    await job.stop()
    assert "housekeeping pass failed" in caplog.text
    assert "rss " in caplog.text and "in memory: queues 0" in caplog.text
