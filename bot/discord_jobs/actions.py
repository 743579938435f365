"""What can be done with a delivered result: rerun, variations, deletion."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import discord

from bot.discord_jobs.downloads import DownloadError
from bot.discord_jobs.requests import guild_limits, request_from_task
from bot.errors import UserFacingError
from bot.images import sniff_content_type
from bot.jobs.models import Delivery
from bot.store import Task

if TYPE_CHECKING:
    from bot.app import MiaohuaBot


async def rerun(
    bot: MiaohuaBot,
    task: Task,
    *,
    user_id: int,
    channel_id: int,
    locale: str | None,
    same_seed: bool = False,
) -> Task:
    """Queue the task's parameters again for `user_id` (charged to them), new seed unless asked."""
    seed = -1
    if same_seed:
        seed = task.seed_used if task.seed_used is not None else task.seed
    request = request_from_task(
        task, user_id=user_id, channel_id=channel_id, locale=locale, seed=seed
    )
    request = dataclasses.replace(request, delivery=await _delivery(bot, task.guild_id, user_id))
    return await bot.generation.enqueue(request, limits=await guild_limits(bot, task.guild_id))


async def _delivery(bot: MiaohuaBot, guild_id: int, user_id: int) -> Delivery:
    """Where a follow-up's result goes: where the member who asked for it chose."""
    prefs = await bot.store.preferences.get(guild_id, user_id)
    return "dm" if prefs.delivery == "dm" else "channel"


async def variation(
    bot: MiaohuaBot, task: Task, index: int, *, user_id: int, channel_id: int, locale: str | None
) -> Task:
    """Queue an img2img of one result image, re-uploaded to the guild's account first."""
    if not 0 <= index < len(task.images):
        raise UserFacingError("result.no_image", index=index + 1)
    limits = await guild_limits(bot, task.guild_id)
    request = request_from_task(task, user_id=user_id, channel_id=channel_id, locale=locale)
    bot.generation.check(request, limits)  # refuse cheaply before downloading and uploading
    url = str(task.images[index].get("large", ""))
    try:
        data = await bot.delivery.fetcher.fetch(url)
    except DownloadError:
        raise UserFacingError("result.image_gone", index=index + 1) from None
    content_type = sniff_content_type(data) or "image/png"
    filename = f"task-{task.id}-{index + 1}.{content_type.rsplit('/', 1)[-1]}"
    session = await bot.accounts.session_for(task.guild_id)
    (init_url,) = await session.upload_images([(filename, data, content_type)])
    request = dataclasses.replace(
        request,
        kind="i2i",
        init_image_url=init_url,
        seed=-1,
        delivery=await _delivery(bot, task.guild_id, user_id),
    )
    return await bot.generation.enqueue(request, limits=limits)


def may_delete(task: Task, user_id: int, permissions: discord.Permissions) -> bool:
    """The requester and members with Manage Messages may delete a result."""
    return user_id == task.user_id or permissions.manage_messages
