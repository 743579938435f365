"""`/settings`: the guild's generation defaults, filters and limits (Manage Guild only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot import options
from bot.autocomplete import model_autocomplete, size_autocomplete
from bot.discord_jobs.modlog import LogProblem, missing_permissions
from bot.display import FIELD_VALUE_MAX, in_code, render, shown
from bot.i18n import DEFAULT_LOCALE, LOCALES, t, tn
from bot.permissions import require_manage_guild
from bot.replies import defer, reply
from bot.settings_view import (
    SettingsView,
    Source,
    form_model,
    form_size,
    layered,
    readable_form,
    server_or,
    server_or_none,
)
from bot.store.settings import GuildSettings
from bot.text import NEGATIVE_PROMPT_MAX, clean_text
from bot.types import BotInteraction

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

BLOCKED_WORD_MAX = 100
BLOCKED_WORDS_LIMIT = 200
USER_QUEUED_MAX = 1000


def log_channel_text(s: GuildSettings, locale: str, problem: LogProblem | None) -> str:
    """The moderation log channel, with a warning when the bot's last post there failed."""
    if not s.log_channel_id:
        return t("settings.log_off", locale)
    text = f"<#{s.log_channel_id}>"
    if problem is not None and problem.channel_id == s.log_channel_id:
        text += "\n" + t("settings.log_failing", locale, status=problem.status)
    return text


async def settings_embed(
    bot: MiaohuaBot,
    s: GuildSettings,
    locale: str,
    guild: discord.Guild | None,
    log_problem: LogProblem | None = None,
) -> discord.Embed:
    """The embed of every setting of the guild, each with its value in effect and source."""
    form = None
    if None in (s.model, s.size, s.count, s.scale):  # asked only when a row needs it
        form = await readable_form(bot, s.guild_id)
    limits = bot.settings.limits
    view = SettingsView(render("settings.title", locale, guild=guild.name if guild else ""), locale)
    model, model_from = layered(s.model, form_model(form), Source.SERVICE)
    view.row("settings.field.model", model and shown(model, FIELD_VALUE_MAX), model_from)
    size, size_from = layered(s.size, form_size(form), Source.SERVICE)
    view.row("settings.field.size", size and shown(size, FIELD_VALUE_MAX), size_from)
    count = form.n_images.default if form else None
    view.row("settings.field.count", *layered(s.count, count, Source.SERVICE))
    scale = form.scale.default if form else None
    view.row("settings.field.scale", *layered(s.scale, scale, Source.SERVICE))
    negative = shown(s.negative_prompt, FIELD_VALUE_MAX) if s.negative_prompt else None
    view.row("settings.field.negative_prompt", *server_or_none(negative, locale))
    channels = ", ".join(f"<#{c}>" for c in s.allowed_channels)
    view.row("settings.field.channels", *server_or(channels, t("settings.all_channels", locale)))
    words = ", ".join(f"`{in_code(w)}`" for w in s.blocked_words)
    view.row("settings.field.blocked_words", *server_or_none(words, locale))
    view.row(
        "settings.field.user_running", *layered(s.user_running, limits.user_running, Source.BOT)
    )
    view.row("settings.field.user_queued", *layered(s.user_queued, limits.user_queued, Source.BOT))
    quota, quota_from = layered(s.daily_quota, limits.daily_quota or 0, Source.BOT)
    view.row("settings.field.daily_quota", quota or t("settings.unlimited", locale), quota_from)
    language, language_from = layered(s.language, DEFAULT_LOCALE, Source.BOT)
    view.row("settings.field.language", t(f"choice.{language}", locale), language_from)
    role = f"<@&{s.trainer_role_id}>" if s.trainer_role_id else ""
    view.row("settings.field.trainer_role", *server_or(role, t("settings.no_trainer_role", locale)))
    log_from = Source.SERVER if s.log_channel_id else Source.BOT  # off unless set
    view.row("settings.field.log_channel", log_channel_text(s, locale, log_problem), log_from)
    return view.embed


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
        await defer(interaction)  # the embed may ask the service for its defaults
        embed = await settings_embed(
            self.bot, updated, locale, interaction.guild, self._log_problem(interaction)
        )
        await reply(interaction, t("settings.saved", locale), embed=embed)

    @app_commands.command(name=_T("show"), description=_T("Show every setting of this server"))
    async def show(self, interaction: BotInteraction) -> None:
        assert interaction.guild_id is not None
        current = await self.bot.store.settings.get(interaction.guild_id)
        locale = self.bot.locale_for(interaction)
        await defer(interaction)  # the embed may ask the service for its defaults
        embed = await settings_embed(
            self.bot, current, locale, interaction.guild, self._log_problem(interaction)
        )
        await reply(interaction, embed=embed)

    def _log_problem(self, interaction: BotInteraction) -> LogProblem | None:
        return self.bot.delivery.moderation.problem(interaction.guild_id or 0)

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

    @app_commands.command(
        name=_T("log-channel"),
        description=_T("Post accepted requests and blocked prompts to a channel for moderators"),
    )
    @app_commands.rename(channel=_T("channel"))
    @app_commands.describe(channel=_T("The moderation log channel (leave out to turn the log off)"))
    async def log_channel(
        self, interaction: BotInteraction, channel: discord.TextChannel | None = None
    ) -> None:
        assert interaction.guild is not None
        if channel is not None:
            missing = missing_permissions(channel, interaction.guild.me)
            if missing:
                locale = self.bot.locale_for(interaction)
                names = ", ".join(t(f"permission.{name}", locale) for name in missing)
                await reply(
                    interaction,
                    t("settings.log_unusable", locale, channel=channel.mention, permissions=names),
                )
                return
        self.bot.delivery.moderation.channel_changed(interaction.guild.id)
        await self._save(interaction, log_channel_id=channel.id if channel else None)


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(SettingsCog(bot))
