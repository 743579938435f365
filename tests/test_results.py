"""Actions on results: rerun and variations by button and reaction, DMs, deletion, isolation."""

from __future__ import annotations

import asyncio

import pytest

from bot.i18n import t
from bot.store import TaskState
from tests.conftest import ADMIN_A, ADMIN_B, CH_A, CH_B, GUILD_A, GUILD_B, MEMBER_A, MEMBER_A2
from tests.genutil import FAST_POLLING, eventually, imagine, task_id_of, wait_result
from tests.helpers import answer_text, is_ephemeral


@pytest.fixture
async def gen(harness_factory):
    """A harness that polls quickly, with one delivered result of two images (task #1)."""
    h = await harness_factory(miaohua=FAST_POLLING)
    await h.bot.store.settings.update(GUILD_A, user_running=5)
    text = await answer_text(await imagine(h, "a lighthouse at dusk", count=2, seed=77))
    assert task_id_of(text) == 1
    h.result = await wait_result(h, 1)
    await h.idle()  # its delivery recorded: reactions to it are acted on
    return h


async def tasks_after(h, task_id: int, count: int = 1):
    """Wait for `count` tasks newer than `task_id` to exist; return them oldest first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:
        newer = [x for x in await h.bot.store.tasks.recent(GUILD_A, limit=50) if x.id > task_id]
        if len(newer) >= count:
            return sorted(newer, key=lambda x: x.id)
        assert loop.time() < deadline, f"only {len(newer)} newer tasks"
        await asyncio.sleep(0.02)


async def test_rerun_reaction_queues_a_child_charged_to_the_reacting_member(gen):
    await gen.fake.react(gen.result, "🔁", user_id=MEMBER_A2, guild_id=GUILD_A)
    (child,) = await tasks_after(gen, 1)
    assert (child.parent_id, child.user_id, child.seed, child.count) == (1, MEMBER_A2, -1, 2)
    result = await wait_result(gen, child.id)
    assert result["content"] == f"<@{MEMBER_A2}>"
    assert t("result.rerun_of", "en-US", id=1) in str(result["embeds"])


async def test_same_seed_reaction_reuses_the_seed(gen):
    await gen.fake.react(gen.result, "🔂", user_id=MEMBER_A, guild_id=GUILD_A)
    (child,) = await tasks_after(gen, 1)
    assert child.seed == 77 and child.parent_id == 1


async def test_repeated_reactions_within_the_cooldown_are_ignored(gen):
    for _ in range(3):
        await gen.fake.react(gen.result, "🔁", user_id=MEMBER_A2, guild_id=GUILD_A)
    await tasks_after(gen, 1)
    await gen.settled()  # the bot has handled all three reactions
    assert len(await tasks_after(gen, 1)) == 1
    await asyncio.sleep(0.5)  # let the harness's rerun_cooldown run out
    await gen.fake.react(gen.result, "🔁", user_id=MEMBER_A2, guild_id=GUILD_A)
    assert len(await tasks_after(gen, 1, count=2)) == 2


async def test_reactions_on_other_messages_and_from_other_guilds_do_nothing(gen):
    status_id = (await gen.bot.store.tasks.get(1)).status_message_id
    await gen.fake.react((CH_A, status_id), "🔁", user_id=MEMBER_A, guild_id=GUILD_A)
    await gen.fake.react(gen.result, "🔁", user_id=ADMIN_B, guild_id=GUILD_B)
    await gen.fake.react(gen.result, "👍", user_id=MEMBER_A, guild_id=GUILD_A)
    await gen.settled()
    assert [x.id for x in await gen.bot.store.tasks.recent(GUILD_A)] == [1]
    assert await gen.bot.store.tasks.recent(GUILD_B) == []


async def test_refused_reaction_rerun_is_explained_by_dm(gen):
    await gen.bot.store.settings.update(GUILD_A, blocked_words=["lighthouse"])
    await gen.fake.react(gen.result, "🔁", user_id=MEMBER_A2, guild_id=GUILD_A)
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A2))
    assert dm["content"] == t("refused.blocked_word", "en-US", word="lighthouse")


async def test_envelope_reaction_dms_the_originals(gen):
    await gen.fake.react(gen.result, "✉️", user_id=MEMBER_A2, guild_id=GUILD_A)
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A2))
    assert len(dm["attachments"]) == 2 and dm["embeds"][0]["title"] == "Task #1"
    assert {a["width"] for a in dm["attachments"]} == {512}


async def test_delete_reaction_needs_the_requester_or_manage_messages(gen):
    await gen.fake.react(gen.result, "❌", user_id=MEMBER_A2, guild_id=GUILD_A)
    await gen.settled()
    assert gen.fake.message(int(gen.result["id"])) is not None
    await gen.fake.react(gen.result, "❌", user_id=ADMIN_A, guild_id=GUILD_A)
    await eventually(lambda: gen.fake.message(int(gen.result["id"])) is None)


async def test_rerun_button_works_after_a_restart(gen):
    await gen.restart()
    ix = await gen.fake.click(
        gen.result, "mh:rerun:1", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A
    )
    text = await answer_text(ix)
    assert is_ephemeral(ix)
    child_id = task_id_of(text)
    child = await gen.bot.store.tasks.get(child_id)
    assert (child.parent_id, child.user_id) == (1, MEMBER_A2)
    await wait_result(gen, child_id)


async def test_rerun_reaction_works_after_a_restart(gen):
    await gen.restart()
    await gen.fake.react(gen.result, "🔁", user_id=MEMBER_A, guild_id=GUILD_A)
    (child,) = await tasks_after(gen, 1)
    await wait_result(gen, child.id)


async def test_variation_button_runs_img2img_from_that_image(gen):
    ix = await gen.fake.click(
        gen.result, "mh:var:1:1", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    child_id = task_id_of(await answer_text(ix))
    child = await gen.bot.store.tasks.get(child_id)
    assert child.kind == "i2i" and child.parent_id == 1 and "/files/" in child.init_image_url
    await wait_result(gen, child_id)
    assert (await gen.bot.store.tasks.get(child_id)).state in (
        TaskState.DONE,
        TaskState.DELIVERED,
    )


async def test_refused_button_rerun_is_answered_ephemerally(gen):
    await gen.bot.store.settings.update(GUILD_A, daily_quota=1)
    ix = await gen.fake.click(
        gen.result, "mh:rerun:1", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert (await answer_text(ix)).startswith("You reached today's limit of 1 image. ")
    assert is_ephemeral(ix)


async def test_delete_button_checks_who_clicks(gen):
    ix = await gen.fake.click(
        gen.result, "mh:del:1", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A
    )
    assert await answer_text(ix) == t("result.delete_denied", "en-US")
    assert gen.fake.message(int(gen.result["id"])) is not None
    ix = await gen.fake.click(
        gen.result, "mh:del:1", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert await answer_text(ix) == t("result.deleted", "en-US", id=1)
    assert gen.fake.message(int(gen.result["id"])) is None


async def test_a_button_never_acts_on_another_guilds_task(gen):
    ix = await gen.fake.click(
        gen.result, "mh:rerun:1", user_id=ADMIN_B, guild_id=GUILD_B, channel_id=CH_B
    )
    assert await answer_text(ix) == t("result.not_found", "en-US", id=1)
    assert await gen.bot.store.tasks.recent(GUILD_B) == []
    assert len(await gen.bot.store.tasks.recent(GUILD_A)) == 1


async def test_delete_button_shows_the_same_emoji_as_the_footer_and_reaction(gen):
    buttons = [c for row in gen.result["components"] for c in row["components"]]
    (delete,) = [b for b in buttons if b.get("custom_id") == "mh:del:1"]
    assert delete["emoji"]["name"] == "❌"
    assert "❌" in gen.result["embeds"][0]["footer"]["text"]


async def test_rerun_result_links_to_its_parent_result(gen):
    await gen.fake.react(gen.result, "🔁", user_id=MEMBER_A2, guild_id=GUILD_A)
    (child,) = await tasks_after(gen, 1)
    result = await wait_result(gen, child.id)
    (parent,) = [f for f in result["embeds"][0]["fields"] if f["name"] == "Source"]
    url = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{gen.result['id']}"
    assert parent["value"] == f"[{t('result.rerun_of', 'en-US', id=1)}]({url})"
