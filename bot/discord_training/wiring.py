"""Building the training service from the bot's settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.discord_training.notifier import DiscordTrainingEvents
from bot.metrics import MeteredTrainingEvents
from bot.training.service import TrainingService
from bot.training.staging import Staging

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

MAX_RETRY_DELAY = 2.0


def create_training_service(bot: MiaohuaBot) -> TrainingService:
    """The training service of a bot whose store, accounts and forms are ready."""
    settings = bot.settings
    m = settings.miaohua
    events = MeteredTrainingEvents(
        DiscordTrainingEvents(bot, edit_interval=m.training_progress_edit_interval), bot.metrics
    )
    return TrainingService(
        bot.store,
        bot.accounts,
        events,
        rounds=bot.generation.poller,
        staging=Staging(settings.storage.staging_dir),
        on_model=bot.forms.invalidate,
        concurrency=settings.limits.training_concurrency,
        poll_interval=m.training_poll_interval,
        timeout=m.training_timeout,
        retry_delay=min(MAX_RETRY_DELAY, m.training_poll_interval),
    )
