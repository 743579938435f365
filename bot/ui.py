"""Base classes for views and modals whose errors reach the user like command errors do."""

from __future__ import annotations

import logging
import secrets

import discord
from discord import app_commands

from bot.errors import UserFacingError
from bot.tree import report_error
from bot.types import BotInteraction, bot_interaction

log = logging.getLogger(__name__)


class BoundModal(discord.ui.Modal):
    """A modal that only its opener may submit, in the guild it was opened in.

    discord.py routes a submission by the modal's custom_id alone, and Discord accepts a
    MODAL_SUBMIT from anyone who knows that id. So every submission is checked here against
    who opened the form, where, and the permissions it needs; the permissions are checked
    again at submit time because they may have been revoked while the form was open.
    Refusals and other failures reach the submitter as translated ephemeral replies.

    Subclasses implement `submitted`, which receives the interaction typed as the bot's.
    """

    def __init__(
        self,
        opener: BotInteraction,
        *,
        title: str,
        custom_id: str,
        required: discord.Permissions | None = None,
    ) -> None:
        super().__init__(title=title, custom_id=custom_id)
        self.opener_id = opener.user.id
        self.opener_guild_id = opener.guild_id
        self.required = required or discord.Permissions.none()

    # discord.py types these callbacks for any client: `discord.Interaction[discord.Client]`
    # accepts them all; `bot_interaction` narrows it to this bot's.

    async def interaction_check(self, interaction: discord.Interaction[discord.Client], /) -> bool:
        if interaction.user.id != self.opener_id or interaction.guild_id != self.opener_guild_id:
            log.warning(
                "modal %s opened by user %s in guild %s was submitted by user %s in guild %s",
                self.custom_id.rsplit(":", 1)[0],
                self.opener_id,
                self.opener_guild_id,
                interaction.user.id,
                interaction.guild_id,
            )
            raise UserFacingError("errors.modal_not_yours")
        held = interaction.permissions
        if not held >= self.required:
            missing = [name for name, needed in self.required if needed and not getattr(held, name)]
            raise app_commands.MissingPermissions(missing)
        return True

    async def on_submit(self, interaction: discord.Interaction[discord.Client], /) -> None:
        await self.submitted(bot_interaction(interaction))

    async def submitted(self, interaction: BotInteraction) -> None:
        """Act on a submission that passed the checks above."""
        raise NotImplementedError

    # discord.py's Modal.on_error drops the `item` parameter of the View.on_error it overrides.
    async def on_error(  # type: ignore[override]
        self, interaction: discord.Interaction[discord.Client], error: Exception, /
    ) -> None:
        await report_error(bot_interaction(interaction), error)


class ReportingView(discord.ui.View):
    """A view whose failures are reported to the user, translated."""

    async def on_error(
        self,
        interaction: discord.Interaction[discord.Client],
        error: Exception,
        item: discord.ui.Item[discord.ui.View],
        /,
    ) -> None:
        await report_error(bot_interaction(interaction), error)


def unique_custom_id(prefix: str) -> str:
    """A modal custom_id unique to one opening of it.

    discord.py keeps open modals by custom_id alone, so two members filling in the same
    form at once would otherwise receive each other's submissions.
    """
    return f"{prefix}:{secrets.token_hex(6)}"
