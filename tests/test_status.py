"""`/status`: own tasks, the whole guild for managers, one task re-posted, other guilds hidden."""

from __future__ import annotations

import asyncio
import time

import pytest

from bot.i18n import t
from bot.store import TaskState
from tests.conftest import ADMIN_A, ADMIN_B, CH_A, CH_B, GUILD_A, GUILD_B, MEMBER_A, MEMBER_A2
from tests.genutil import FAST_POLLING, imagine, result_of, task_id_of, wait_result
from tests.helpers import answer, answer_text, is_ephemeral, message_text


@pytest.fixture
async def gen(harness_factory):
    """A harness that polls quickly, with task #1 (MEMBER_A) and #2 (MEMBER_A2) delivered."""
    h = await harness_factory(miaohua=FAST_POLLING)
    for user_id in (MEMBER_A, MEMBER_A2):
        task_id = task_id_of(await answer_text(await imagine(h, f"by {user_id}", user_id=user_id)))
        await wait_result(h, task_id)
    return h


async def status(h, user_id: int, guild_id: int = GUILD_A, **options):
    channel_id = CH_A if guild_id == GUILD_A else CH_B
    ix = await h.fake.slash(
        "status", user_id=user_id, guild_id=guild_id, channel_id=channel_id, options=options
    )
    body = await answer(ix)
    assert is_ephemeral(ix)
    footers = [
        (e.get("footer") or {}).get("text", "") for e in body.get("data", body).get("embeds") or []
    ]
    return "\n".join([message_text(body), *filter(None, footers)])


async def test_members_see_their_own_tasks_with_links_queue_and_account(gen):
    text = await status(gen, MEMBER_A)
    assert "`#1`" in text and "`#2`" not in text
    assert "discord.com/channels" in text
    assert t("status.title.mine", "en-US") in text
    assert "a***@guild.test: working" in text or "working" in text


async def test_managers_see_the_whole_guild(gen):
    text = await status(gen, ADMIN_A)
    assert "`#1`" in text and "`#2`" in text
    assert t("status.title.guild", "en-US") in text


async def test_status_of_a_delivered_task_reposts_it(gen):
    text = await status(gen, MEMBER_A, task=1)
    assert "Task #1" in text and t("status.reposted", "en-US") in text
    for _ in range(100):
        if len(result_of(gen, 1)) == 2:
            break
        await asyncio.sleep(0.02)
    assert len(result_of(gen, 1)) == 2
    assert (await gen.bot.store.tasks.get(1)).state == TaskState.DELIVERED


async def test_status_of_a_done_undelivered_task_delivers_it(gen):
    source = await gen.bot.store.tasks.get(1)
    store = gen.bot.store.tasks
    stuck = await store.create(
        guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, kind="t2i", model=source.model,
        prompt="stuck", count=1, scale=7, size=source.size,
    )  # fmt: skip
    await store.mark_submitted(stuck.id, "service-id")
    await store.mark_done(stuck.id, source.images[:1], 5)
    await status(gen, MEMBER_A, task=stuck.id)
    result = await wait_result(gen, stuck.id)
    for _ in range(100):
        if (await store.get(stuck.id)).state == TaskState.DELIVERED:
            break
        await asyncio.sleep(0.02)
    task = await store.get(stuck.id)
    assert task.state == TaskState.DELIVERED and task.result_message_id == int(result["id"])


async def test_other_members_tasks_and_other_guilds_tasks_are_not_found(gen):
    assert await status(gen, MEMBER_A2, task=1) == t("status.not_found", "en-US", id=1)
    assert await status(gen, ADMIN_B, GUILD_B, task=1) == t("status.not_found", "en-US", id=1)
    assert await status(gen, ADMIN_B, GUILD_B, task=999) == t("status.not_found", "en-US", id=999)
    assert len(result_of(gen, 1)) == 1  # nothing was re-posted


async def test_queued_tasks_show_their_position_and_the_queue_depth(gen):
    gen.emu.state.settings.generation_time = 1.0
    gen.bot.generation.account_concurrency = 1
    await gen.bot.store.settings.update(GUILD_A, user_concurrency=5)
    ids = [task_id_of(await answer_text(await imagine(gen, f"q{i}"))) for i in range(3)]
    text = await status(gen, MEMBER_A, task=ids[-1])
    assert f"{t('status.position', 'en-US')}\n2" in text
    overview = await status(gen, MEMBER_A)
    assert f"{t('status.queue', 'en-US')}\n2" in overview
    assert all(f"`#{i}`" in overview for i in ids)
    assert await status(gen, ADMIN_A, GUILD_A) and await status(gen, ADMIN_B, GUILD_B)
    assert "`#" not in await status(gen, ADMIN_B, GUILD_B)


async def test_cancel_a_queued_task_gives_back_its_quota(harness_factory):
    from bot.jobs.admission import utc_day

    h = await harness_factory(
        miaohua={**FAST_POLLING, "account_concurrency": 1},
        limits={"user_concurrency": 5},
        emulator={"generation_time": 1.0},
    )
    ids = []
    for _ in range(3):
        ix = await imagine(h, count=2)
        ids.append(task_id_of(await answer_text(ix)))
    day = utc_day(time.time())
    assert await h.bot.store.usage.get(GUILD_A, MEMBER_A, day) == 6
    last = ids[-1]

    async def cancel(user_id: int, task_id: int) -> str:
        ix = await h.fake.slash(
            "cancel", options={"task": task_id}, user_id=user_id, guild_id=GUILD_A,
            channel_id=CH_A,
        )  # fmt: skip
        return await answer_text(ix)

    assert "not found" in await cancel(MEMBER_A2, last)  # someone else's task
    assert "was cancelled" in await cancel(MEMBER_A, last)
    task = await h.bot.store.tasks.get(last)
    assert task.state == TaskState.CANCELLED
    assert await h.bot.store.usage.get(GUILD_A, MEMBER_A, day) == 4
    await h.fake.wait_for_message(
        CH_A, lambda m: int(m["id"]) == task.status_message_id and "cancelled" in m["content"]
    )
    assert "cannot be cancelled" in await cancel(MEMBER_A, last)
    first = await h.bot.store.tasks.get(ids[0])
    assert first.state != TaskState.QUEUED
    assert "cannot be cancelled" in await cancel(MEMBER_A, ids[0])
    assert h.emu.state.calls["task_submit"] <= 2  # the cancelled one never reached Miaohua
