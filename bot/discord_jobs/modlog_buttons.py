"""The "Delete result" button under a moderation log entry (persistent: the task id is in it)."""

from __future__ import annotations

import re
import time
from typing import Any

import discord

from bot.discord_jobs import modlog_entries as entries
from bot.discord_jobs.buttons import ViewButton, _guarded, _task_of, button_label
from bot.discord_jobs.removal import Removal, remove_result
from bot.errors import UserFacingError
from bot.i18n import t
from bot.replies import defer, reply
from bot.store import Task
from bot.types import BotInteraction


def may_moderate(permissions: discord.Permissions) -> bool:
    """Moderators: members with Manage Messages or Manage Server."""
    return permissions.manage_messages or permissions.manage_guild


class LogDeleteButton(discord.ui.DynamicItem[ViewButton], template=r"mh:logdel:(?P<task>\d+)"):
    """Delete a task's result from its channel, for moderators, from the log entry."""

    def __init__(self, task_id: int, label: str = "Delete result") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji="❌",  # the one delete emoji of the bot (result button, reaction)
                style=discord.ButtonStyle.danger,
                custom_id=f"mh:logdel:{task_id}",
            )
        )
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> LogDeleteButton:
        return cls(int(match["task"]), button_label(item))

    async def callback(self, interaction: discord.Interaction) -> Any:
        await _guarded(interaction, self._delete)

    async def _delete(self, interaction: BotInteraction) -> None:
        bot = interaction.client
        locale = bot.locale_for(interaction)
        if not may_moderate(interaction.permissions):
            raise UserFacingError("modlog.delete_denied")
        task = await _task_of(interaction, self.task_id)
        await defer(interaction)
        outcome = await remove_result(bot, task)
        if outcome in (Removal.DELETED, Removal.ALREADY_GONE):
            await bot.store.tasks.mark_removed(task.id, interaction.user.id)
        if outcome in (Removal.DELETED, Removal.CANCELLED):
            bot.delivery.moderation.forget(task.id)
            await self._mark_entry(interaction, task, outcome)
        await reply(interaction, t(outcome.value, locale, id=task.id))

    async def _mark_entry(self, interaction: BotInteraction, task: Task, outcome: Removal) -> None:
        """Say on the entry who removed the result; its button goes, there is nothing left."""
        message = interaction.message
        if message is None or not message.embeds:
            return
        locale = interaction.client.delivery.moderation.locale(task.guild_id)
        embed = entries.removed_embed(
            message.embeds[0],
            interaction.user.id,
            locale,
            time.time(),
            cancelled=outcome is Removal.CANCELLED,
        )
        await message.edit(embed=embed, view=None)


def log_entry_view(task: Task, locale: str) -> discord.ui.View:
    """The buttons under an accepted request's log entry."""
    view = discord.ui.View(timeout=None)
    view.add_item(LogDeleteButton(task.id, t("modlog.button.delete", locale)))
    return view
