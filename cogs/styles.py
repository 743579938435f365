"""`/style`: the server's named prompt templates (adding and removing need Manage Server)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot import options, styles
from bot.autocomplete import model_autocomplete, size_autocomplete, style_autocomplete
from bot.display import (
    EMBED_TOTAL_MAX,
    FIELD_VALUE_MAX,
    TITLE_MAX,
    clip,
    in_code,
    render,
    shown,
)
from bot.errors import UserFacingError
from bot.i18n import t
from bot.permissions import require_manage_guild
from bot.replies import defer, reply
from bot.store import Style
from bot.text import NEGATIVE_PROMPT_MAX, clean_text
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

TEMPLATE_MAX = 2000  # Discord-side cap; the bot's prompt length limit is checked once cleaned


def style_text(style: Style, locale: str, limit: int = FIELD_VALUE_MAX) -> str:
    """A style's template, negative prompt, model and size, in at most `limit` characters.

    The template gets what the other lines leave, so every style of a full list is shown.
    """
    details = []
    if style.negative_prompt:
        negative = shown(style.negative_prompt, limit // 3)
        details.append(f"{t('styles.field.negative_prompt', locale)}: {negative}")
    if style.model:
        details.append(f"{t('styles.field.model', locale)}: `{in_code(style.model)}`")
    if style.size:
        details.append(f"{t('styles.field.size', locale)}: `{in_code(style.size)}`")
    rest = "\n".join(details)
    room = max(1, limit - len(rest) - 1)
    return clip("\n".join([shown(style.prompt, room), *details]), limit)


def styles_embed(found: list[Style], locale: str, guild: discord.Guild | None) -> discord.Embed:
    """An embed with one field per style; each shares Discord's 6,000 characters equally."""
    title = render("styles.title", locale, guild=guild.name if guild else "", count=len(found))
    names = [shown(style.name, TITLE_MAX) for style in found]
    embed = discord.Embed(title=clip(title, TITLE_MAX))
    used = len(embed.title or "") + sum(len(name) for name in names)
    share = min(FIELD_VALUE_MAX, (EMBED_TOTAL_MAX - used) // max(1, len(found)))
    for name, style in zip(names, found, strict=True):
        embed.add_field(name=name, value=style_text(style, locale, share), inline=False)
    return embed


@app_commands.guild_only()
class StylesCog(
    commands.GroupCog,
    group_name=_T("style"),
    group_description=_T("This server's styles: prompt templates for /imagine and /img2img"),
):
    """Server styles: anyone lists and uses them, Manage Server adds and removes them."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot
        super().__init__()

    @app_commands.command(name=_T("add"), description=_T("Add a style, or replace one"))
    @app_commands.rename(
        name=_T("name"),
        prompt=_T("prompt"),
        negative_prompt=_T("negative_prompt"),
        model=_T("model"),
        size=_T("size"),
    )
    @app_commands.describe(
        name=_T("The style's name"),
        prompt=_T("The prompt sent: {prompt} marks where the member's prompt goes"),
        negative_prompt=_T("Added to the member's negative prompt"),
        model=_T("Model used unless the member picks one"),
        size=_T("Image size used unless the member picks one"),
    )
    @app_commands.autocomplete(model=model_autocomplete, size=size_autocomplete)
    async def add(
        self,
        interaction: BotInteraction,
        name: app_commands.Range[str, 1, styles.NAME_MAX],
        prompt: app_commands.Range[str, 1, TEMPLATE_MAX],
        negative_prompt: app_commands.Range[str, 1, NEGATIVE_PROMPT_MAX] | None = None,
        model: str | None = None,
        size: str | None = None,
    ) -> None:
        require_manage_guild(interaction)
        guild_id = interaction.guild_id
        assert guild_id is not None
        await defer(interaction)
        checked_name = styles.check_name(name)
        template = styles.check_template(prompt, self.bot.settings.limits.prompt_length)
        negative = styles.check_negative(negative_prompt)
        server = await self.bot.store.settings.get(guild_id)
        styles.check_blocked_words(template, negative, server.blocked_words)
        checked = await options.checked_defaults(
            self.bot.forms, self.bot.store, guild_id, model=model, size=size
        )
        previous = await self.bot.store.styles.get(guild_id, checked_name)
        saved = await self.bot.store.styles.save(
            guild_id=guild_id,
            name=checked_name,
            prompt=template,
            negative_prompt=negative,
            model=str(checked["model"]) if "model" in checked else None,
            size=str(checked["size"]) if "size" in checked else None,
            created_by=interaction.user.id,
            limit=styles.STYLES_MAX,
        )
        if saved is None:
            raise UserFacingError("styles.too_many", limit=styles.STYLES_MAX)
        locale = self.bot.locale_for(interaction)
        if previous is None:
            text = render("styles.added", locale, name=saved.name)
        else:
            text = render("styles.replaced", locale, name=saved.name, old=previous.prompt)
        embed = styles_embed([saved], locale, interaction.guild)
        await reply(interaction, text, embed=embed)

    @app_commands.command(name=_T("list"), description=_T("List this server's styles"))
    async def list_styles(self, interaction: BotInteraction) -> None:
        assert interaction.guild_id is not None
        locale = self.bot.locale_for(interaction)
        found = await self.bot.store.styles.for_guild(interaction.guild_id)
        if not found:
            await reply(interaction, t("styles.none", locale))
            return
        await reply(interaction, embed=styles_embed(found, locale, interaction.guild))

    @app_commands.command(name=_T("remove"), description=_T("Remove a style"))
    @app_commands.rename(name=_T("name"))
    @app_commands.describe(name=_T("The style to remove"))
    @app_commands.autocomplete(name=style_autocomplete)
    async def remove(
        self, interaction: BotInteraction, name: app_commands.Range[str, 1, 100]
    ) -> None:
        require_manage_guild(interaction)
        assert interaction.guild_id is not None
        removed = await self.bot.store.styles.remove(interaction.guild_id, clean_text(name))
        if removed is None:
            raise UserFacingError("styles.unknown", name=name)
        locale = self.bot.locale_for(interaction)
        await reply(interaction, render("styles.removed", locale, name=removed.name))


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(StylesCog(bot))
