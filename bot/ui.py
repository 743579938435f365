"""Base classes for views and modals whose errors reach the user like command errors do."""

from __future__ import annotations

import discord

from bot.tree import report_error


class ReportingModal(discord.ui.Modal):
    """A modal whose failures are reported to the user, translated."""

    async def on_error(self, interaction: discord.Interaction, error: Exception, /) -> None:
        await report_error(interaction, error)


class ReportingView(discord.ui.View):
    """A view whose failures are reported to the user, translated."""

    async def on_error(
        self, interaction: discord.Interaction, error: Exception, item: discord.ui.Item, /
    ) -> None:
        await report_error(interaction, error)
