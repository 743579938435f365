"""The bot's type as cogs, views, autocomplete and Discord adapters see it.

`ShardedMiaohuaBot` subclasses `MiaohuaBot`, so `MiaohuaBot` is the one bot type: its
services (settings, store, accounts, forms, generation, training, delivery, housekeeping,
v1b, secrets) are typed attributes. Annotate interactions as `BotInteraction` so that
`interaction.client` is that bot, and cogs' `bot` parameters as `MiaohuaBot` (imported
under `TYPE_CHECKING`, since `bot.app` loads the cogs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import discord

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

BotInteraction: TypeAlias = "discord.Interaction[MiaohuaBot]"

__all__ = ["BotInteraction"]
