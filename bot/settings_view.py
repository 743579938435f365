"""Showing a guild's settings: each one's value in effect and where that value comes from.

A setting the server never changed is not "default" to an admin: it is the bot's configured
default (e.g. `limits.daily_quota`) or the service's (the generation form's default model), and
the admin needs to see which value that is. Each row of `/settings` is one `SettingsView.row`.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, TypeVar

import discord

from bot.display import FIELD_VALUE_MAX, TITLE_MAX, clip
from bot.errors import DomainError
from bot.i18n import t
from bot.v1b import GenerationForm

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

log = logging.getLogger(__name__)

T = TypeVar("T")


class Source(StrEnum):
    """Where the value in effect of a setting comes from."""

    SERVER = "server"  # set on this server with /settings
    BOT = "bot"  # the bot's own default: its configuration file, or built in
    SERVICE = "service"  # the default of the Miaohua account's generation form
    UNREADABLE = "unreadable"  # the form's default, but the form cannot be read right now


def layered(server: T | None, default: T | None, source: Source) -> tuple[T | None, Source]:
    """The server's own value when it set one, else `default` from `source`.

    A missing default is the service's that could not be read (the bot's always exist).
    """
    if server is not None:
        return server, Source.SERVER
    return default, source if default is not None else Source.UNREADABLE


class SettingsView:
    """An embed with one field per setting: the value in effect, then where it comes from."""

    def __init__(self, title: str, locale: str) -> None:
        self.locale = locale
        self.embed = discord.Embed(title=clip(title, TITLE_MAX))

    def row(self, key: str, value: object, source: Source) -> None:
        """Add the setting named by catalog key `key`; `value` is shown as given (escaped)."""
        mark = t(f"settings.source.{source.value}", self.locale)
        if source is Source.UNREADABLE or value is None:
            text = f"*{mark}*"
        else:
            # The mark is what this row is for, so a long value is clipped, never the mark.
            text = f"{clip(str(value), FIELD_VALUE_MAX - len(mark) - 3)}\n*{mark}*"
        self.embed.add_field(name=t(key, self.locale), value=text, inline=True)


async def readable_form(bot: MiaohuaBot, guild_id: int) -> GenerationForm | None:
    """The guild's generation form, or None when it cannot be had (no account, service down)."""
    try:
        return await bot.forms.generation_form(guild_id)
    except DomainError as exc:  # the service's defaults are then shown as unreadable
        log.info("guild %s: generation form unreadable for /settings: %s", guild_id, exc)
        return None


def server_or(server: str, bot_default: str) -> tuple[str, Source]:
    """A value the server set when not empty, else the bot's built-in behaviour."""
    return (server, Source.SERVER) if server else (bot_default, Source.BOT)


def server_or_none(server: str | None, locale: str) -> tuple[str, Source]:
    """A value the server set when not empty, else "none" (nothing is applied)."""
    return server_or(server or "", t("settings.none", locale))


def form_model(form: GenerationForm | None) -> str | None:
    """The model a generation uses when neither member nor server chose one (as `/imagine`)."""
    return None if form is None else form.fallback_model()


def form_size(form: GenerationForm | None) -> str | None:
    """The size a generation uses when neither member nor server chose one (as `/imagine`)."""
    return None if form is None else form.fallback_size()
