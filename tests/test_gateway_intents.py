"""The fake gateway sends a session only the events its intents cover, as Discord does.

The bot asks for guilds and guild reactions only: it must not have to read (and spend CPU
on) a MESSAGE_CREATE or MESSAGE_UPDATE for every status and result message it posts.
"""

from __future__ import annotations

import discord
import pytest

from tests.conftest import GUILD_A, MEMBER_A2
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text


@pytest.fixture
async def gen(harness_factory):
    """A harness that polls the emulator quickly."""
    return await harness_factory(miaohua=FAST_POLLING)


async def test_the_bot_reads_reaction_events_but_no_message_events_it_did_not_ask_for(gen):
    seen: list[str] = []

    async def on_message(message: discord.Message) -> None:
        seen.append("MESSAGE_CREATE")

    async def on_raw_message_edit(payload: discord.RawMessageUpdateEvent) -> None:
        seen.append("MESSAGE_UPDATE")

    async def on_raw_message_delete(payload: discord.RawMessageDeleteEvent) -> None:
        seen.append("MESSAGE_DELETE")

    async def on_raw_reaction_add(payload: discord.RawReactionActionEvent) -> None:
        seen.append("MESSAGE_REACTION_ADD")

    for listener in (on_message, on_raw_message_edit, on_raw_message_delete, on_raw_reaction_add):
        gen.bot.add_listener(listener)
    task_id = task_id_of(await answer_text(await imagine(gen, count=1)))
    result = await wait_result(gen, task_id)  # a status message posted and edited, a result
    await gen.fake.react(result, "👍", user_id=MEMBER_A2, guild_id=GUILD_A)
    assert await gen.fake.delete_message(int(result["id"]))
    await gen.fake.gateway.sync()
    assert seen == ["MESSAGE_REACTION_ADD"]  # the member's reaction
