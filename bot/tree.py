"""The command tree: guild-only checks and one place that turns errors into user messages."""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from bot.display import render
from bot.errors import DomainError
from bot.i18n import DEFAULT_LOCALE, t
from bot.replies import interaction_age, reply
from bot.types import is_bot_interaction

log = logging.getLogger(__name__)


def describe_error(error: BaseException, locale: str) -> str | None:
    """The localized message for a known error, or None when it is unexpected.

    The one place where errors become replies: commands, modals, views, buttons and reactions
    all come here. Domain errors name their own message; discord.py's are mapped below.
    """
    domain = _domain_error(error)
    if domain is not None:
        return render(domain.key, locale, None, **domain.params)  # nothing trusted: all literal
    if isinstance(error, app_commands.NoPrivateMessage):
        return t("errors.guild_only", locale)
    if isinstance(error, app_commands.MissingPermissions):
        return t("errors.missing_permissions", locale)
    if isinstance(error, app_commands.CheckFailure):
        return t("errors.not_allowed", locale)
    if isinstance(error, app_commands.TransformerError):
        return render("errors.bad_option", locale, value=str(error.value))
    return None


def _domain_error(error: BaseException) -> DomainError | None:
    """The domain error behind `error`, also when discord.py wrapped it in one of its own."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    elif isinstance(error, app_commands.TransformerError) and error.__cause__ is not None:
        error = error.__cause__  # a transformer refused the value with a reason of its own
    return error if isinstance(error, DomainError) else None


# Discord's "Unknown interaction": its token is no longer valid (answered after 3 s, or 15 min).
UNKNOWN_INTERACTION = 10062


def _answered_too_late(error: BaseException) -> bool:
    return isinstance(error, discord.NotFound) and error.code == UNKNOWN_INTERACTION


class MiaohuaTree(app_commands.CommandTree):
    """Command tree with server-only commands and translated error replies.

    discord.py hands this tree only its own errors from checks (anything else raised in a
    check escapes unreported), so commands raise domain errors from their body, where they
    arrive wrapped in `CommandInvokeError`.
    """

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
    original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
    if _answered_too_late(original):
        # Nothing can reach the member through this interaction any more, and a traceback per
        # late answer would only slow an overloaded bot further. What the command did stands
        # (an accepted task still posts its status message in the channel).
        log.warning(
            "interaction %s answered too late: Discord's window had closed (%.1f s after it)",
            interaction.id,
            interaction_age(interaction),
        )
        return
    locale = (
        interaction.client.locale_for(interaction)
        if is_bot_interaction(interaction)
        else DEFAULT_LOCALE
    )
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
