"""The moderation log's button: moderators delete a result from its log entry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord.ext import commands

from bot.discord_jobs.modlog_buttons import LogDeleteButton

if TYPE_CHECKING:
    from bot.app import MiaohuaBot


class ModerationCog(commands.Cog):
    """Registers the persistent "Delete result" button of moderation log entries."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(LogDeleteButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(LogDeleteButton)


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(ModerationCog(bot))
