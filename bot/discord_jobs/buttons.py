"""Persistent result buttons: the task id lives in the custom id, so they survive restarts."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import discord

from bot.discord_jobs import actions, render
from bot.discord_jobs.remix import RemixDraft
from bot.discord_jobs.remix_form import RemixModal
from bot.errors import UserFacingError
from bot.i18n import t
from bot.replies import defer, reply
from bot.store import Task
from bot.tree import report_error
from bot.types import BotInteraction, bot_interaction

ViewButton = discord.ui.Button[discord.ui.View]

MAX_VARIATIONS = 8
_PER_ROW = 5


async def _guarded(
    interaction: discord.Interaction, action: Callable[[BotInteraction], Awaitable[None]]
) -> None:
    """Run a button action; any failure reaches the clicking user like a command error."""
    try:
        await action(bot_interaction(interaction))
    except Exception as exc:
        await report_error(interaction, exc)


def button_label(item: discord.ui.Item[Any]) -> str:
    """The label of a clicked button ('' for any other kind of item)."""
    return (item.label or "") if isinstance(item, discord.ui.Button) else ""


async def _task_of(interaction: BotInteraction, task_id: int) -> Task:
    """The task behind a button, only within the guild where the button was clicked
    (in DMs: the clicker's own task)."""
    bot = interaction.client
    if interaction.guild_id is None:
        return await _own_task_in_dm(interaction, task_id)
    task = await bot.store.tasks.get_in_guild(interaction.guild_id, task_id)
    if task is None and await bot.store.tasks.was_pruned(interaction.guild_id, task_id):
        days = bot.settings.storage.retention_days
        raise UserFacingError("result.too_old", id=task_id, days=f"{days:g}")
    if task is None:
        raise UserFacingError("result.not_found", id=task_id)
    return task


async def _own_task_in_dm(interaction: BotInteraction, task_id: int) -> Task:
    """The task behind a button on a result sent by DM: the clicker's own, in a guild they
    are still a member of (its limits and account are then the ones that apply)."""
    bot = interaction.client
    task = await bot.store.tasks.get(task_id)
    if task is None or task.user_id != interaction.user.id:
        raise UserFacingError("result.not_found", id=task_id)
    guild = bot.get_guild(task.guild_id)
    if guild is None:
        raise UserFacingError("result.dm_not_member", id=task_id)
    try:
        # Asked of Discord: without the members intent a cached member may have left.
        await guild.fetch_member(interaction.user.id)
    except discord.NotFound:
        raise UserFacingError("result.dm_not_member", id=task_id) from None
    return task


class RerunButton(discord.ui.DynamicItem[ViewButton], template=r"mh:rerun:(?P<task>\d+)"):
    """Queue the same parameters again with a new seed, for the member who clicked."""

    def __init__(self, task_id: int, label: str = "Rerun") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji="🔁",
                style=discord.ButtonStyle.primary,
                custom_id=f"mh:rerun:{task_id}",
            ),
            row=0,
        )
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RerunButton:
        return cls(int(match["task"]), button_label(item))

    async def callback(self, interaction: discord.Interaction) -> Any:
        await _guarded(interaction, self._rerun)

    async def _rerun(self, interaction: BotInteraction) -> None:
        bot = interaction.client
        locale = bot.locale_for(interaction)
        task = await _task_of(interaction, self.task_id)
        await defer(interaction)
        new = await actions.rerun(
            bot, task, user_id=interaction.user.id, channel_id=task.channel_id, locale=locale
        )
        position = bot.generation.queue_position(new.id, new.guild_id)
        await reply(interaction, render.accepted_text(new, position, locale))


class RemixButton(discord.ui.DynamicItem[ViewButton], template=r"mh:remix:(?P<task>\d+)"):
    """Open the remix form on the task's values, for the member who clicked (whoever may
    rerun may remix)."""

    def __init__(self, task_id: int, label: str = "Remix") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji="🎨",
                style=discord.ButtonStyle.primary,
                custom_id=f"mh:remix:{task_id}",
            ),
            row=0,
        )
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RemixButton:
        return cls(int(match["task"]), button_label(item))

    async def callback(self, interaction: discord.Interaction) -> Any:
        await _guarded(interaction, self._open_form)

    async def _open_form(self, interaction: BotInteraction) -> None:
        locale = interaction.client.locale_for(interaction)
        task = await _task_of(interaction, self.task_id)
        modal = RemixModal(interaction, task, RemixDraft.of(task), locale)
        await interaction.response.send_modal(modal)


class VariationButton(
    discord.ui.DynamicItem[ViewButton],
    template=r"mh:var:(?P<task>\d+):(?P<index>\d+)",
):
    """Queue an img2img of one result image, for the member who clicked."""

    def __init__(self, task_id: int, index: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=f"V{index + 1}",
                style=discord.ButtonStyle.secondary,
                custom_id=f"mh:var:{task_id}:{index}",
            ),
            row=1 + index // _PER_ROW,
        )
        self.task_id = task_id
        self.index = index

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> VariationButton:
        return cls(int(match["task"]), int(match["index"]))

    async def callback(self, interaction: discord.Interaction) -> Any:
        await _guarded(interaction, self._vary)

    async def _vary(self, interaction: BotInteraction) -> None:
        bot = interaction.client
        locale = bot.locale_for(interaction)
        task = await _task_of(interaction, self.task_id)
        await defer(interaction)
        new = await actions.variation(
            bot,
            task,
            self.index,
            user_id=interaction.user.id,
            channel_id=task.channel_id,
            locale=locale,
        )
        position = bot.generation.queue_position(new.id, new.guild_id)
        await reply(interaction, render.accepted_text(new, position, locale))


class DeleteButton(discord.ui.DynamicItem[ViewButton], template=r"mh:del:(?P<task>\d+)"):
    """Delete the result message (its requester or Manage Messages)."""

    def __init__(self, task_id: int, label: str = "Delete") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji="❌",
                style=discord.ButtonStyle.danger,
                custom_id=f"mh:del:{task_id}",
            ),
            row=0,
        )
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> DeleteButton:
        return cls(int(match["task"]), button_label(item))

    async def callback(self, interaction: discord.Interaction) -> Any:
        await _guarded(interaction, self._delete)

    async def _delete(self, interaction: BotInteraction) -> None:
        locale = interaction.client.locale_for(interaction)
        task = await _task_of(interaction, self.task_id)
        if not actions.may_delete(task, interaction.user.id, interaction.permissions):
            raise UserFacingError("result.delete_denied")
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.message is not None:
            await interaction.message.delete()
        await reply(interaction, t("result.deleted", locale, id=task.id))


DYNAMIC_ITEMS = (RerunButton, RemixButton, VariationButton, DeleteButton)


def result_view(task: Task, locale: str | None) -> discord.ui.View:
    """The buttons under a result: rerun, remix, one variation per image, delete."""
    view = discord.ui.View(timeout=None)
    view.add_item(RerunButton(task.id, t("result.button.rerun", locale)))
    view.add_item(RemixButton(task.id, t("result.button.remix", locale)))
    for index in range(min(len(task.images), MAX_VARIATIONS)):
        view.add_item(VariationButton(task.id, index))
    view.add_item(DeleteButton(task.id, t("result.button.delete", locale)))
    return view
