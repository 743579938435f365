"""`/preferences`: a member's own generation defaults in this server (any member, private)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot import options
from bot.autocomplete import model_autocomplete, size_autocomplete
from bot.display import FIELD_VALUE_MAX, TITLE_MAX, clip, render, shown
from bot.errors import DomainError
from bot.i18n import t
from bot.preferences import SetAside, usable_preferences
from bot.replies import defer, reply
from bot.store.preferences import DELIVERIES, PREFERENCE_NAMES, MemberPreferences
from bot.text import NEGATIVE_PROMPT_MAX
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

log = logging.getLogger(__name__)

# Catalog key of each preference's name, shared with `/settings show` where they match.
_FIELD_KEYS = {
    "model": "settings.field.model",
    "size": "settings.field.size",
    "count": "settings.field.count",
    "negative_prompt": "settings.field.negative_prompt",
    "delivery": "preferences.field.delivery",
}


def _choices(*values: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=_T(value), value=value) for value in values]


def _value(prefs: MemberPreferences, name: str, locale: str) -> str:
    """How one preference reads in the list: its value, or that it is not set."""
    value = getattr(prefs, name)
    if value is None:
        return t("preferences.unset", locale)
    if name == "delivery":
        return t(f"preferences.delivery.{value}", locale)
    return shown(value, FIELD_VALUE_MAX) or "-"


def preferences_embed(
    prefs: MemberPreferences,
    locale: str,
    guild: discord.Guild | None,
    stale: tuple[SetAside, ...] = (),
) -> discord.Embed:
    """An embed listing each preference, unset ones and ones no longer offered marked."""
    title = render("preferences.title", locale, guild=guild.name if guild else "")
    embed = discord.Embed(title=clip(title, TITLE_MAX))
    passed_over = {s.name for s in stale}
    for name in PREFERENCE_NAMES:
        value = _value(prefs, name, locale)
        if name in passed_over:
            value = f"{value} {t('preferences.not_offered', locale)}"
        embed.add_field(
            name=t(_FIELD_KEYS[name], locale), value=clip(value, FIELD_VALUE_MAX), inline=True
        )
    embed.set_footer(text=t("preferences.order", locale))
    return embed


@app_commands.guild_only()
class PreferencesCog(
    commands.GroupCog,
    group_name=_T("preferences"),
    group_description=_T("Your own defaults for generating images in this server"),
):
    """A member's generation defaults and where their results go."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot
        super().__init__()

    async def _stale(self, prefs: MemberPreferences) -> tuple[SetAside, ...]:
        """The member's preferences the server's form no longer offers (none if unknown)."""
        if prefs.model is None and prefs.size is None and prefs.count is None:
            return ()
        try:
            form = await self.bot.forms.generation_form(prefs.guild_id)
        except DomainError as exc:  # no usable account: nothing to compare with now
            log.info("guild %s: preferences not checked against the form (%s)", prefs.guild_id, exc)
            return ()
        trained = [m.model_name for m in await self.bot.store.models.for_guild(prefs.guild_id)]
        return usable_preferences(form, trained, prefs)[1]

    async def _show(self, interaction: BotInteraction, prefs: MemberPreferences, key: str) -> None:
        locale = self.bot.locale_for(interaction)
        embed = preferences_embed(prefs, locale, interaction.guild, await self._stale(prefs))
        await reply(interaction, t(key, locale), embed=embed)

    @app_commands.command(
        name=_T("set"),
        description=_T("Choose your defaults; options you leave out stay as they are"),
    )
    @app_commands.rename(
        model=_T("model"),
        size=_T("size"),
        count=_T("count"),
        negative_prompt=_T("negative_prompt"),
        delivery=_T("delivery"),
    )
    @app_commands.describe(
        model=_T("Your default model"),
        size=_T("Your default image size"),
        count=_T("Your default number of images"),
        negative_prompt=_T("Your default negative prompt (a single dash clears it)"),
        delivery=_T("Where your results go: this channel or your direct messages"),
    )
    @app_commands.autocomplete(model=model_autocomplete, size=size_autocomplete)
    @app_commands.choices(delivery=_choices(*DELIVERIES))
    async def set_(
        self,
        interaction: BotInteraction,
        model: str | None = None,
        size: str | None = None,
        count: int | None = None,
        negative_prompt: app_commands.Range[str, 1, NEGATIVE_PROMPT_MAX] | None = None,
        delivery: str | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        locale = self.bot.locale_for(interaction)
        if all(v is None for v in (model, size, count, negative_prompt, delivery)):
            await reply(interaction, t("preferences.nothing_to_set", locale))
            return
        await defer(interaction)
        # Checked exactly as /imagine and /settings defaults check them.
        changes: dict[str, object] = dict(
            await options.checked_defaults(
                self.bot.forms,
                self.bot.store,
                interaction.guild_id,
                model=model,
                size=size,
                count=count,
                negative_prompt=negative_prompt,
            )
        )
        if changes.get("negative_prompt") == "":
            changes["negative_prompt"] = None  # "-": back to the server's default
        if delivery is not None:
            changes["delivery"] = delivery
        prefs = await self.bot.store.preferences.update(
            interaction.guild_id, interaction.user.id, **changes
        )
        await self._show(interaction, prefs, "preferences.saved")

    @app_commands.command(name=_T("show"), description=_T("Show your defaults in this server"))
    async def show(self, interaction: BotInteraction) -> None:
        assert interaction.guild_id is not None
        await defer(interaction)
        prefs = await self.bot.store.preferences.get(interaction.guild_id, interaction.user.id)
        await self._show(interaction, prefs, "preferences.shown")

    @app_commands.command(
        name=_T("clear"), description=_T("Forget one of your defaults, or all of them")
    )
    @app_commands.rename(preference=_T("preference"))
    @app_commands.describe(preference=_T("The default to forget (all of them if left out)"))
    @app_commands.choices(preference=_choices(*PREFERENCE_NAMES))
    async def clear(self, interaction: BotInteraction, preference: str | None = None) -> None:
        assert interaction.guild_id is not None
        await defer(interaction)
        guild_id, user_id = interaction.guild_id, interaction.user.id
        if preference is None:
            await self.bot.store.preferences.clear(guild_id, user_id)
            prefs = MemberPreferences(guild_id, user_id)
        else:
            prefs = await self.bot.store.preferences.update(guild_id, user_id, **{preference: None})
        await self._show(interaction, prefs, "preferences.cleared")


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(PreferencesCog(bot))
