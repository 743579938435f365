"""Base classes for views and modals whose errors reach the user like command errors do."""

from __future__ import annotations

import secrets

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


def unique_custom_id(prefix: str) -> str:
    """A modal custom_id unique to one opening of it.

    discord.py keeps open modals by custom_id alone, so two members filling in the same
    form at once would otherwise receive each other's submissions.
    """
    return f"{prefix}:{secrets.token_hex(6)}"
