"""The job layer: admission, fair queueing, polling and delivery of generation tasks."""

from bot.jobs.errors import (
    BlockedWord,
    ChannelNotAllowed,
    JobError,
    NoAccount,
    PromptTooLong,
    QueueFull,
    QuotaExceeded,
    Refused,
    UserBusy,
)
from bot.jobs.models import Delivery, FailReason, GenerationRequest, Limits, Posted
from bot.jobs.polling import AdaptiveInterval, FixedInterval, PollStrategy, make_strategy
from bot.jobs.protocols import AccountResolver, JobEvents
from bot.jobs.service import GenerationService

__all__ = [
    "AccountResolver",
    "AdaptiveInterval",
    "BlockedWord",
    "ChannelNotAllowed",
    "Delivery",
    "FailReason",
    "FixedInterval",
    "GenerationRequest",
    "GenerationService",
    "JobError",
    "JobEvents",
    "Limits",
    "NoAccount",
    "PollStrategy",
    "Posted",
    "PromptTooLong",
    "QueueFull",
    "QuotaExceeded",
    "Refused",
    "UserBusy",
    "make_strategy",
]
