"""Slash-command localizations served from the message catalogs (discord.py's Translator)."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.i18n import DEFAULT_LOCALE, catalog, normalize


def command_key(
    context: app_commands.TranslationContextTypes, string: app_commands.locale_str
) -> str:
    """Derive the catalog key of a command, option or choice string."""
    explicit = string.extras.get("key")
    if explicit:
        return str(explicit)
    loc = context.location
    data = context.data
    TL = app_commands.TranslationContextLocation
    commands = (app_commands.Command, app_commands.Group, app_commands.ContextMenu)
    if loc in (TL.command_name, TL.group_name) and isinstance(data, commands):
        return f"cmd.{data.qualified_name}.name"
    if loc in (TL.command_description, TL.group_description) and isinstance(data, commands):
        return f"cmd.{data.qualified_name}.description"
    if loc is TL.parameter_name and isinstance(data, app_commands.Parameter):
        return f"cmd.{data.command.qualified_name}.opt.{data.name}.name"
    if loc is TL.parameter_description and isinstance(data, app_commands.Parameter):
        return f"cmd.{data.command.qualified_name}.opt.{data.name}.description"
    if loc is TL.choice_name and isinstance(data, app_commands.Choice):
        return f"choice.{data.value}"
    return f"text.{string.message}"


class CatalogTranslator(app_commands.Translator):
    """Serves command localizations from the message catalogs."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        lang = normalize(locale)
        if lang is None or lang == DEFAULT_LOCALE:
            return None
        return catalog(lang).get(command_key(context, string))
