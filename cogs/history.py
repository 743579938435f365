"""`/history [search]`: the member's own past results in this server, five per page."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot.discord_jobs.history import (
    SEARCH_MAX,
    HistoryButton,
    HistoryQuery,
    clean_search,
    history_message,
    read_page,
)
from bot.replies import NO_MENTIONS, defer
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot


@app_commands.guild_only()
class HistoryCog(commands.Cog):
    """A member's past results, privately."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(HistoryButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(HistoryButton)

    @app_commands.command(
        name=_T("history"), description=_T("Your past results in this server, newest first")
    )
    @app_commands.rename(search=_T("search"))
    @app_commands.describe(search=_T("Only results whose prompt contains this text (any case)"))
    async def history(
        self,
        interaction: BotInteraction,
        search: app_commands.Range[str, 1, SEARCH_MAX] | None = None,
    ) -> None:
        await defer(interaction)
        query = HistoryQuery(interaction.user.id, clean_search(search))
        page = await read_page(interaction, query)
        shown = await history_message(interaction, query, page)
        await interaction.followup.send(
            shown.content,
            embeds=shown.embeds,
            view=shown.view or discord.utils.MISSING,
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(HistoryCog(bot))
