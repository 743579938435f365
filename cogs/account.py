"""`/account`: set, check and remove the guild's Miaohua account (Manage Guild only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _T
from discord.ext import commands

from bot.i18n import t, tn
from bot.permissions import require_manage_guild
from bot.replies import defer, reply
from bot.store import RunningWork
from bot.types import BotInteraction
from bot.ui import BoundModal, unique_custom_id

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

EMAIL_MAX = 254
PASSWORD_MAX = 128


def running_note(running: RunningWork, locale: str, *, removed: bool) -> str:
    """What happens to the work still running on the replaced or removed account ("" if none)."""
    parts = [
        tn(key, count, locale)
        for key, count in (
            ("account.running.tasks", running.tasks),
            ("account.running.trainings", running.trainings),
        )
        if count
    ]
    if not parts:
        return ""
    work = parts[0]
    if len(parts) > 1:
        work = t("account.running.and", locale, first=parts[0], second=parts[1])
    key = "account.running.removed" if removed else "account.running.replaced"
    return tn(key, running.tasks + running.trainings, locale, work=work)


class AccountModal(BoundModal):
    """Asks for the account's email and password; both stay out of logs and messages."""

    def __init__(self, bot: MiaohuaBot, opener: BotInteraction, locale: str) -> None:
        super().__init__(
            opener,
            title=t("account.modal.title", locale),
            custom_id=unique_custom_id("account:set"),
            required=discord.Permissions(manage_guild=True),
        )
        self.bot = bot
        self.locale = locale
        self.email: discord.ui.TextInput[AccountModal] = discord.ui.TextInput(
            label=t("account.modal.email", locale), max_length=EMAIL_MAX, custom_id="email"
        )
        self.password: discord.ui.TextInput[AccountModal] = discord.ui.TextInput(
            label=t("account.modal.password", locale),
            max_length=PASSWORD_MAX,
            custom_id="password",
        )
        self.add_item(self.email)
        self.add_item(self.password)

    async def on_submit(self, interaction: discord.Interaction[discord.Client], /) -> None:
        # Read both values before any await: a refused submission by someone else still
        # refills the inputs (discord.py does so before the check).
        email, password = self.email.value.strip(), self.password.value
        if "@" not in email or " " in email:
            await reply(interaction, t("account.bad_email", self.locale))
            return
        await defer(interaction)
        assert interaction.guild_id is not None
        running = await self.bot.accounts.set_account(interaction.guild_id, email, password)
        note = running_note(running, self.locale, removed=False)
        await reply(interaction, "\n".join(filter(None, [t("account.saved", self.locale), note])))


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AccountCog(
    commands.GroupCog,
    group_name=_T("account"),
    group_description=_T("Manage this server's Miaohua account"),
):
    """The guild's Miaohua account."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction[discord.Client], /) -> bool:
        return require_manage_guild(interaction)

    @app_commands.command(name=_T("set"), description=_T("Set the Miaohua account (opens a form)"))
    async def set_account(self, interaction: BotInteraction) -> None:
        locale = self.bot.locale_for(interaction)
        await interaction.response.send_modal(AccountModal(self.bot, interaction, locale))

    @app_commands.command(
        name=_T("status"), description=_T("Show the account and whether its login works")
    )
    async def status(self, interaction: BotInteraction) -> None:
        locale = self.bot.locale_for(interaction)
        await defer(interaction)
        assert interaction.guild_id is not None
        status = await self.bot.accounts.status(interaction.guild_id)
        if status is None:
            await reply(interaction, t("account.none", locale))
            return
        embed = discord.Embed(title=t("account.status.title", locale))
        embed.add_field(name=t("account.status.email", locale), value=status.email_hint)
        last = (
            discord.utils.format_dt(datetime.fromtimestamp(status.last_login_at, UTC), "R")
            if status.last_login_at
            else t("account.status.never", locale)
        )
        embed.add_field(name=t("account.status.last_login", locale), value=last)
        works = "account.status.ok" if status.token_ok else "account.status.broken"
        embed.add_field(name=t("account.status.token", locale), value=t(works, locale))
        if status.demo:
            embed.description = t("account.status.demo", locale)
        await reply(interaction, embed=embed)

    @app_commands.command(name=_T("remove"), description=_T("Remove the account from this server"))
    async def remove(self, interaction: BotInteraction) -> None:
        locale = self.bot.locale_for(interaction)
        assert interaction.guild_id is not None
        running = await self.bot.accounts.remove(interaction.guild_id)
        if running is None:
            await reply(interaction, t("account.none", locale))
            return
        lines = [t("account.removed", locale), running_note(running, locale, removed=True)]
        queued = self.bot.generation.queue_depth(interaction.guild_id)
        if queued and not self.bot.accounts.has_demo:  # with demo accounts they go to the demo
            lines.append(tn("account.queued.removed", queued, locale))
        await reply(interaction, "\n".join(filter(None, lines)))


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(AccountCog(bot))
