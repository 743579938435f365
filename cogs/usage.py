"""`/usage [days]`: the server's images, members, failures and trainings (Manage Server)."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot.discord_usage import CHART_FILENAME, render_chart, usage_embed
from bot.errors import UserFacingError
from bot.offload import offload
from bot.permissions import require_manage_guild
from bot.replies import NO_MENTIONS, defer
from bot.store.usage_report import kept_days
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

DEFAULT_DAYS = 30
MAX_DAYS = 365
TOP_MEMBERS = 10
POINTS_OUTAGES = 10


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class UsageCog(commands.Cog):
    """How the server used its account."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot

    async def interaction_check(self, interaction: discord.Interaction[discord.Client], /) -> bool:
        return require_manage_guild(interaction)

    @app_commands.command(
        name=_T("usage"),
        description=_T("Images per day, top members, failures and trainings of the last days"),
    )
    @app_commands.rename(days=_T("days"))
    @app_commands.describe(days=_T("How many days back, today included (1-365, default 30)"))
    async def usage(
        self, interaction: BotInteraction, days: app_commands.Range[int, 1, MAX_DAYS] = DEFAULT_DAYS
    ) -> None:
        # Discord's client keeps the value in range; a modified one may not.
        if not 1 <= days <= MAX_DAYS:
            raise UserFacingError("usage.bad_days", max=MAX_DAYS)
        assert interaction.guild_id is not None
        await defer(interaction)
        locale = self.bot.locale_for(interaction)
        retention = self.bot.settings.storage.retention_days
        report = await self.bot.store.usage_report.report(
            interaction.guild_id,
            days=kept_days(days, retention),
            top=TOP_MEMBERS,
            outages=POINTS_OUTAGES,
        )
        chart = await offload(render_chart, report.days)
        embed = usage_embed(report, locale, retention_days=retention if days > retention else None)
        await interaction.followup.send(
            embed=embed,
            file=discord.File(io.BytesIO(chart), filename=CHART_FILENAME),
            ephemeral=True,
            allowed_mentions=NO_MENTIONS,
        )


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(UsageCog(bot))
