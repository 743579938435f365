"""`/status`: own tasks, the whole guild for managers, one task re-posted, other guilds hidden."""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from bot.i18n import t
from bot.store import TaskState
from tests.conftest import ADMIN_A, ADMIN_B, CH_A, CH_B, GUILD_A, GUILD_B, MEMBER_A, MEMBER_A2
from tests.genutil import FAST_POLLING, eventually, imagine, result_of, task_id_of, wait_result
from tests.helpers import answer, answer_text, is_ephemeral, message_text


@pytest.fixture
async def gen(harness_factory):
    """A harness that polls quickly, with task #1 (MEMBER_A) and #2 (MEMBER_A2) delivered."""
    h = await harness_factory(miaohua=FAST_POLLING)
    for user_id in (MEMBER_A, MEMBER_A2):
        task_id = task_id_of(await answer_text(await imagine(h, f"by {user_id}", user_id=user_id)))
        await wait_result(h, task_id)
        await wait_delivered(h, task_id)
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


async def wait_delivered(h, task_id: int):
    """Wait until the task is recorded as delivered, and return it."""
    for _ in range(250):
        task = await h.bot.store.tasks.get(task_id)
        if task.state == TaskState.DELIVERED:
            return task
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} was not recorded as delivered")


def message_posts(h) -> int:
    """Messages the bot has created in channels and DMs so far (deleted ones included)."""
    return sum(
        1
        for r in h.fake.requests
        if r.method == "POST" and re.fullmatch(r"/channels/\d+/messages", r.path)
    )


async def test_status_of_a_task_whose_result_is_there_links_it_without_posting(gen):
    result = result_of(gen, 1)[0]
    posts = message_posts(gen)
    link = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{result['id']}"
    for _ in range(10):
        text = await status(gen, MEMBER_A, task=1)
        assert t("status.result_here", "en-US", url=link) in text
    assert message_posts(gen) == posts  # no post, no file, no ping
    assert (await gen.bot.store.tasks.get(1)).result_message_id == int(result["id"])


async def test_status_reposts_a_deleted_result_once_and_then_links_the_new_one(gen):
    assert await gen.fake.delete_message(result_of(gen, 1)[0]["id"])
    posts = message_posts(gen)
    texts = [await status(gen, MEMBER_A, task=1) for _ in range(10)]
    assert message_posts(gen) == posts + 1
    (again,) = result_of(gen, 1)
    assert f"<@{MEMBER_A}>" in again["content"] and again["attachments"]
    task = await gen.bot.store.tasks.get(1)
    assert task.state == TaskState.DELIVERED and task.result_message_id == int(again["id"])
    assert t("status.reposted", "en-US") in texts[0]
    link = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{again['id']}"
    assert all(t("status.result_here", "en-US", url=link) in text for text in texts[1:])


async def test_reposts_have_a_per_member_cooldown_answered_privately(gen):
    assert await gen.fake.delete_message(result_of(gen, 1)[0]["id"])
    assert t("status.reposted", "en-US") in await status(gen, MEMBER_A, task=1)
    assert await gen.fake.delete_message(result_of(gen, 1)[0]["id"])
    posts = message_posts(gen)
    text = await status(gen, MEMBER_A, task=1)  # `status` asserts the answer is ephemeral
    template = re.escape(t("status.repost_cooldown", "en-US", seconds="SECONDS"))
    waited = re.search(template.replace("SECONDS", r"(\d+)"), text)
    assert waited is not None, text
    assert 0 < int(waited[1]) <= gen.settings.limits.repost_cooldown
    assert message_posts(gen) == posts and result_of(gen, 1) == []
    # Another member's cooldown is their own: the admin may have it posted.
    assert t("status.reposted", "en-US") in await status(gen, ADMIN_A, task=1)
    assert len(result_of(gen, 1)) == 1


async def test_a_result_discord_cannot_check_is_linked_not_posted(gen):
    result = result_of(gen, 1)[0]
    gen.fake.fail("GET", rf"/channels/{CH_A}/messages/{result['id']}", 400)
    posts = message_posts(gen)
    text = await status(gen, MEMBER_A, task=1)
    link = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{result['id']}"
    assert t("status.result_unchecked", "en-US", url=link) in text
    assert message_posts(gen) == posts


async def test_a_repost_that_nobody_takes_says_so(gen):
    assert await gen.fake.delete_message(result_of(gen, 1)[0]["id"])
    gen.fake.fail("POST", rf"/channels/{CH_A}/messages", 403)
    gen.fake.world.dm_closed.add(MEMBER_A)
    text = await status(gen, MEMBER_A, task=1)
    assert t("status.repost_failed", "en-US") in text
    assert result_of(gen, 1) == [] and gen.fake.dm_messages(MEMBER_A) == []


async def test_a_result_delivered_by_dm_is_found_there(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    h.fake.fail("POST", rf"/channels/{CH_A}/messages", 403, times=2)  # status message, result
    task_id = task_id_of(await answer_text(await imagine(h, count=1)))
    (dm,) = await eventually(lambda: h.fake.dm_messages(MEMBER_A))
    task = await wait_delivered(h, task_id)
    assert task.result_message_id == int(dm["id"])
    posts = message_posts(h)
    text = await status(h, MEMBER_A, task=task_id)
    link = f"https://discord.com/channels/@me/{dm['channel_id']}/{dm['id']}"
    assert t("status.result_here", "en-US", url=link) in text
    assert message_posts(h) == posts


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
    await gen.bot.store.settings.update(GUILD_A, user_running=5)
    ids = [task_id_of(await answer_text(await imagine(gen, f"q{i}"))) for i in range(3)]
    text = await status(gen, MEMBER_A, task=ids[-1])
    assert f"{t('status.position', 'en-US')}\n2" in text
    overview = await status(gen, MEMBER_A)
    assert f"{t('status.queue', 'en-US')}\n2" in overview
    assert all(f"`#{i}`" in overview for i in ids)
    assert await status(gen, ADMIN_A, GUILD_A) and await status(gen, ADMIN_B, GUILD_B)
    assert "`#" not in await status(gen, ADMIN_B, GUILD_B)


@pytest.mark.slow
async def test_cancel_a_queued_task_gives_back_its_quota(harness_factory):
    from bot.jobs.admission import utc_day

    h = await harness_factory(
        miaohua={**FAST_POLLING, "account_concurrency": 1},
        limits={"user_running": 5},
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
