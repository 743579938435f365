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

    EMOJI = "🔁"
    STYLE = discord.ButtonStyle.primary

    def __init__(self, task_id: int, label: str = "Rerun") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=self.EMOJI,
                style=self.STYLE,
                custom_id=self.custom_id_of(task_id),
            ),
            row=0,
        )
        self.task_id = task_id

    @staticmethod
    def custom_id_of(task_id: int) -> str:
        return f"mh:rerun:{task_id}"

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

    EMOJI = "🎨"
    STYLE = discord.ButtonStyle.primary

    def __init__(self, task_id: int, label: str = "Remix") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=self.EMOJI,
                style=self.STYLE,
                custom_id=self.custom_id_of(task_id),
            ),
            row=0,
        )
        self.task_id = task_id

    @staticmethod
    def custom_id_of(task_id: int) -> str:
        return f"mh:remix:{task_id}"

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

    STYLE = discord.ButtonStyle.secondary

    def __init__(self, task_id: int, index: int) -> None:
        super().__init__(
            discord.ui.Button(
                label=self.label_of(index),
                style=self.STYLE,
                custom_id=self.custom_id_of(task_id, index),
            ),
            row=1 + index // _PER_ROW,
        )
        self.task_id = task_id
        self.index = index

    @staticmethod
    def label_of(index: int) -> str:
        return f"V{index + 1}"

    @staticmethod
    def custom_id_of(task_id: int, index: int) -> str:
        return f"mh:var:{task_id}:{index}"

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

    EMOJI = "❌"
    STYLE = discord.ButtonStyle.danger

    def __init__(self, task_id: int, label: str = "Delete") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji=self.EMOJI,
                style=self.STYLE,
                custom_id=self.custom_id_of(task_id),
            ),
            row=0,
        )
        self.task_id = task_id

    @staticmethod
    def custom_id_of(task_id: int) -> str:
        return f"mh:del:{task_id}"

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


def result_components(task_id: int, images: int, locale: str | None) -> list[dict[str, Any]]:
    """The buttons under a result (rerun, remix, delete; then one variation per image, five
    to a row) as the message's components payload: what a `discord.ui.View` of the buttons
    above renders, built without one. Clicks are dispatched by custom id pattern, so the
    message needs no view of its own, and building one costs more than the post itself."""
    rows = [
        [
            _button(t("result.button.rerun", locale), RerunButton.custom_id_of(task_id),
                    RerunButton.STYLE, RerunButton.EMOJI),
            _button(t("result.button.remix", locale), RemixButton.custom_id_of(task_id),
                    RemixButton.STYLE, RemixButton.EMOJI),
            _button(t("result.button.delete", locale), DeleteButton.custom_id_of(task_id),
                    DeleteButton.STYLE, DeleteButton.EMOJI),
        ]
    ]  # fmt: skip
    variations = [
        _button(
            VariationButton.label_of(index),
            VariationButton.custom_id_of(task_id, index),
            VariationButton.STYLE,
        )
        for index in range(min(images, MAX_VARIATIONS))
    ]
    rows += (variations[i : i + _PER_ROW] for i in range(0, len(variations), _PER_ROW))
    return [{"type": 1, "components": row} for row in rows]


def _button(
    label: str, custom_id: str, style: discord.ButtonStyle, emoji: str | None = None
) -> dict[str, Any]:
    """A button's payload, as discord.py's `Button.to_component_dict` writes it."""
    button: dict[str, Any] = {
        "type": 2,
        "style": style.value,
        "disabled": False,
        "label": label,
        "custom_id": custom_id,
    }
    if emoji is not None:
        button["emoji"] = {"id": None, "name": emoji}
    return button
