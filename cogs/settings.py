"""`/settings`: the guild's generation defaults, filters and limits (Manage Guild only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot import options
from bot.autocomplete import model_autocomplete, size_autocomplete
from bot.display import FIELD_VALUE_MAX, TITLE_MAX, clip, in_code, render, shown
from bot.i18n import LOCALES, t, tn
from bot.permissions import require_manage_guild
from bot.replies import defer, reply
from bot.store.settings import GuildSettings
from bot.text import NEGATIVE_PROMPT_MAX, clean_text
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

BLOCKED_WORD_MAX = 100
BLOCKED_WORDS_LIMIT = 200
USER_QUEUED_MAX = 1000


def settings_embed(s: GuildSettings, locale: str, guild: discord.Guild | None) -> discord.Embed:
    """An embed listing every setting of the guild."""
    unset = t("settings.unset", locale)
    unlimited = t("settings.unlimited", locale)
    channels = ", ".join(f"<#{c}>" for c in s.allowed_channels) or t(
        "settings.all_channels", locale
    )
    fields = {
        "settings.field.model": shown(s.model, FIELD_VALUE_MAX) if s.model else unset,
        "settings.field.size": shown(s.size, FIELD_VALUE_MAX) if s.size else unset,
        "settings.field.count": s.count or unset,
        "settings.field.scale": s.scale or unset,
        "settings.field.negative_prompt": (
            shown(s.negative_prompt, FIELD_VALUE_MAX) if s.negative_prompt else unset
        ),
        "settings.field.channels": channels,
        "settings.field.blocked_words": ", ".join(f"`{in_code(w)}`" for w in s.blocked_words)
        or unset,
        "settings.field.user_running": s.user_running or unset,
        "settings.field.user_queued": unset if s.user_queued is None else s.user_queued,
        "settings.field.daily_quota": unlimited if s.daily_quota == 0 else s.daily_quota or unset,
        "settings.field.language": s.language or unset,
        "settings.field.trainer_role": f"<@&{s.trainer_role_id}>" if s.trainer_role_id else unset,
    }
    title = render("settings.title", locale, guild=guild.name if guild else "")
    embed = discord.Embed(title=clip(title, TITLE_MAX))
    for key, value in fields.items():
        embed.add_field(name=t(key, locale), value=clip(str(value), FIELD_VALUE_MAX), inline=True)
    return embed


def _choices(*values: str) -> list[app_commands.Choice[str]]:
    return [app_commands.Choice(name=_T(value), value=value) for value in values]


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class SettingsCog(
    commands.GroupCog,
    group_name=_T("settings"),
    group_description=_T("Show and change this server's settings"),
):
    """Guild defaults, filters and limits."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[discord.Client], /) -> bool:
        return require_manage_guild(interaction)

    async def _save(self, interaction: BotInteraction, **changes: object) -> None:
        assert interaction.guild_id is not None
        locale = self.bot.locale_for(interaction)
        updated = await self.bot.store.settings.update(interaction.guild_id, **changes)
        embed = settings_embed(updated, locale, interaction.guild)
        await reply(interaction, t("settings.saved", locale), embed=embed)

    @app_commands.command(name=_T("show"), description=_T("Show every setting of this server"))
    async def show(self, interaction: BotInteraction) -> None:
        assert interaction.guild_id is not None
        current = await self.bot.store.settings.get(interaction.guild_id)
        locale = self.bot.locale_for(interaction)
        await reply(interaction, embed=settings_embed(current, locale, interaction.guild))

    @app_commands.command(name=_T("defaults"), description=_T("Set default generation options"))
    @app_commands.rename(
        model=_T("model"),
        size=_T("size"),
        count=_T("count"),
        scale=_T("scale"),
        negative_prompt=_T("negative_prompt"),
    )
    @app_commands.describe(
        model=_T("Default model"),
        size=_T("Default image size"),
        count=_T("Default number of images"),
        scale=_T("Default guidance scale"),
        negative_prompt=_T("Default negative prompt (a single dash clears it)"),
    )
    @app_commands.autocomplete(model=model_autocomplete, size=size_autocomplete)
    async def defaults(
        self,
        interaction: BotInteraction,
        model: str | None = None,
        size: str | None = None,
        count: int | None = None,
        scale: int | None = None,
        negative_prompt: app_commands.Range[str, 1, NEGATIVE_PROMPT_MAX] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        await defer(interaction)
        changes = await options.checked_defaults(
            self.bot.forms,
            self.bot.store,
            interaction.guild_id,
            model=model,
            size=size,
            count=count,
            scale=scale,
            negative_prompt=negative_prompt,
        )
        await self._save(interaction, **changes)

    @app_commands.command(name=_T("limits"), description=_T("Set per-user limits and language"))
    @app_commands.rename(
        user_running=_T("user_running"),
        user_queued=_T("user_queued"),
        daily_quota=_T("daily_quota"),
        language=_T("language"),
        trainer_role=_T("trainer_role"),
    )
    @app_commands.describe(
        user_running=_T("Tasks one member may have running at once"),
        user_queued=_T("Tasks one member may have waiting beyond those (0 = none may wait)"),
        daily_quota=_T("Images one member may generate per day (0 = unlimited)"),
        language=_T("Language of messages when a member's own language is not supported"),
        trainer_role=_T("Role allowed to train models (besides Manage Server)"),
    )
    @app_commands.choices(language=_choices(*LOCALES))
    async def limits(
        self,
        interaction: BotInteraction,
        user_running: app_commands.Range[int, 1, 50] | None = None,
        user_queued: app_commands.Range[int, 0, USER_QUEUED_MAX] | None = None,
        daily_quota: app_commands.Range[int, 0, 100_000] | None = None,
        language: str | None = None,
        trainer_role: discord.Role | None = None,
    ) -> None:
        changes: dict[str, object] = {}
        if user_running is not None:
            changes["user_running"] = user_running
        if user_queued is not None:
            changes["user_queued"] = user_queued
        if daily_quota is not None:
            changes["daily_quota"] = daily_quota
        if language is not None:
            changes["language"] = language
        if trainer_role is not None:
            changes["trainer_role_id"] = trainer_role.id
        await self._save(interaction, **changes)

    @app_commands.command(
        name=_T("channels"), description=_T("Choose the channels where commands work")
    )
    @app_commands.rename(action=_T("action"), channel=_T("channel"))
    @app_commands.describe(action=_T("What to do"), channel=_T("The channel"))
    @app_commands.choices(action=_choices("allow", "disallow", "clear"))
    async def channels(
        self,
        interaction: BotInteraction,
        action: str,
        channel: discord.TextChannel | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        current = await self.bot.store.settings.get(interaction.guild_id)
        allowed = list(current.allowed_channels)
        if action == "clear":
            allowed = []
        elif channel is None:
            await reply(
                interaction, t("settings.channel_required", self.bot.locale_for(interaction))
            )
            return
        elif action == "allow" and channel.id not in allowed:
            allowed.append(channel.id)
        elif action == "disallow" and channel.id in allowed:
            allowed.remove(channel.id)
        await self._save(interaction, allowed_channels=allowed)

    @app_commands.command(
        name=_T("blocked-words"), description=_T("Words that may not appear in prompts")
    )
    @app_commands.rename(action=_T("action"), word=_T("word"))
    @app_commands.describe(action=_T("What to do"), word=_T("The word or phrase"))
    @app_commands.choices(action=_choices("add", "remove", "clear"))
    async def blocked_words(
        self,
        interaction: BotInteraction,
        action: str,
        word: app_commands.Range[str, 1, BLOCKED_WORD_MAX] | None = None,
    ) -> None:
        assert interaction.guild_id is not None
        locale = self.bot.locale_for(interaction)
        current = await self.bot.store.settings.get(interaction.guild_id)
        words = list(current.blocked_words)
        # Cleaned like prompts are, so a word typed with invisible characters still matches.
        needle = clean_text(word).casefold()
        if action == "clear":
            words = []
        elif not needle:
            await reply(interaction, t("settings.word_required", locale))
            return
        elif action == "add" and needle not in words:
            if len(words) >= BLOCKED_WORDS_LIMIT:
                await reply(interaction, tn("settings.too_many_words", BLOCKED_WORDS_LIMIT, locale))
                return
            words.append(needle)
        elif action == "remove" and needle in words:
            words.remove(needle)
        await self._save(interaction, blocked_words=words)


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(SettingsCog(bot))
