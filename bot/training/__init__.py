"""Model training: safe intake of images and the resumable job flow (no Discord here).

The Discord side (progress messages, the sample button, `/status` lines, wiring) is
`bot.discord_training`; the two meet at `TrainingEvents` and the account resolver Protocol.
"""

from bot.training.service import TrainingEvents, TrainingRequest, TrainingService
from bot.training.staging import Staging

__all__ = ["Staging", "TrainingEvents", "TrainingRequest", "TrainingService"]
