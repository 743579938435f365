"""The bot's DM channel with a member: a link to a result sent there needs its id."""

from __future__ import annotations

import logging
from collections.abc import Iterable

import discord

from bot.store import Task

log = logging.getLogger(__name__)


async def dm_channel_for(user: discord.User | discord.Member, tasks: Iterable[Task]) -> int | None:
    """The id of the bot's DM channel with `user` when one of their results is there.

    Not stored with the task: discord.py caches it after the first lookup. None when no
    result of theirs is in DMs, or when Discord cannot be asked.
    """
    mine_in_dms = (
        task.user_id == user.id and task.delivery == "dm" and task.result_message_id
        for task in tasks
    )
    if not any(mine_in_dms):
        return None
    try:
        return (await user.create_dm()).id
    except discord.HTTPException as exc:
        log.info("DM channel of %s unknown (%s)", user.id, exc.status)
        return None
