"""Sending replies to interactions whatever state their response is in."""

from __future__ import annotations

from typing import Any

import discord

from bot.display import CONTENT_MAX, clip

NO_MENTIONS = discord.AllowedMentions.none()


async def reply(
    interaction: discord.Interaction[discord.Client],
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    view: discord.ui.View | None = None,
    ephemeral: bool = True,
) -> None:
    """Answer an interaction: the first response if it is still open, else a follow-up.

    Content longer than Discord accepts is clipped rather than refused as a whole.
    """
    if content is not None:
        content = clip(content, CONTENT_MAX)
    kwargs: dict[str, Any] = {
        "content": content,
        "ephemeral": ephemeral,
        "allowed_mentions": NO_MENTIONS,
    }
    if embed is not None:
        kwargs["embed"] = embed
    if view is not None:
        kwargs["view"] = view
    if interaction.response.is_done():
        await interaction.followup.send(**kwargs)
    else:
        await interaction.response.send_message(**kwargs)


async def defer(
    interaction: discord.Interaction[discord.Client], *, ephemeral: bool = True
) -> None:
    """Acknowledge within Discord's 3-second window before slow work (no-op when already done)."""
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
