"""Errors of the job layer: admission refusals, each with a stable key for localized messages."""

from __future__ import annotations

from typing import Any, ClassVar


class JobError(Exception):
    """Base of the job layer's errors."""


class AccountUnreadable(JobError):
    """The guild's stored credentials cannot be decrypted: the bot's secret key changed."""


class Refused(JobError):
    """A request was refused at admission; `key` names the reason, `params` fill its message."""

    key: ClassVar[str] = "refused"

    def __init__(self, **params: Any) -> None:
        self.params = params
        shown = ", ".join(f"{name}={value!r}" for name, value in params.items())
        super().__init__(f"{self.key}({shown})" if shown else self.key)

    @property
    def reason(self) -> str:
        """The stable reason key (same as `key`)."""
        return self.key


class ChannelNotAllowed(Refused):
    """Generation is not allowed in this channel."""

    key = "channel_not_allowed"


class BlockedWord(Refused):
    """The prompt contains a blocked word (`word`)."""

    key = "blocked_word"


class PromptTooLong(Refused):
    """The prompt, once cleaned, is `length` characters: more than `limit`."""

    key = "prompt_too_long"


class UserBusy(Refused):
    """The user already has `count` tasks queued or running in this guild: the limit."""

    key = "user_busy"


class QuotaExceeded(Refused):
    """The user used up the daily quota (`count`); it resets at `resets_at` (epoch seconds)."""

    key = "quota_exceeded"


class NoAccount(Refused):
    """The guild has no Miaohua account configured."""

    key = "no_account"
