"""A result that fell back to the other place is recorded and linked where it actually is."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bot.i18n import t
from bot.store import Task, TaskState
from tests.conftest import CH_A, GUILD_A, MEMBER_A, Harness
from tests.genutil import (
    FAST_POLLING,
    eventually,
    imagine,
    result_of,
    set_preferences,
    task_id_of,
    wait_result,
)
from tests.helpers import answer, answer_text


@pytest.fixture
async def gen(harness_factory) -> Harness:
    """A harness that polls the emulator quickly."""
    return await harness_factory(miaohua=FAST_POLLING)


async def delivered(h: Harness, task_id: int, timeout: float = 15.0) -> Task:
    """Wait until the task is recorded as delivered; return it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (task := await h.bot.store.tasks.get(task_id)).state != TaskState.DELIVERED:
        assert task.state != TaskState.FAILED and loop.time() < deadline, task.state
        await asyncio.sleep(0.02)
    return task


async def command(h: Harness, name: str, **options: Any) -> dict[str, Any]:
    """Run a slash command as MEMBER_A in CH_A; return its answer."""
    ix = await h.fake.slash(
        name, user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A, options=options
    )
    return await answer(ix)


def status_text(h: Harness, task_id: int) -> str:
    """The current text of the task's status message in the channel."""
    for message in h.fake.channel_messages(CH_A):
        if f"#{task_id}" in (message.get("content") or "") and not message.get("components"):
            return str(message["content"])
    return ""


async def test_a_result_the_channel_refuses_goes_by_dm_and_is_linked_there(gen):
    # The bot may not post in the channel (e.g. its Send Messages permission was removed).
    gen.fake.fail("POST", rf"/channels/{CH_A}/messages", 403, times=1000)
    task_id = task_id_of(await answer_text(await imagine(gen, count=1)))

    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A), timeout=15)
    task = await delivered(gen, task_id)
    assert task.result_message_id == int(dm["id"])
    assert task.delivery == "dm"  # where it is, not where it was asked for
    assert result_of(gen, task_id) == []
    gen.fake.failures.clear()
    await gen.restart()  # the place is stored; the DM channel is looked up again

    link = f"https://discord.com/channels/@me/{dm['channel_id']}/{dm['id']}"
    wrong = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{dm['id']}"
    listing = await answer_text(
        await gen.fake.slash("status", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A)
    )
    assert link in listing and wrong not in listing
    one = await answer_text(
        await gen.fake.slash(
            "status", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A, options={"task": task_id}
        )
    )
    assert link in one and wrong not in one
    (entry,) = (await command(gen, "history"))["embeds"]
    assert entry["url"] == link and f"]({link})" in entry["description"]
    # Found where it is: nothing was posted a second time.
    assert len(gen.fake.dm_messages(MEMBER_A)) == 1 and result_of(gen, task_id) == []


async def test_a_dm_result_refused_by_closed_dms_is_linked_in_the_channel(gen):
    gen.fake.world.dm_closed.add(MEMBER_A)
    await set_preferences(gen, delivery="dm")
    assert (await gen.bot.store.preferences.get(GUILD_A, MEMBER_A)).delivery == "dm"
    task_id = task_id_of(await answer_text(await imagine(gen, count=1)))

    result = await wait_result(gen, task_id, timeout=15)
    task = await delivered(gen, task_id)
    assert task.result_message_id == int(result["id"]) and task.delivery == "channel"
    link = f"https://discord.com/channels/{GUILD_A}/{CH_A}/{result['id']}"
    await eventually(lambda: link in status_text(gen, task_id))
    await gen.restart()

    (entry,) = (await command(gen, "history"))["embeds"]
    assert entry["url"] == link and f"]({link})" in entry["description"]

    # A rerun (its DMs still closed) lands in the channel too, linking its parent there.
    ix = await gen.fake.click(
        result, f"mh:rerun:{task_id}", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    rerun = task_id_of(await answer_text(ix))
    second = await wait_result(gen, rerun, timeout=15)
    source = {f["name"]: f["value"] for f in second["embeds"][0]["fields"]}["Source"]
    assert source == f"[rerun of #{task_id}]({link})"


async def test_a_dm_result_not_checkable_is_neither_linked_wrongly_nor_posted_again(gen):
    await answer(
        await gen.fake.slash(
            "preferences",
            subcommand="set",
            user_id=MEMBER_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
            options={"delivery": "dm"},
        )
    )
    task_id = task_id_of(await answer_text(await imagine(gen, count=1)))
    (dm,) = await eventually(lambda: gen.fake.dm_messages(MEMBER_A), timeout=15)
    assert (await delivered(gen, task_id)).delivery == "dm"
    await gen.restart()  # the bot no longer knows its DM channel with the member
    gen.fake.fail("POST", r"/users/@me/channels", 400, times=1000)

    one = await answer_text(
        await gen.fake.slash(
            "status", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A, options={"task": task_id}
        )
    )
    assert t("status.result_unknown", "en-US") in one
    assert f"/{dm['id']})" not in one  # no link that would not open
    assert len(gen.fake.dm_messages(MEMBER_A)) == 1 and result_of(gen, task_id) == []
