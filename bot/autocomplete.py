"""Autocomplete from the guild's forms and trained models, answered within Discord's window."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from discord import app_commands

from bot.display import CHOICE_MAX, clip
from bot.forms import size_choices
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord's limit
# Autocomplete cannot be deferred: answer within Discord's 3-second window or not at all.
ANSWER_WITHIN = 2.5

# (label shown, value sent) pairs for one guild.
Options = Callable[["MiaohuaBot", int], Awaitable[Iterable[tuple[str, str]]]]


async def matching_choices(
    interaction: BotInteraction, current: str, options: Options, what: str
) -> list[app_commands.Choice[str]]:
    """The options whose label contains what was typed; none if they cannot be had in time."""
    if interaction.guild_id is None:
        return []
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            pairs = list(await options(interaction.client, interaction.guild_id))
    except Exception:  # autocomplete must answer even when the service does not
        log.warning(
            "%s autocomplete failed for guild %s", what, interaction.guild_id, exc_info=True
        )
        return []
    needle = current.casefold().strip()
    return [
        app_commands.Choice(name=clip(label, CHOICE_MAX), value=value)
        for label, value in pairs
        if needle in label.casefold() and _sendable(label, value)
    ][:MAX_CHOICES]


def _sendable(label: str, value: str) -> bool:
    """Whether Discord accepts the choice: one too long or empty makes it reject the whole list.

    A value cannot be clipped (it would name another model), so such an entry is left out;
    the member can still type it in full.
    """
    return bool(label.strip()) and 0 < len(value) <= CHOICE_MAX


async def _models(bot: MiaohuaBot, guild_id: int) -> list[tuple[str, str]]:
    form = await bot.forms.generation_form(guild_id)
    trained = await bot.store.models.for_guild(guild_id)
    names = dict.fromkeys([*form.models, *(m.model_name for m in trained)])
    return [(name, name) for name in names]


async def _sizes(bot: MiaohuaBot, guild_id: int) -> list[tuple[str, str]]:
    return size_choices(await bot.forms.generation_form(guild_id))


async def _main_bodies(bot: MiaohuaBot, guild_id: int) -> list[tuple[str, str]]:
    return [(body, body) for body in (await bot.forms.train_form(guild_id)).main_bodies]


async def _base_models(bot: MiaohuaBot, guild_id: int) -> list[tuple[str, str]]:
    return [(base, base) for base in (await bot.forms.train_form(guild_id)).base_models]


async def _styles(bot: MiaohuaBot, guild_id: int) -> list[tuple[str, str]]:
    # The template after the name helps tell styles apart; typing matches either.
    return [(f"{s.name} · {s.prompt}", s.name) for s in await bot.store.styles.for_guild(guild_id)]


async def model_autocomplete(
    interaction: BotInteraction, current: str
) -> list[app_commands.Choice[str]]:
    """The account's models and the guild's trained models that match what was typed."""
    return await matching_choices(interaction, current, _models, "model")


async def size_autocomplete(
    interaction: BotInteraction, current: str
) -> list[app_commands.Choice[str]]:
    """The form's sizes grouped by aspect ratio, e.g. '1:1 512x512'."""
    return await matching_choices(interaction, current, _sizes, "size")


async def main_body_autocomplete(
    interaction: BotInteraction, current: str
) -> list[app_commands.Choice[str]]:
    """Subjects offered by the guild's training form."""
    return await matching_choices(interaction, current, _main_bodies, "subject")


async def base_model_autocomplete(
    interaction: BotInteraction, current: str
) -> list[app_commands.Choice[str]]:
    """Base models offered by the guild's training form."""
    return await matching_choices(interaction, current, _base_models, "base model")


async def style_autocomplete(
    interaction: BotInteraction, current: str
) -> list[app_commands.Choice[str]]:
    """The server's styles whose name or template contains what was typed."""
    return await matching_choices(interaction, current, _styles, "style")
