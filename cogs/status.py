"""`/status`: a member's tasks, the guild's queue and account, or one task and its result."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot.cooldown import Cooldowns
from bot.discord_jobs import render
from bot.discord_jobs.dm_links import dm_channel_for
from bot.discord_jobs.events import ResultCheck
from bot.discord_training.status import training_lines
from bot.display import clip
from bot.i18n import t
from bot.replies import defer, reply
from bot.store import Task, TaskState
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

RECENT_LIMIT = 10
_REPOSTABLE = (TaskState.DONE, TaskState.DELIVERED)
_RESULT_NOTES = {
    ResultCheck.FOUND: "status.result_here",
    ResultCheck.UNKNOWN: "status.result_unchecked",
}


@app_commands.guild_only()
class StatusCog(commands.Cog):
    """Where tasks stand."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot
        # Per (guild, member): re-posting uploads the images again and pings the requester.
        self._reposts: Cooldowns[tuple[int, int]] = Cooldowns(
            self.bot.settings.limits.repost_cooldown
        )

    @app_commands.command(name=_T("status"), description=_T("Show your tasks, or one task"))
    @app_commands.rename(task=_T("task"))
    @app_commands.describe(
        task=_T("A task number: show it and link its result, posting it again if it was deleted")
    )
    async def status(
        self, interaction: BotInteraction, task: app_commands.Range[int, 1] | None = None
    ) -> None:
        await defer(interaction)
        if task is None:
            await self._overview(interaction)
        else:
            await self._one(interaction, task)

    @app_commands.command(name=_T("cancel"), description=_T("Cancel a task still in the queue"))
    @app_commands.rename(task=_T("task"))
    @app_commands.describe(task=_T("The task number"))
    async def cancel(self, interaction: BotInteraction, task: app_commands.Range[int, 1]) -> None:
        assert interaction.guild_id is not None
        locale = self.bot.locale_for(interaction)
        found = await self.bot.store.tasks.get_in_guild(interaction.guild_id, task)
        may = interaction.permissions.manage_messages or interaction.permissions.manage_guild
        if found is None or (found.user_id != interaction.user.id and not may):
            await reply(interaction, t("status.not_found", locale, id=task))
            return
        if not await self.bot.generation.cancel(task, found.guild_id):
            await reply(interaction, t("cancel.too_late", locale, id=task))
            return
        await reply(interaction, t("cancel.done", locale, id=task))

    async def _one(self, interaction: BotInteraction, task_id: int) -> None:
        assert interaction.guild_id is not None
        locale = self.bot.locale_for(interaction)
        task = await self.bot.store.tasks.get_in_guild(interaction.guild_id, task_id)
        sees_all = interaction.permissions.manage_guild
        if task is None and await self.bot.store.tasks.was_pruned(interaction.guild_id, task_id):
            days = f"{self.bot.settings.storage.retention_days:g}"
            await reply(interaction, t("result.too_old", locale, id=task_id, days=days))
            return
        if task is None or (task.user_id != interaction.user.id and not sees_all):
            await reply(interaction, t("status.not_found", locale, id=task_id))
            return
        note = None
        if task.state in _REPOSTABLE:
            note = await self._result_note(interaction, task, locale)
            task = await self.bot.store.tasks.get(task.id) or task  # a re-post moved its link
        embed = self._task_embed(task, locale)
        if note is not None:
            embed.add_field(name=t("status.result", locale), value=note, inline=False)
        await reply(interaction, embed=embed)

    async def _result_note(self, interaction: BotInteraction, task: Task, locale: str) -> str:
        """Link the task's result if it is still there, else post it again (once per cooldown)."""
        if task.removed_by is not None:
            return t("status.removed", locale, moderator=task.removed_by)
        if task.state == TaskState.DELIVERED:
            found = await self.bot.delivery.find_result(task)
            if found.check is not ResultCheck.GONE:
                if found.url is None:  # its DM channel could not be looked up either
                    return t("status.result_unknown", locale)
                return t(_RESULT_NOTES[found.check], locale, url=found.url)
        assert interaction.guild_id is not None
        wait = self._reposts.try_start((interaction.guild_id, interaction.user.id))
        if wait > 0:
            return t("status.repost_cooldown", locale, seconds=math.ceil(wait))
        posted = await self.bot.generation.redeliver(task.id, replacing=task.result_message_id)
        return t("status.reposted" if posted else "status.repost_failed", locale)

    def _task_embed(self, task: Task, locale: str) -> discord.Embed:
        embed = discord.Embed(
            title=t("status.task_title", locale, id=task.id),
            description=render.task_summary(task, locale),
            colour=render.EMBED_COLOUR,
        )
        embed.add_field(name=t("status.requester", locale), value=f"<@{task.user_id}>")
        if task.state == TaskState.QUEUED:
            position = self.bot.generation.queue_position(task.id, task.guild_id)
            if position is not None:
                embed.add_field(name=t("status.position", locale), value=str(position))
        if task.state == TaskState.SUBMITTED and task.wait_time is not None:
            embed.add_field(name=t("status.ahead", locale), value=str(task.wait_time))
        if task.state == TaskState.FAILED:
            embed.add_field(
                name=t("status.reason", locale), value=render.failure_reason(task, locale)
            )
        return embed

    async def _overview(self, interaction: BotInteraction) -> None:
        assert interaction.guild_id is not None
        guild_id = interaction.guild_id
        locale = self.bot.locale_for(interaction)
        sees_all = interaction.permissions.manage_guild
        user_id = None if sees_all else interaction.user.id
        recent = await self.bot.store.tasks.recent(guild_id, user_id, RECENT_LIMIT)
        active = [task for task in recent if task.active]
        finished = [task for task in recent if not task.active]
        title = "status.title.guild" if sees_all else "status.title.mine"
        embed = discord.Embed(title=t(title, locale), colour=render.EMBED_COLOUR)
        # The member's own results in DMs get a link that opens for them (nobody else's).
        dm_channel_id = await dm_channel_for(interaction.user, finished)
        embed.add_field(
            name=t("status.active", locale), value=self._lines(active, locale), inline=False
        )
        embed.add_field(
            name=t("status.recent", locale),
            value=self._lines(finished, locale, interaction.user.id, dm_channel_id),
            inline=False,
        )
        trainings = await training_lines(self.bot, guild_id, user_id, locale)
        if trainings:
            embed.add_field(
                name=t("status.trainings", locale),
                value=clip("\n".join(trainings), render.FIELD_MAX),
                inline=False,
            )
        embed.add_field(
            name=t("status.queue", locale), value=str(self.bot.generation.queue_depth(guild_id))
        )
        embed.add_field(
            name=t("status.account", locale), value=await self._account(guild_id, locale)
        )
        await reply(interaction, embed=embed)

    def _lines(
        self,
        tasks: list[Task],
        locale: str,
        viewer: int | None = None,
        dm_channel_id: int | None = None,
    ) -> str:
        """One line per task; the viewer's own results in DMs link to `dm_channel_id`."""
        if not tasks:
            return t("status.none", locale)
        text = "\n".join(
            render.task_summary(task, locale, dm_channel_id if task.user_id == viewer else None)
            for task in tasks
        )
        return clip(text, render.FIELD_MAX)

    async def _account(self, guild_id: int, locale: str) -> str:
        row = await self.bot.store.accounts.get(guild_id)
        if row is None:
            demo = self.bot.accounts.has_demo
            return t("status.account.demo" if demo else "status.account.none", locale)
        key = "status.account.ok" if row.token_ok else "status.account.broken"
        return t(key, locale, email=row.email_hint)


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(StatusCog(bot))
