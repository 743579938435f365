"""The command tree: guild-only checks and one place that turns errors into user messages."""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from bot.crypto import SecretUnreadable
from bot.display import render
from bot.errors import UserFacingError
from bot.i18n import t
from bot.jobs.errors import AccountUnreadable
from bot.replies import reply
from bot.store import StoreUnavailable
from bot.v1b import errors as v1b

log = logging.getLogger(__name__)

# Most specific first: the first matching class decides the message.
_V1B_KEYS: tuple[tuple[type[v1b.V1bError], str], ...] = (
    (v1b.WrongPassword, "v1b.wrong_password"),
    (v1b.NotBusinessAccount, "v1b.not_business"),
    (v1b.InvalidCredentials, "v1b.invalid_credentials"),
    (v1b.AccountBusy, "v1b.account_busy"),
    (v1b.NotEnoughPoints, "v1b.not_enough_points"),
    (v1b.InvalidRequest, "v1b.invalid_request"),
    (v1b.TaskFailed, "v1b.task_failed"),
    (v1b.ResponseTooLarge, "v1b.response_too_large"),
    (v1b.ServiceError, "v1b.service_error"),
    (v1b.V1bError, "v1b.service_error"),
)


def describe_error(error: BaseException, locale: str) -> str | None:
    """The localized message for a known error, or None when it is unexpected."""
    if isinstance(error, UserFacingError):
        return render(error.key, locale, **error.params)
    key = getattr(error, "key", None)
    if key and hasattr(error, "params"):  # admission refusals from the job layer
        return render(f"refused.{key}", locale, **error.params)
    if isinstance(error, StoreUnavailable):
        return t("errors.store_unavailable", locale)
    if isinstance(error, SecretUnreadable | AccountUnreadable):
        return t("account.unreadable", locale)
    if isinstance(error, app_commands.NoPrivateMessage):
        return t("errors.guild_only", locale)
    if isinstance(error, app_commands.MissingPermissions):
        return t("errors.missing_permissions", locale)
    if isinstance(error, app_commands.CheckFailure):
        return t("errors.not_allowed", locale)
    if isinstance(error, app_commands.TransformerError):
        return render("errors.bad_option", locale, value=str(error.value))
    for cls, msg_key in _V1B_KEYS:
        if isinstance(error, cls):
            return render(msg_key, locale, detail=getattr(error, "message", ""))
    return None


class MiaohuaTree(app_commands.CommandTree):
    """Command tree with server-only commands and translated error replies."""

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        if (
            interaction.guild_id is None
            and interaction.type is not discord.InteractionType.autocomplete
        ):
            raise app_commands.NoPrivateMessage()
        return True

    async def on_error(
        self, interaction: discord.Interaction, error: app_commands.AppCommandError, /
    ) -> None:
        await report_error(interaction, error)


async def report_error(interaction: discord.Interaction, error: BaseException) -> None:
    """Tell the user what went wrong, in their language; log unexpected errors with an id."""
    original = getattr(error, "original", error)
    locale = interaction.client.locale_for(interaction)  # type: ignore[attr-defined]
    message = describe_error(original, locale)
    if message is None:
        error_id = secrets.token_hex(4)
        where = interaction.command.qualified_name if interaction.command else interaction.type.name
        log.error("unexpected error %s in %s", error_id, where, exc_info=original)
        message = t("errors.unexpected", locale, error_id=error_id)
    try:
        await reply(interaction, message)
    except discord.HTTPException as refused:
        # Discord refused the reply (it should not, every value is clipped): say something
        # short rather than leave the member looking at "thinking..." until it times out.
        log.warning("error reply refused for interaction %s: %s", interaction.id, refused)
        try:
            await reply(interaction, t("errors.reply_failed", locale))
        except discord.HTTPException:
            log.warning("could not send any error reply for interaction %s", interaction.id)
