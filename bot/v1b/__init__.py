"""Async client of SenseTime Miaohua's v1b API: models, typed errors, rate limits."""

from . import errors
from .account import AccountSession
from .client import V1bClient
from .errors import (
    AccountBusy,
    AuthError,
    ConnectionFailed,
    FeatureUnavailable,
    InvalidCredentials,
    InvalidRequest,
    NotBusinessAccount,
    NotEnoughPoints,
    ResponseTooLarge,
    ServiceError,
    TaskFailed,
    V1bError,
    WrongPassword,
)
from .models import (
    Dataset,
    GenerationForm,
    IntRange,
    ResultImage,
    TaskParams,
    TaskResult,
    TrainForm,
    TrainParams,
    TrainProgress,
)
from .ratelimit import RateLimiter
from .retry import RetryPolicy
from .validation import validate_task_params

__all__ = [
    "AccountBusy",
    "AccountSession",
    "AuthError",
    "ConnectionFailed",
    "Dataset",
    "FeatureUnavailable",
    "GenerationForm",
    "IntRange",
    "InvalidCredentials",
    "InvalidRequest",
    "NotBusinessAccount",
    "NotEnoughPoints",
    "RateLimiter",
    "ResponseTooLarge",
    "ResultImage",
    "RetryPolicy",
    "ServiceError",
    "TaskFailed",
    "TaskParams",
    "TaskResult",
    "TrainForm",
    "TrainParams",
    "TrainProgress",
    "V1bClient",
    "V1bError",
    "WrongPassword",
    "errors",
    "validate_task_params",
]
