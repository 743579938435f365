"""The remix form: the parent's values to edit, and a way back to them when refused."""

from __future__ import annotations

import logging

import discord

from bot.discord_jobs import render
from bot.discord_jobs.remix import RemixDraft, remix
from bot.errors import DomainError, UserFacingError
from bot.i18n import t
from bot.replies import defer, reply
from bot.store import Task
from bot.text import NEGATIVE_PROMPT_MAX
from bot.tree import describe_error
from bot.types import BotInteraction, bot_interaction
from bot.ui import BoundModal, ReportingView, unique_custom_id

log = logging.getLogger(__name__)

TEXT_INPUT_MAX = 4000  # Discord's limit for one text input
# The guild's prompt_length is enforced at admission, as for `/imagine`.
PROMPT_MAX = TEXT_INPUT_MAX
COUNT_MAX_LENGTH = 4
SEED_MAX_LENGTH = 20
# The button that opens a refused remix again works while the refusal's interaction token
# does (15 minutes), so it can still be taken away when it stops working.
RETRY_SECONDS = 14 * 60


def _room(limit: int, prefilled: str) -> int:
    """A text input's max length: `limit`, but never less than what is already in it."""
    return min(TEXT_INPUT_MAX, max(limit, len(prefilled)))


class RemixModal(BoundModal):
    """The parent's prompt, negative prompt, count and seed, to edit and queue again."""

    def __init__(
        self, opener: BotInteraction, task: Task, draft: RemixDraft, locale: str | None
    ) -> None:
        super().__init__(
            opener,
            title=t("remix.modal.title", locale, id=task.id),
            custom_id=unique_custom_id(f"remix:{task.id}"),
        )
        self.task = task
        self.prompt: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=t("generate.modal.prompt", locale),
            style=discord.TextStyle.paragraph,
            default=draft.prompt[:TEXT_INPUT_MAX],
            max_length=_room(PROMPT_MAX, draft.prompt),
            custom_id="prompt",
        )
        self.negative: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=t("generate.modal.negative_prompt", locale),
            style=discord.TextStyle.paragraph,
            default=draft.negative_prompt[:TEXT_INPUT_MAX],
            max_length=_room(NEGATIVE_PROMPT_MAX, draft.negative_prompt),
            required=False,
            custom_id="negative_prompt",
        )
        self.count: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=t("remix.modal.count", locale),
            default=draft.count[:COUNT_MAX_LENGTH],
            max_length=COUNT_MAX_LENGTH,
            custom_id="count",
        )
        self.seed: discord.ui.TextInput[RemixModal] = discord.ui.TextInput(
            label=t("remix.modal.seed", locale),
            default=draft.seed[:SEED_MAX_LENGTH],
            max_length=SEED_MAX_LENGTH,
            required=False,
            custom_id="seed",
        )
        for item in (self.prompt, self.negative, self.count, self.seed):
            self.add_item(item)

    def draft(self) -> RemixDraft:
        """What the member submitted."""
        return RemixDraft(
            prompt=self.prompt.value,
            negative_prompt=self.negative.value,
            count=self.count.value,
            seed=self.seed.value,
        )

    async def submitted(self, interaction: BotInteraction) -> None:
        bot = interaction.client
        locale = bot.locale_for(interaction)
        draft = self.draft()
        await defer(interaction)
        try:
            task = await _still_there(interaction, self.task.id)
            new = await remix(bot, task, draft, user_id=interaction.user.id, locale=locale)
        except DomainError as refused:
            # Nothing was queued; the member gets the reason and their edits back.
            reason = describe_error(refused, locale) or ""
            await reply(
                interaction,
                t("remix.refused", locale, reason=reason),
                view=RetryView(interaction, self.task, draft, locale),
            )
            return
        position = interaction.client.generation.queue_position(new.id, new.guild_id)
        await reply(interaction, render.accepted_text(new, position, locale))


async def _still_there(interaction: BotInteraction, task_id: int) -> Task:
    """The parent again at submit time: it may have been pruned while the form was open."""
    assert interaction.guild_id is not None  # BoundModal checked it is the opener's guild
    task = await interaction.client.store.tasks.get_in_guild(interaction.guild_id, task_id)
    if task is None:
        raise UserFacingError("result.not_found", id=task_id)
    return task


class RetryView(ReportingView):
    """One button under a refused remix that opens the form again with the member's edits."""

    def __init__(
        self, refused: BotInteraction, task: Task, draft: RemixDraft, locale: str | None
    ) -> None:
        super().__init__(timeout=RETRY_SECONDS)
        self.refused = refused
        self.task = task
        self.draft = draft
        self.locale = locale
        self.edit_again.label = t("remix.edit_again", locale)

    @discord.ui.button(emoji="✏️", style=discord.ButtonStyle.primary)
    async def edit_again(
        self, interaction: discord.Interaction[discord.Client], _: discord.ui.Button[RetryView]
    ) -> None:
        modal = RemixModal(bot_interaction(interaction), self.task, self.draft, self.locale)
        await interaction.response.send_modal(modal)

    async def on_timeout(self) -> None:
        try:
            await self.refused.edit_original_response(view=None)
        except discord.HTTPException as exc:  # dismissed by the member, or the token ran out
            log.debug("remix retry button of task %s not removed (%s)", self.task.id, exc.status)
