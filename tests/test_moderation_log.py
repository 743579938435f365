"""The moderation log: `/settings log-channel`, entries for accepted and refused requests,
deleting a result from its entry, through the real client on the fake Discord."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.discord_jobs.render import jump_url
from bot.i18n import t
from bot.store import TaskState
from fakediscord import payloads
from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A, MEMBER_A2, NSFW_A, Harness
from tests.genutil import FAST_POLLING, eventually, imagine, task_id_of, wait_result
from tests.helpers import answer, answer_text, is_ephemeral, message_text, png_bytes

# Any channel other than the one members generate in serves as the log channel.
LOG = NSFW_A
NO_PERMS_CH = 2099
# Markdown, a link and mentions: an entry must show them as typed, never render them.
HOSTILE = "@everyone **bold** [free](https://evil.test) <@3003> ```end```"


async def set_log_channel(h: Harness, channel_id: int | None, *, user_id: int = ADMIN_A) -> str:
    """Run /settings log-channel (without a channel: turn the log off); return the answer."""
    options = {"channel": channel_id} if channel_id is not None else {}
    ix = await h.fake.slash(
        "settings",
        subcommand="log-channel",
        user_id=user_id,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options=options,
    )
    return await answer_text(ix)


def entries(h: Harness, channel_id: int = LOG) -> list[dict[str, Any]]:
    """The bot's messages in the log channel."""
    return h.fake.channel_messages(channel_id)


def embed_of(message: dict[str, Any]) -> dict[str, Any]:
    (embed,) = message["embeds"]
    return embed


def field(message: dict[str, Any], name: str) -> str:
    """The value of the embed field called `name`."""
    for f in embed_of(message).get("fields") or []:
        if f["name"] == name:
            return str(f["value"])
    raise AssertionError(f"no field {name!r} in {embed_of(message)}")


def posts_to(h: Harness, channel_id: int) -> list[Any]:
    """The bot's POSTs of messages to a channel, as recorded by the fake."""
    path = f"/channels/{channel_id}/messages"
    return [r for r in h.fake.requests if r.method == "POST" and r.path.endswith(path)]


@pytest.fixture
async def logged(harness_factory) -> Harness:
    """A quickly polling harness whose Guild A logs to LOG."""
    h = await harness_factory(miaohua=FAST_POLLING)
    assert (await set_log_channel(h, LOG)).startswith(t("settings.saved", "en-US"))
    return h


async def generate(h: Harness, prompt: str = "a lighthouse at dusk", **options: Any) -> int:
    """/imagine as MEMBER_A; wait for the result and the bot to go idle; return the task id."""
    task_id = task_id_of(await answer_text(await imagine(h, prompt, **options)))
    await wait_result(h, task_id)
    await h.idle()
    return task_id


async def test_an_accepted_request_is_logged_with_everything_a_moderator_needs(logged):
    h = logged
    task_id = await generate(h, HOSTILE, negative_prompt="blurry <@3001>")
    (entry,) = entries(h)
    task = await h.bot.store.tasks.get(task_id)
    embed = embed_of(entry)
    assert embed["title"] == t("modlog.accepted.title", "en-US", id=task_id)
    assert field(entry, "Requester") == f"<@{MEMBER_A}>"
    assert field(entry, "Channel") == f"<#{CH_A}>"
    assert field(entry, "Model") == f"`{task.model}`"
    # The prompt is shown as typed, inside a code block the prompt cannot close.
    assert embed["description"].startswith("```\n") and embed["description"].endswith("\n```")
    assert "@everyone **bold** [free](https://evil.test) <@3003>" in embed["description"]
    assert embed["description"].count("```") == 2
    assert "blurry <@3001>" in field(entry, "Negative prompt")
    # Once the result is posted, the entry links to it.
    result_url = jump_url(GUILD_A, CH_A, task.result_message_id)
    assert f"({result_url})" in field(entry, "Link")
    # Nobody is pinged by an entry, whatever the prompt says.
    (post,) = posts_to(h, LOG)
    assert post.json["allowed_mentions"] == {"parse": []}
    buttons = [c for row in entry["components"] for c in row["components"]]
    assert [b["custom_id"] for b in buttons] == [f"mh:logdel:{task_id}"]
    assert buttons[0]["label"] == "Delete result"


async def test_the_entry_links_the_status_message_until_the_result_is_posted(harness_factory):
    # Slow generation: the entry is posted long before the result.
    h = await harness_factory(miaohua=FAST_POLLING, emulator={"generation_time": 30.0})
    await set_log_channel(h, LOG)
    task_id = task_id_of(await answer_text(await imagine(h, "a slow painting")))
    entry = await h.fake.wait_for_message(LOG, lambda m: bool(m.get("embeds")))
    status_id = (await h.bot.store.tasks.get(task_id)).status_message_id
    assert h.fake.message(status_id)["channel_id"] == str(CH_A)
    assert f"({jump_url(GUILD_A, CH_A, status_id)})" in field(entry, "Link")
    assert (await h.bot.store.tasks.get(task_id)).result_message_id is None


async def test_reruns_and_variations_are_logged_too(logged):
    h = logged
    first = await generate(h)
    result = (await h.bot.store.tasks.get(first)).result_message_id
    result_message = h.fake.message(result)
    for custom_id in (f"mh:rerun:{first}", f"mh:var:{first}:0"):
        ix = await h.fake.click(
            result_message, custom_id, user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A
        )
        await wait_result(h, task_id_of(await answer_text(ix)))
    await h.idle()
    logged_ids = [embed_of(m)["title"] for m in entries(h)]
    assert logged_ids == [t("modlog.accepted.title", "en-US", id=n) for n in (1, 2, 3)]
    for entry in entries(h)[1:]:
        assert field(entry, "Requester") == f"<@{MEMBER_A2}>"
        assert field(entry, "From") == t("modlog.origin.rerun", "en-US", id=first)


async def test_a_blocked_word_refusal_is_logged(logged):
    h = logged
    await h.bot.store.settings.update(GUILD_A, blocked_words=["dragon"])
    ix = await imagine(h, "a **Dragon** by <@3001>", negative_prompt="ugly")
    assert await answer_text(ix) == t("refused.blocked_word", "en-US", word="dragon")
    await h.idle()
    (entry,) = entries(h)
    embed = embed_of(entry)
    assert embed["title"] == t("modlog.refused.title", "en-US")
    assert "a **Dragon** by <@3001>" in embed["description"]
    assert field(entry, "Requester") == f"<@{MEMBER_A}>"
    assert field(entry, "Channel") == f"<#{CH_A}>"
    assert field(entry, "Blocked word") == "`dragon`"
    assert "ugly" in field(entry, "Negative prompt")
    assert not entry.get("components")  # nothing was generated: nothing to delete
    assert await h.bot.store.tasks.recent(GUILD_A) == []


async def test_an_img2img_refused_for_a_blocked_word_is_logged_before_any_upload(logged):
    h = logged
    await h.bot.store.settings.update(GUILD_A, blocked_words=["dragon"])
    image = h.fake.add_attachment(png_bytes(), "fox.png", "image/png")
    ix = await h.fake.slash(
        "img2img",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"prompt": "a fox", "negative_prompt": "no dragons"},
        attachments={"image": image},
    )
    assert await answer_text(ix) == t("refused.blocked_word", "en-US", word="dragon")
    await h.idle()
    (entry,) = entries(h)
    assert embed_of(entry)["title"] == t("modlog.refused.title", "en-US")
    assert field(entry, "Blocked word") == "`dragon`"
    assert "no dragons" in field(entry, "Negative prompt")


async def test_a_moderator_deletes_a_result_from_its_entry(logged):
    h = logged
    task_id = await generate(h)
    result_id = (await h.bot.store.tasks.get(task_id)).result_message_id
    (entry,) = entries(h)
    ix = await h.fake.click(
        entry, f"mh:logdel:{task_id}", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=LOG
    )
    assert await answer_text(ix) == t("modlog.removed.deleted", "en-US", id=task_id)
    assert is_ephemeral(ix)
    assert h.fake.message(result_id) is None  # gone from the public channel, images and all
    (entry,) = entries(h)
    assert field(entry, "Result deleted").startswith(f"by <@{ADMIN_A}>, <t:")
    assert not entry.get("components")  # nothing left to delete


async def test_a_result_a_moderator_deleted_is_never_posted_again(logged):
    h = logged
    task_id = await generate(h)
    (entry,) = entries(h)
    ix = await h.fake.click(
        entry, f"mh:logdel:{task_id}", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=LOG
    )
    assert await answer_text(ix) == t("modlog.removed.deleted", "en-US", id=task_id)
    assert (await h.bot.store.tasks.get(task_id)).removed_by == ADMIN_A
    await h.restart()
    posted_before = len(posts_to(h, CH_A))
    ix = await h.fake.slash(
        "status",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"task": task_id},
    )
    body = await answer(ix)
    shown = "\n".join(
        [message_text(body), *(str(e) for e in body.get("data", body).get("embeds") or [])]
    )
    assert t("status.removed", "en-US", moderator=ADMIN_A) in shown
    await h.idle()
    assert len(posts_to(h, CH_A)) == posted_before  # not posted again
    assert not await h.bot.generation.redeliver(task_id)
    history = await h.fake.slash(
        "history", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A, options={}
    )
    assert f"#{task_id}" not in str(await answer(history))


async def test_only_moderators_may_delete_from_the_log(logged):
    h = logged
    task_id = await generate(h)
    result_id = (await h.bot.store.tasks.get(task_id)).result_message_id
    (entry,) = entries(h)
    for user_id in (MEMBER_A, MEMBER_A2):  # the requester is no moderator either
        ix = await h.fake.click(
            entry, f"mh:logdel:{task_id}", user_id=user_id, guild_id=GUILD_A, channel_id=LOG
        )
        assert await answer_text(ix) == t("modlog.delete_denied", "en-US")
    assert h.fake.message(result_id) is not None
    assert entries(h)[0]["embeds"] == entry["embeds"]
    # Manage Messages is enough.
    h.fake.set_permissions(GUILD_A, MEMBER_A2, manage_messages=True)
    ix = await h.fake.click(
        entry, f"mh:logdel:{task_id}", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=LOG
    )
    assert await answer_text(ix) == t("modlog.removed.deleted", "en-US", id=task_id)
    assert h.fake.message(result_id) is None


async def test_without_a_log_channel_nothing_is_logged(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    await set_log_channel(h, LOG)
    assert (await set_log_channel(h, None)).startswith(t("settings.saved", "en-US"))
    assert (await h.bot.store.settings.get(GUILD_A)).log_channel_id is None
    await h.bot.store.settings.update(GUILD_A, blocked_words=["dragon"])
    await generate(h)
    await answer_text(await imagine(h, "a dragon"))
    await h.idle()
    assert entries(h) == []
    assert posts_to(h, LOG) == []


async def test_the_setting_and_the_delete_button_survive_a_restart(logged):
    h = logged
    await h.restart()
    task_id = await generate(h)
    (entry,) = entries(h)
    await h.restart()
    ix = await h.fake.slash(
        "settings", subcommand="show", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert f"<#{LOG}>" in await answer_text(ix)
    ix = await h.fake.click(
        entry, f"mh:logdel:{task_id}", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=LOG
    )
    assert await answer_text(ix) == t("modlog.removed.deleted", "en-US", id=task_id)
    await h.idle()
    assert len(entries(h)) == 1  # a restart posts no entry twice


async def test_entries_are_in_the_guild_language(logged):
    h = logged
    await h.bot.store.settings.update(GUILD_A, language="zh-CN", blocked_words=["dragon"])
    task_id = await generate(h)  # the member's own client is in English
    await answer_text(await imagine(h, "a dragon"))
    await h.idle()
    accepted, refused = entries(h)
    assert embed_of(accepted)["title"] == t("modlog.accepted.title", "zh-CN", id=task_id)
    assert field(accepted, t("modlog.field.requester", "zh-CN")) == f"<@{MEMBER_A}>"
    buttons = [c for row in accepted["components"] for c in row["components"]]
    assert buttons[0]["label"] == "删除结果"
    assert embed_of(refused)["title"] == t("modlog.refused.title", "zh-CN")
    ix = await h.fake.click(
        accepted, f"mh:logdel:{task_id}", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=LOG
    )
    await answer_text(ix)
    assert t("modlog.field.deleted", "zh-CN") in message_text(entries(h)[0])


@pytest.mark.parametrize("status", [403, 404])  # permissions taken away; channel deleted
async def test_a_log_channel_refusing_posts_never_breaks_generation(logged, caplog, status):
    h = logged
    h.fake.fail("POST", rf"/channels/{LOG}/messages", status, times=3)
    await h.bot.store.settings.update(GUILD_A, blocked_words=["dragon"], user_running=5)
    with caplog.at_level(logging.WARNING, logger="bot.discord_jobs.modlog"):
        first = await generate(h)
        second = await generate(h, "a second lighthouse")
        await answer_text(await imagine(h, "a dragon"))
        await h.idle()
    for task_id in (first, second):
        assert (await h.bot.store.tasks.get(task_id)).state == TaskState.DELIVERED
    assert entries(h) == []
    warnings = [r for r in caplog.records if "refuses posts" in r.getMessage()]
    assert len(warnings) == 1  # said once, not once per entry
    # The setting is kept, and /settings show says what is wrong.
    assert (await h.bot.store.settings.get(GUILD_A)).log_channel_id == LOG
    ix = await h.fake.slash(
        "settings", subcommand="show", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert t("settings.log_failing", "en-US", status=status) in await answer_text(ix)
    # Once the channel accepts posts again, entries resume and the warning goes.
    third = await generate(h, "a third lighthouse")
    (entry,) = entries(h)
    assert embed_of(entry)["title"] == t("modlog.accepted.title", "en-US", id=third)
    ix = await h.fake.slash(
        "settings", subcommand="show", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "⚠️" not in await answer_text(ix)


async def test_a_channel_the_bot_cannot_post_in_is_refused_with_the_missing_permissions(
    harness,
):
    h = harness
    h.fake.add_channel(GUILD_A, NO_PERMS_CH, "mods-only")
    denied = payloads.SEND_MESSAGES | payloads.EMBED_LINKS
    h.fake.world.channels[NO_PERMS_CH]["permission_overwrites"] = [
        {"id": str(h.fake.bot_user_id), "type": 1, "allow": "0", "deny": str(denied)}
    ]
    await h.restart()  # the bot learns the new channel from its guild's GUILD_CREATE
    text = await set_log_channel(h, NO_PERMS_CH)
    assert text == t(
        "settings.log_unusable",
        "en-US",
        channel=f"<#{NO_PERMS_CH}>",
        permissions="Send Messages, Embed Links",
    )
    assert (await h.bot.store.settings.get(GUILD_A)).log_channel_id is None


async def test_only_manage_server_may_choose_the_log_channel(harness):
    text = await set_log_channel(harness, LOG, user_id=MEMBER_A)
    assert text == t("errors.missing_permissions", "en-US")
    assert (await harness.bot.store.settings.get(GUILD_A)).log_channel_id is None


async def test_deleting_from_the_log_before_the_result_exists(harness_factory):
    # One task at the service at a time, and a slow one: the second waits in the bot's queue.
    h = await harness_factory(
        miaohua={**FAST_POLLING, "account_concurrency": 1}, emulator={"generation_time": 60.0}
    )
    await set_log_channel(h, LOG)
    await h.bot.store.settings.update(GUILD_A, user_running=5)
    running = task_id_of(await answer_text(await imagine(h, "a slow painting")))
    waiting = task_id_of(await answer_text(await imagine(h, "another slow painting")))
    await h.fake.wait_for_message(LOG, lambda _: len(entries(h)) == 2)
    await h.restart()  # unfinished tasks are resumed, their entries not posted again
    await h.settled()
    await eventually(lambda: len(h.bot.delivery.moderation) == 0)  # nothing being posted
    first, second = entries(h)
    assert [embed_of(m)["title"] for m in (first, second)] == [
        t("modlog.accepted.title", "en-US", id=n) for n in (running, waiting)
    ]
    ix = await h.fake.click(
        first, f"mh:logdel:{running}", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=LOG
    )
    assert await answer_text(ix) == t("modlog.removed.not_yet", "en-US", id=running)
    assert entries(h)[0]["components"]  # still there to use once the result is posted
    ix = await h.fake.click(
        second, f"mh:logdel:{waiting}", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=LOG
    )
    assert await answer_text(ix) == t("modlog.removed.cancelled", "en-US", id=waiting)
    assert (await h.bot.store.tasks.get(waiting)).state == TaskState.CANCELLED
    assert field(entries(h)[1], "Task cancelled").startswith(f"by <@{ADMIN_A}>")
    assert len(entries(h)) == 2
