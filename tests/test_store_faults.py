"""A database that refuses writes for a while: nothing stalls, nothing is lost, no restart.

The fault is injected on the bot's own SQLite connection with `PRAGMA query_only`: SQLite
then refuses every write with SQLITE_READONLY, the very error a read-only database file
gives, while reads go on working (as they do on a full or read-only disk). Turning it off
is the disk recovering. The black-box variant against the real process is in
tests/test_store_faults_process.py.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections import Counter
from typing import Any

import pytest

from bot.store import Store, StoreUnavailable, TaskState, until_stored
from bot.store.trainings import TrainingState
from bot.training.staging import Staging
from tests.conftest import CH_A, GUILD_A, MEMBER_A, MEMBER_A2
from tests.genutil import (
    FAST_POLLING,
    eventually,
    imagine,
    is_accepted,
    result_of,
    task_id_of,
    wait_result,
)
from tests.helpers import answer_text
from tests.test_training import images, train, wait_state

MANY = {"user_running": 20, "daily_quota": 100}
CANNOT_SAVE = "cannot save new tasks or changes right now"


async def refuse_writes(bot: Any, refuse: bool) -> None:
    """Make the bot's database refuse (or take again) every write."""
    await bot.store.db.conn.execute(f"PRAGMA query_only = {int(refuse)}")


def count_attempts(monkeypatch: Any, repo: Any, name: str) -> Counter[int]:
    """Count the calls of a repository method per first argument (a task or training id)."""
    calls: Counter[int] = Counter()
    real = getattr(repo, name)

    async def counted(key: int, *args: Any, **kwargs: Any) -> Any:
        calls[key] += 1
        return await real(key, *args, **kwargs)

    monkeypatch.setattr(repo, name, counted)
    return calls


async def accept(harness: Any, prompt: str, user_id: int = MEMBER_A) -> int:
    text = await answer_text(await imagine(harness, prompt, user_id=user_id))
    assert is_accepted(text), text
    return task_id_of(text)


async def eventually_state(harness: Any, task_id: int, state: TaskState) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while (task := await harness.bot.store.tasks.get(task_id)).state != state:
        assert loop.time() < deadline, f"task {task_id} stayed {task.state}"
        await asyncio.sleep(0.02)


@pytest.mark.slow
@pytest.mark.parametrize("outcome", ["done", "failed"])
async def test_tasks_ending_while_the_database_refuses_writes_free_their_slot_on_recovery(
    harness_factory, monkeypatch, outcome
):
    h = await harness_factory(
        miaohua={**FAST_POLLING, "account_concurrency": 1},
        limits=MANY,
        emulator={"generation_time": 0.4},
    )
    if outcome == "failed":
        h.emu.state.settings.faults.task_failure_rate = 1.0
    first = await accept(h, "first")
    second = await accept(h, "second", user_id=MEMBER_A2)  # waits for the guild's one slot
    attempts = count_attempts(
        monkeypatch, h.bot.store.tasks, "mark_done" if outcome == "done" else "mark_failed"
    )
    await eventually(lambda: first in h.bot.generation.poller)
    await refuse_writes(h.bot, True)

    await eventually(lambda: attempts[first] >= 1, timeout=10)
    assert first in h.bot.generation.poller, "the task left the poller with its state unsaved"
    await eventually(lambda: attempts[first] >= 2, timeout=10)  # and it is tried again
    assert second not in h.bot.generation.poller
    refused = await answer_text(await imagine(h, "during the outage", user_id=MEMBER_A))
    assert CANNOT_SAVE in refused and "error id" not in refused, refused

    await refuse_writes(h.bot, False)
    if outcome == "done":
        for task_id in (first, second):
            await wait_result(h, task_id, timeout=20)
        expected = TaskState.DELIVERED
    else:
        for task_id in (first, second):
            await h.fake.wait_for_message(
                CH_A, lambda m, i=task_id: f"your task #{i} failed" in (m["content"] or ""), 20
            )
        expected = TaskState.FAILED
    for task_id in (first, second):
        await eventually_state(h, task_id, expected)
        if outcome == "done":
            assert len(result_of(h, task_id)) == 1
    assert not h.bot.generation.poller
    assert await h.bot.store.tasks.count_active(GUILD_A) == 0
    # And the guild takes new work again, without a restart.
    third = await accept(h, "after the outage")
    if outcome == "done":
        await wait_result(h, third, timeout=20)


async def test_training_images_that_cannot_be_written_fail_the_job_and_free_the_slot(harness):
    # The staging directory cannot be created (a file stands in its place): writing the
    # images fails with a real OSError, as it does on a full disk.
    staging = harness.settings.storage.staging_dir
    shutil.rmtree(staging, ignore_errors=True)
    staging.write_bytes(b"")
    text = await train(harness, attachments=images(harness, 3))
    assert "could not save the training images" in text and "error id" not in text, text
    training = await harness.bot.store.trainings.get(1)
    assert (training.state, training.error) == (TrainingState.FAILED, "images_not_saved")

    staging.unlink()
    assert "#2" in await train(harness, name="Second Try", attachments=images(harness, 3))
    await wait_state(harness, 2, TrainingState.DONE, timeout=20)


async def test_training_whose_images_cannot_be_recorded_ends_once_the_database_recovers(
    harness, monkeypatch
):
    real_write = Staging.write

    async def write_then_lose_the_database(self: Staging, *args: Any) -> list[str]:
        # The job's row is stored; the disk turns read-only before its images are recorded.
        await refuse_writes(harness.bot, True)
        return await real_write(self, *args)

    monkeypatch.setattr(Staging, "write", write_then_lose_the_database)
    text = await train(harness, attachments=images(harness, 3))
    assert CANNOT_SAVE in text and "error id" not in text, text
    assert (await harness.bot.store.trainings.get(1)).state == TrainingState.UPLOADING
    monkeypatch.setattr(Staging, "write", real_write)

    await refuse_writes(harness.bot, False)
    training = await wait_state(harness, 1, TrainingState.FAILED)
    assert training.error == "images_not_saved"
    # Its images go once the failure is stored.
    await eventually(lambda: not (harness.settings.storage.staging_dir / "1").exists())
    assert "#2" in await train(harness, name="Second Try", attachments=images(harness, 3))
    await wait_state(harness, 2, TrainingState.DONE, timeout=20)


async def test_cancel_refused_by_the_database_keeps_the_task_queued(harness_factory):
    h = await harness_factory(
        miaohua={**FAST_POLLING, "account_concurrency": 1},
        limits=MANY,
        emulator={"generation_time": 0.4},
    )
    first = await accept(h, "first")
    second = await accept(h, "second")
    await refuse_writes(h.bot, True)
    ix = await h.fake.slash(
        "cancel", options={"task": second}, user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    text = await answer_text(ix)
    assert CANNOT_SAVE in text and "error id" not in text, text
    assert h.bot.generation.queue_position(second) == 1, "the task left the queue"

    await refuse_writes(h.bot, False)
    for task_id in (first, second):
        await wait_result(h, task_id, timeout=20)
        await eventually_state(h, task_id, TaskState.DELIVERED)


# The pieces underneath, one at a time.

TASK = {
    "guild_id": GUILD_A, "channel_id": CH_A, "user_id": MEMBER_A, "kind": "t2i",
    "model": "m", "prompt": "p", "count": 1, "scale": 7, "size": "512x512",
}  # fmt: skip


async def test_refused_writes_raise_store_unavailable_and_reads_go_on(tmp_path):
    path = tmp_path / "bot.db"
    async with await Store.open(path, busy_timeout_ms=50) as store:
        task = await store.tasks.create(**TASK)
        await store.db.conn.execute("PRAGMA query_only = ON")  # as a read-only file answers
        with pytest.raises(StoreUnavailable) as refused:
            await store.tasks.mark_failed(task.id, "x")
        assert refused.value.cause == "SQLITE_READONLY"
        assert (await store.tasks.get(task.id)).state == TaskState.QUEUED
        await store.db.conn.execute("PRAGMA query_only = OFF")

        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            with pytest.raises(StoreUnavailable) as locked:
                await store.tasks.mark_failed(task.id, "x")
            assert locked.value.cause == "SQLITE_BUSY"
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert (await store.tasks.mark_failed(task.id, "x")).state == TaskState.FAILED

        # A fault of the query itself is not an outage: it stays what it is.
        with pytest.raises(sqlite3.OperationalError) as bad:
            await store.tasks._fetch_all("SELECT nope FROM tasks")
        assert not isinstance(bad.value, StoreUnavailable)


async def test_until_stored_retries_only_outages_with_growing_waits(monkeypatch):
    waits: list[float] = []

    async def no_wait(delay: float) -> None:
        waits.append(delay)

    monkeypatch.setattr(asyncio, "sleep", no_wait)
    answers: list[Any] = [StoreUnavailable("SQLITE_FULL")] * 5 + ["stored"]

    async def write() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert await until_stored(write, what="x", first_delay=1.0, max_delay=4.0) == "stored"
    assert waits == [1.0, 2.0, 4.0, 4.0, 4.0]

    async def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await until_stored(broken, what="x")
    assert len(waits) == 5


class FlakyAccounts:
    """Account lookups of the training service that find the database unavailable at times."""

    def __init__(self, real: Any, failing_calls: set[int]) -> None:
        self.real, self.failing_calls, self.calls = real, failing_calls, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def session_for_account(self, guild_id: int, account_id: int | None) -> Any:
        self.calls += 1
        if self.calls in self.failing_calls:
            raise StoreUnavailable("SQLITE_BUSY")
        return await self.real.session_for_account(guild_id, account_id)


async def test_training_steps_run_again_when_a_read_finds_the_database_unavailable(
    harness, monkeypatch
):
    # Calls: 1-2 uploading (the first refused), 3 creating the dataset, 4-5 submitting.
    accounts = FlakyAccounts(harness.bot.accounts, {1, 4})
    monkeypatch.setattr(harness.bot.training, "_accounts", accounts)
    assert "#1" in await train(harness, attachments=images(harness, 3))
    training = await wait_state(harness, 1, TrainingState.DONE, TrainingState.FAILED, timeout=20)
    assert (training.state, training.error) == (TrainingState.DONE, None)
    assert accounts.calls >= 5
    assert harness.emu.state.calls["dataset"] == 1
    assert harness.emu.state.calls["train_submit"] == 1
