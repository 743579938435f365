"""The Discord side of training jobs: one progress message per job, edited when it changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import discord

from bot.display import render, shown
from bot.i18n import pick_locale, t
from bot.replies import NO_MENTIONS
from bot.store.trainings import Training
from bot.training.render import progress_text
from bot.training.sample import sample_view

log = logging.getLogger(__name__)


@dataclass
class _Throttle:
    last_text: str = ""
    last_edit: float = float("-inf")
    latest: Training | None = None
    remaining: float | None = None
    timer: asyncio.Task[None] | None = field(default=None, repr=False)


class DiscordTrainingEvents:
    """Posts and edits progress messages with the bot token; announces the outcome."""

    def __init__(
        self,
        bot: discord.Client,
        *,
        edit_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bot = bot
        self._interval = edit_interval
        self._clock = clock
        self._throttles: dict[int, _Throttle] = {}

    async def close(self) -> None:
        """Drop pending delayed edits (the next start shows the current state anyway)."""
        for throttle in self._throttles.values():
            if throttle.timer is not None:
                throttle.timer.cancel()
        self._throttles.clear()

    async def training_created(self, training: Training) -> int | None:
        """Post the progress message; return its id."""
        locale = await self._locale(training.guild_id)
        text = progress_text(training, locale, time.time(), name=shown(training.name))
        try:
            message = await self._channel(training).send(text, allowed_mentions=NO_MENTIONS)
        except discord.HTTPException as exc:
            log.warning("training %s: cannot post progress: %s", training.id, exc.status)
            return None
        self._throttles[training.id] = _Throttle(last_text=text, last_edit=self._clock())
        return message.id

    async def training_progress(self, training: Training, remaining: float | None) -> None:
        """Edit the progress message, at most once per interval and only on change."""
        throttle = self._throttles.setdefault(training.id, _Throttle())
        throttle.latest, throttle.remaining = training, remaining
        wait = throttle.last_edit + self._interval - self._clock()
        if wait <= 0:
            await self._flush(training.id)
        elif throttle.timer is None:
            throttle.timer = asyncio.create_task(self._flush_later(training.id, wait))

    async def training_done(self, training: Training) -> None:
        """Show the final state and announce the model with a sample button."""
        await self._final_edit(training)
        locale = await self._locale(training.guild_id)
        text = render(
            "train.done",
            locale,
            trusted={"user": f"<@{training.user_id}>"},
            name=training.name,
            model=training.model_name or training.name,
            trigger=training.trigger_word or "-",
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
        kwargs: dict = {"allowed_mentions": mentions}
        if view is not None:
            kwargs["view"] = view
        try:
            await self._channel(training).send(text, **kwargs)
        except discord.HTTPException as exc:
            log.warning("training %s: cannot announce the outcome: %s", training.id, exc.status)

    async def _final_edit(self, training: Training) -> None:
        # The outcome is shown at once rather than waiting for the next edit slot.
        throttle = self._throttles.pop(training.id, None)
        if throttle and throttle.timer:
            throttle.timer.cancel()
        locale = await self._locale(training.guild_id)
        await self._edit(
            training, progress_text(training, locale, time.time(), name=shown(training.name))
        )

    async def _flush_later(self, training_id: int, delay: float) -> None:
        await asyncio.sleep(delay)
        throttle = self._throttles.get(training_id)
        if throttle is not None:
            throttle.timer = None
            await self._flush(training_id)

    async def _flush(self, training_id: int) -> None:
        throttle = self._throttles.get(training_id)
        if throttle is None or throttle.latest is None:
            return
        training = throttle.latest
        locale = await self._locale(training.guild_id)
        text = progress_text(
            training, locale, time.time(), throttle.remaining, name=shown(training.name)
        )
        if text == throttle.last_text:
            return
        throttle.last_text, throttle.last_edit = text, self._clock()
        await self._edit(training, text)

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
        languages = getattr(self._bot, "guild_languages", {})
        if guild_id not in languages:
            settings = await self._bot.store.settings.get(guild_id)  # type: ignore[attr-defined]
            languages[guild_id] = settings.language
        return pick_locale(languages.get(guild_id))
