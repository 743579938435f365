"""What the Discord adapters use of the bot: its store and a few discord.py client calls."""

from __future__ import annotations

from typing import Protocol

import discord

from bot.discord_pacing import GlobalPacer
from bot.store import Store


class DiscordHost(Protocol):
    """The running bot as the job and training adapters see it (a `discord.Client` and more)."""

    @property
    def store(self) -> Store: ...

    @property
    def http(self) -> discord.http.HTTPClient: ...  # REST calls whose answer needs no objects

    @property
    def pacer(self) -> GlobalPacer: ...  # the bot's share of Discord's global rate limit

    @property
    def guild_languages(self) -> dict[int, str | None]: ...  # guild id -> stored language

    def get_partial_messageable(
        self,
        id: int,
        *,
        guild_id: int | None = None,
        type: discord.ChannelType | None = None,
    ) -> discord.PartialMessageable: ...

    def is_closed(self) -> bool: ...  # True once the bot started closing its connections

    def get_guild(self, id: int, /) -> discord.Guild | None: ...

    def get_user(self, id: int, /) -> discord.User | None: ...

    async def fetch_user(self, user_id: int, /) -> discord.User: ...
