"""The persistent "Generate a sample" button under a trained-model announcement."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot.discord_jobs.buttons import ViewButton, button_label
from bot.discord_jobs.requests import guild_limits
from bot.errors import UserFacingError
from bot.i18n import t
from bot.jobs import GenerationRequest
from bot.replies import defer, reply
from bot.store.trainings import TrainingState
from bot.tree import report_error
from bot.types import bot_interaction


class SampleButton(discord.ui.DynamicItem[ViewButton], template=r"mh:sample:(?P<id>\d+)"):
    """Generates one image with the trained model and its trigger word; works after restarts."""

    def __init__(self, training_id: int, label: str = "Generate a sample") -> None:
        super().__init__(
            discord.ui.Button(
                label=label,
                emoji="🎨",
                style=discord.ButtonStyle.primary,
                custom_id=f"mh:sample:{training_id}",
            )
        )
        self.training_id = training_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> SampleButton:
        return cls(int(match["id"]), label=button_label(item))

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            await generate_sample(interaction, self.training_id)
        except Exception as exc:
            await report_error(interaction, exc)


def sample_view(training_id: int, locale: str) -> discord.ui.View:
    """A view holding the sample button of a training."""
    view = discord.ui.View(timeout=None)
    view.add_item(SampleButton(training_id, label=t("train.sample.button", locale)))
    return view


async def generate_sample(interaction: discord.Interaction, training_id: int) -> None:
    """Queue a one-image generation with the trained model for the member who clicked."""
    bot = bot_interaction(interaction).client
    guild_id = interaction.guild_id
    locale = bot.locale_for(interaction)
    if guild_id is None:
        raise UserFacingError("train.sample.unavailable")
    training = await bot.store.trainings.get_in_guild(guild_id, training_id)
    if training is None or training.state is not TrainingState.DONE or not training.model_name:
        raise UserFacingError("train.sample.unavailable")
    await defer(interaction)
    form = await bot.forms.generation_form(guild_id)
    request = GenerationRequest(
        guild_id=guild_id,
        channel_id=interaction.channel_id or training.channel_id,
        user_id=interaction.user.id,
        locale=locale,
        kind="t2i",
        model=training.model_name,
        prompt=training.trigger_word or training.name,
        count=1,
        scale=form.scale.default,
        size=form.default_resolution or form.all_sizes()[0],
        interaction_id=interaction.id,
    )
    task = await bot.generation.enqueue(request, limits=await guild_limits(bot, guild_id))
    await reply(interaction, t("train.sample.queued", locale, id=task.id))
