"""The Discord side of training jobs: one progress message per job, edited when it changes."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import discord

from bot.discord_jobs.host import DiscordHost
from bot.discord_jobs.throttle import ThrottledMessage
from bot.discord_training.sample import sample_view
from bot.display import in_code_or_none, render, shown
from bot.i18n import pick_locale, t
from bot.replies import NO_MENTIONS
from bot.store.trainings import Training
from bot.training.render import progress_text

log = logging.getLogger(__name__)


class DiscordTrainingEvents:
    """Posts and edits progress messages with the bot token; announces the outcome."""

    def __init__(
        self,
        bot: DiscordHost,
        *,
        edit_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = bot
        self._interval = edit_interval
        self._clock = clock
        self._messages: dict[int, ThrottledMessage] = {}
        self._latest: dict[int, Training] = {}  # the newest state of each job, for its edits

    async def close(self) -> None:
        """Drop pending delayed edits (the next start shows the current state anyway)."""
        for message in self._messages.values():
            message.cancel()
        self._messages.clear()
        self._latest.clear()

    async def training_created(self, training: Training) -> int | None:
        """Post the progress message; return its id."""
        locale = await self._locale(training.guild_id)
        text = progress_text(training, locale, time.time(), name=shown(training.name))
        try:
            message = await self._channel(training).send(text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("training %s: cannot post progress: %s", training.id, exc.status)
            return None
        self._message(training.id).sent(text)
        return message.id

    async def training_progress(self, training: Training, remaining: float | None) -> None:
        """Edit the progress message, at most once per interval and only on change."""
        self._latest[training.id] = training

        async def text() -> str:
            # Rendered when sent: a delayed edit shows the elapsed time of its own moment.
            locale = await self._locale(training.guild_id)
            return progress_text(
                training, locale, time.time(), remaining, name=shown(training.name)
            )

        await self._message(training.id).update(text)

    async def training_done(self, training: Training) -> None:
        """Show the final state and announce the model with a sample button."""
        await self._final_edit(training)
        locale = await self._locale(training.guild_id)
        text = render(
            "train.done",
            locale,
            trusted={
                "user": f"<@{training.user_id}>",
                "trigger": in_code_or_none(training.trigger_word, locale),
            },
            name=training.name,
            model=training.model_name or training.name,
        )
        await self._announce(training, text, sample_view(training.id, locale))

    async def training_failed(self, training: Training, detail: str) -> None:
        """Show the final state and tell the requester why it failed."""
        await self._final_edit(training)
        locale = await self._locale(training.guild_id)
        reason = t(f"train.reason.{training.error or 'unknown'}", locale)
        text = render(
            "train.failed", locale, trusted={"user": f"<@{training.user_id}>"}, name=training.name
        )
        text = f"{text}\n{reason}" + (f"\n> {shown(detail)}" if detail else "")
        await self._announce(training, text, None)

    async def _announce(self, training: Training, text: str, view: discord.ui.View | None) -> None:
        mentions = discord.AllowedMentions(users=[discord.Object(training.user_id)])
        kwargs: dict[str, Any] = {"allowed_mentions": mentions}
        if view is not None:
            kwargs["view"] = view
        try:
            await self._channel(training).send(text, **kwargs)
        except discord.HTTPException as exc:
            log.warning("training %s: cannot announce the outcome: %s", training.id, exc.status)

    async def _final_edit(self, training: Training) -> None:
        # The outcome is shown at once rather than waiting for the next edit slot.
        message = self._messages.pop(training.id, None)
        self._latest.pop(training.id, None)
        if message is not None:
            message.cancel()
        locale = await self._locale(training.guild_id)
        await self._edit(
            training, progress_text(training, locale, time.time(), name=shown(training.name))
        )

    def _message(self, training_id: int) -> ThrottledMessage:
        message = self._messages.get(training_id)
        if message is None:

            async def edit(text: str) -> bool:
                training = self._latest.get(training_id)
                if training is not None:
                    await self._edit(training, text)
                return True  # a failed edit is not retried until the text changes

            message = ThrottledMessage(edit, interval=self._interval, clock=self._clock)
            self._messages[training_id] = message
        return message

    async def _edit(self, training: Training, text: str) -> None:
        if not training.progress_message_id:
            return
        message = self._channel(training).get_partial_message(training.progress_message_id)
        try:
            await message.edit(content=text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("training %s: cannot edit progress: %s", training.id, exc.status)

    def _channel(self, training: Training) -> discord.PartialMessageable:
        return self._bot.get_partial_messageable(training.channel_id, guild_id=training.guild_id)

    async def _locale(self, guild_id: int) -> str:
        # Channel messages are read by everyone: use the guild's language.
        languages = self._bot.guild_languages
        if guild_id not in languages:
            settings = await self._bot.store.settings.get(guild_id)
            languages[guild_id] = settings.language
        return pick_locale(languages.get(guild_id))
