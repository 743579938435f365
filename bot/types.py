"""The bot's type as cogs, views, autocomplete and Discord adapters see it.

`ShardedMiaohuaBot` subclasses `MiaohuaBot`, so `MiaohuaBot` is the one bot type: its
services (settings, store, accounts, forms, generation, training, delivery, housekeeping,
v1b, secrets) are typed attributes. Annotate interactions as `BotInteraction` so that
`interaction.client` is that bot, and cogs' `bot` parameters as `MiaohuaBot` (imported
under `TYPE_CHECKING`, since `bot.app` loads the cogs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias, TypeGuard

import discord

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

BotInteraction: TypeAlias = "discord.Interaction[MiaohuaBot]"


def is_bot_interaction(
    interaction: discord.Interaction[discord.Client],
) -> TypeGuard[BotInteraction]:
    """Whether `interaction` reached this bot (as every interaction the bot handles does)."""
    from bot.app import MiaohuaBot  # at call time: bot.app imports the modules using this one

    return isinstance(interaction.client, MiaohuaBot)


def bot_interaction(interaction: discord.Interaction[discord.Client]) -> BotInteraction:
    """`interaction` typed as this bot's.

    discord.py types the interaction of view, modal and command-tree callbacks for any
    client; this is the one place where that is narrowed to the bot, checked at run time.
    """
    if not is_bot_interaction(interaction):
        raise TypeError(f"interaction {interaction.id} did not reach a MiaohuaBot")
    return interaction


__all__ = ["BotInteraction", "bot_interaction", "is_bot_interaction"]
