"""The Discord side of training: progress messages, the sample button and `/status` lines."""

from bot.discord_training.notifier import DiscordTrainingEvents
from bot.discord_training.sample import SampleButton
from bot.discord_training.status import training_lines
from bot.discord_training.wiring import create_training_service

__all__ = ["DiscordTrainingEvents", "SampleButton", "create_training_service", "training_lines"]
