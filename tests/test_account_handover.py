"""Replacing or removing a guild's account while its work runs: the work finishes on it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.accounts import AccountManager
from bot.i18n import t
from bot.jobs import NoAccount
from bot.store import RunningWork, TaskState
from bot.store.trainings import TrainingState
from cogs.account import running_note
from tests.conftest import ACCOUNTS, ADMIN_A, CH_A, GUILD_A, MEMBER_A, MEMBER_A2
from tests.genutil import FAST_POLLING, eventually, imagine, is_accepted, result_of, task_id_of
from tests.helpers import answer_text, is_ephemeral
from tests.test_reliability import all_finished
from tests.test_training import images, train, wait_state

OLD_EMAIL = ACCOUNTS[GUILD_A][0]
NEW_EMAIL, NEW_PASSWORD = "second@guild.test", "pw-second-Secret3"
# Long enough that the admin's command surely lands while the tasks run at the service.
SLOW = {"generation_time": 3.0, "training_time": 3.0}
ROOMY = {"user_running": 10, "daily_quota": 100}


async def _slow_harness(harness_factory, concurrency: int = 4) -> Any:
    h = await harness_factory(
        miaohua={**FAST_POLLING, "account_concurrency": concurrency}, limits=ROOMY, emulator=SLOW
    )
    h.emu.add_account(NEW_EMAIL, NEW_PASSWORD)
    return h


async def _running_tasks(h, count: int) -> list[int]:
    ids = []
    for n in range(count):
        user = (MEMBER_A, MEMBER_A2)[n % 2]
        text = await answer_text(await imagine(h, prompt=f"fox {n}", user_id=user, count=1))
        assert is_accepted(text), text
        ids.append(task_id_of(text))

    async def all_submitted() -> bool:
        tasks = [await h.bot.store.tasks.get(i) for i in ids]
        return all(task.state == TaskState.SUBMITTED for task in tasks)

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not await all_submitted():
        assert loop.time() < deadline, "the tasks were not submitted"
        await asyncio.sleep(0.02)
    return ids


async def _set_account(h, email: str, password: str) -> str:
    ix = await h.fake.slash(
        "account", subcommand="set", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    await ix.response()
    submitted = await h.fake.submit_modal(
        "account:set",
        {"email": email, "password": password},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    text = await answer_text(submitted)
    assert is_ephemeral(submitted)
    return text


async def _remove_account(h) -> str:
    ix = await h.fake.slash(
        "account", subcommand="remove", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    return await answer_text(ix)


def _owners(h, ids: list[int], tasks: list) -> set[str]:
    service_ids = {task.service_task_id for task in tasks if task.id in ids}
    return {h.emu.state.tasks[s].owner for s in service_ids}


@pytest.mark.slow
async def test_switching_account_while_tasks_run_delivers_every_one(harness_factory):
    h = await _slow_harness(harness_factory)
    old_id = (await h.bot.store.accounts.get(GUILD_A)).id
    ids = await _running_tasks(h, 3)

    text = await _set_account(h, NEW_EMAIL, NEW_PASSWORD)
    assert "saved" in text
    assert "3 tasks are still running on the previous account; they will finish on it." in text
    new = await h.bot.store.accounts.get(GUILD_A)
    assert new.id != old_id

    tasks = await all_finished(h, ids, timeout=30)
    assert [task.state for task in tasks] == [TaskState.DELIVERED] * 3, [t.error for t in tasks]
    for task in tasks:
        assert task.account_id == old_id and len(result_of(h, task.id)) == 1
    assert _owners(h, ids, tasks) == {OLD_EMAIL}  # each was polled on the account that ran it
    # The old credentials were kept for them only, and are gone once they finished.
    await eventually(lambda: old_id not in h.bot.accounts._retired, timeout=5)
    assert await h.bot.store.accounts.get_by_id(old_id) is None

    # New work goes to the new account.
    h.emu.state.settings.generation_time = 0.05
    text = await answer_text(await imagine(h, prompt="after the switch", count=1))
    (after,) = await all_finished(h, [task_id_of(text)])
    assert after.state == TaskState.DELIVERED and after.account_id == new.id
    assert _owners(h, [after.id], [after]) == {NEW_EMAIL}


@pytest.mark.slow
async def test_removing_account_while_tasks_run_finishes_them_even_across_a_restart(
    harness_factory,
):
    h = await _slow_harness(harness_factory, concurrency=2)
    old_id = (await h.bot.store.accounts.get(GUILD_A)).id
    ids = await _running_tasks(h, 2)
    waiting = task_id_of(await answer_text(await imagine(h, prompt="queued", count=1)))
    assert h.bot.generation.queue_depth(GUILD_A) == 1  # both slots are taken

    text = await _remove_account(h)
    assert "removed" in text
    assert (
        "2 tasks are still running on the removed account; they will finish on it, "
        "then the account's credentials are deleted."
    ) in text
    assert "1 queued task has not been sent to Miaohua yet: it will fail unless" in text
    assert await h.bot.store.accounts.get(GUILD_A) is None
    # New tasks are refused: the server has no account for new work.
    refused = await answer_text(await imagine(h, prompt="no account now", count=1))
    assert "/account set" in refused and "Accepted" not in refused

    await h.restart()  # the retired credentials come back from the database
    tasks = await all_finished(h, [*ids, waiting], timeout=30)
    states = [task.state for task in tasks]
    assert states == [TaskState.DELIVERED] * 2 + [TaskState.FAILED], [t.error for t in tasks]
    assert tasks[-1].error == "no_account"  # as the admin was told; its requester is too
    await h.fake.wait_for_message(
        CH_A, lambda m: m["content"].startswith(f"<@{MEMBER_A}> your task #{waiting} failed")
    )
    assert _owners(h, ids, tasks) == {OLD_EMAIL}
    await eventually(lambda: not h.bot.accounts._retired, timeout=5)
    assert await h.bot.store.accounts.get_by_id(old_id) is None


@pytest.mark.slow
async def test_switching_account_during_a_training_finishes_it_on_the_old_account(
    harness_factory,
):
    h = await _slow_harness(harness_factory)
    old_id = (await h.bot.store.accounts.get(GUILD_A)).id
    text = await train(h, attachments=images(h, 3), trigger_word="ink")
    assert "#1" in text
    await wait_state(h, 1, TrainingState.TRAINING)

    text = await _set_account(h, NEW_EMAIL, NEW_PASSWORD)
    assert "1 training is still running on the previous account; it will finish on it." in text

    training = await wait_state(h, 1, TrainingState.DONE, TrainingState.FAILED, timeout=30)
    assert training.state == TrainingState.DONE, training.error
    assert training.account_id == old_id
    (service_training,) = h.emu.state.trainings.values()
    assert service_training.owner == OLD_EMAIL
    await eventually(lambda: old_id not in h.bot.accounts._retired, timeout=5)
    assert await h.bot.store.accounts.get_by_id(old_id) is None


def test_running_note_is_plural_correct_in_english_and_says_nothing_when_idle():
    def note(tasks: int, trainings: int, locale: str = "en-US", removed: bool = False) -> str:
        return running_note(RunningWork(tasks, trainings), locale, removed=removed)

    assert note(0, 0) == ""
    assert note(1, 0).startswith("1 task is still running on the previous account; it will")
    assert note(2, 0).startswith("2 tasks are still running on the previous account; they will")
    assert note(0, 1).startswith("1 training is still running")
    assert note(1, 1).startswith("1 task and 1 training are still running")
    assert note(3, 2, removed=True).startswith("3 tasks and 2 trainings are still running on the")
    assert "removed account" in note(3, 2, removed=True)
    chinese = note(2, 1, "zh-CN")
    assert "2 个任务和1 个训练" in chinese and "之前的账号" in chinese
    assert t("account.running.replaced.one", "zh-CN", work="x").startswith("x仍在")


async def test_an_account_held_by_a_submission_in_flight_is_not_deleted(harness):
    # A task being submitted records its account only once the service answers.
    bot = harness.bot
    harness.emu.add_account(NEW_EMAIL, NEW_PASSWORD)
    bound = await bot.accounts.acquire(GUILD_A)
    assert not await bot.accounts.set_account(GUILD_A, NEW_EMAIL, NEW_PASSWORD)
    assert await bot.store.accounts.get_by_id(bound.account_id) is not None
    await bot.accounts.release(bound)  # the submission failed: nothing refers to it any more
    assert await bot.store.accounts.get_by_id(bound.account_id) is None


async def test_a_lookup_racing_a_removal_does_not_bring_the_account_back(harness):
    bot = harness.bot
    # A manager with nothing cached yet (as after a restart), so the lookup reads the store.
    accounts = AccountManager(
        bot.store, bot.v1b, bot.secrets, demo_provisioner=bot.demo_provisioner
    )
    lookup = asyncio.create_task(accounts.current(GUILD_A))
    await asyncio.sleep(0)  # the lookup has sent its read of the (still current) account
    await accounts.remove(GUILD_A)
    assert (await lookup).account_id is not None  # it answered what was current when asked
    with pytest.raises(NoAccount):
        await accounts.current(GUILD_A)  # but did not cache it past the removal
