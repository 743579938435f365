"""Permission checks shared by admin commands."""

from __future__ import annotations

import discord
from discord import app_commands


def require_manage_guild(interaction: discord.Interaction) -> bool:
    """Pass for members with Manage Server, else raise MissingPermissions (a translated reply)."""
    if not interaction.permissions.manage_guild:
        raise app_commands.MissingPermissions(["manage_guild"])
    return True
