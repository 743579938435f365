"""Autocomplete for model and size options, from the guild's form and trained models."""

from __future__ import annotations

import asyncio
import logging

import discord
from discord import app_commands

from bot.forms import size_choices

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord's limit
# Autocomplete cannot be deferred: answer within Discord's 3-second window or not at all.
ANSWER_WITHIN = 2.5


async def model_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """The account's models and the guild's trained models that match what was typed."""
    bot = interaction.client
    guild_id = interaction.guild_id
    if guild_id is None:
        return []
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            form = await bot.forms.generation_form(guild_id)  # type: ignore[attr-defined]
            trained = await bot.store.models.for_guild(guild_id)  # type: ignore[attr-defined]
    except Exception:  # autocomplete must answer even when the service does not
        log.warning("model autocomplete failed for guild %s", guild_id, exc_info=True)
        return []
    names = list(dict.fromkeys([*form.models, *(m.model_name for m in trained)]))
    needle = current.casefold()
    return [
        app_commands.Choice(name=name[:100], value=name)
        for name in names
        if needle in name.casefold()
    ][:MAX_CHOICES]


async def size_autocomplete(
    interaction: discord.Interaction, current: str
) -> list[app_commands.Choice[str]]:
    """The form's sizes grouped by aspect ratio, e.g. '1:1 512x512'."""
    bot = interaction.client
    if interaction.guild_id is None:
        return []
    try:
        async with asyncio.timeout(ANSWER_WITHIN):
            form = await bot.forms.generation_form(interaction.guild_id)  # type: ignore[attr-defined]
    except Exception:
        log.warning("size autocomplete failed for guild %s", interaction.guild_id, exc_info=True)
        return []
    needle = current.casefold().strip()
    return [
        app_commands.Choice(name=label, value=size)
        for label, size in size_choices(form)
        if needle in label.casefold()
    ][:MAX_CHOICES]
