"""Model training: safe intake of images, the resumable job flow and its Discord messages."""

from bot.training.notifier import DiscordTrainingEvents
from bot.training.sample import SampleButton
from bot.training.service import TrainingRequest, TrainingService
from bot.training.staging import Staging
from bot.training.status import training_lines
from bot.training.wiring import create_training_service

__all__ = [
    "DiscordTrainingEvents",
    "SampleButton",
    "Staging",
    "TrainingRequest",
    "TrainingService",
    "create_training_service",
    "training_lines",
]
