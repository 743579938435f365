"""A moderator removing a task's result: the posted message, or the task before it runs."""

from __future__ import annotations

import enum
import logging
from typing import TYPE_CHECKING

import discord

from bot.errors import UserFacingError
from bot.store import Task, TaskState

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

log = logging.getLogger(__name__)


class Removal(enum.Enum):
    """What removing a task's result did; each value is the moderator's message key."""

    DELETED = "modlog.removed.deleted"  # the result message is gone now
    ALREADY_GONE = "modlog.removed.already_gone"  # someone deleted it earlier
    CANCELLED = "modlog.removed.cancelled"  # still queued: it will never run
    NOT_YET = "modlog.removed.not_yet"  # running at the service: nothing to delete yet
    NOTHING = "modlog.removed.nothing"  # failed or cancelled: there never was a result


async def remove_result(bot: MiaohuaBot, task: Task) -> Removal:
    """Delete a task's posted result (channel, else the requester's DMs), or cancel it."""
    if task.state == TaskState.QUEUED:
        cancelled = await bot.generation.cancel(task.id, task.guild_id)
        return Removal.CANCELLED if cancelled else Removal.NOT_YET
    if task.state in (TaskState.SUBMITTED, TaskState.DONE):
        return Removal.NOT_YET
    if task.state != TaskState.DELIVERED or not task.result_message_id:
        return Removal.NOTHING
    channel = bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)
    if await _delete(channel.get_partial_message(task.result_message_id)):
        return Removal.DELETED
    # Not in the channel: the result went to the requester's DMs (closed channel, or asked).
    try:
        user = bot.get_user(task.user_id) or await bot.fetch_user(task.user_id)
        dm = user.dm_channel or await user.create_dm()
    except discord.HTTPException as exc:
        log.info("task %s: requester's DMs not reachable (%s)", task.id, exc.status)
        return Removal.ALREADY_GONE
    if await _delete(dm.get_partial_message(task.result_message_id)):
        return Removal.DELETED
    return Removal.ALREADY_GONE


async def _delete(message: discord.PartialMessage) -> bool:
    """Delete a message; False when it is not there. The bot may always delete its own."""
    try:
        await message.delete()
    except discord.NotFound:
        return False
    except discord.Forbidden:
        raise UserFacingError("modlog.delete_forbidden") from None
    return True
