"""Errors of the job layer: admission refusals and account problems, each with a message key."""

from __future__ import annotations

from bot.errors import AccountProblem, DomainError


class JobError(DomainError):
    """Base of the job layer's errors."""


class AccountUnreadable(JobError, AccountProblem):
    """The guild's stored credentials cannot be decrypted: the bot's secret key changed."""

    key = "account.unreadable"


class Refused(JobError):
    """A request was refused at admission; each kind's `key` is `refused.<reason>`."""

    def __init__(self, **params: object) -> None:
        shown = ", ".join(f"{name}={value!r}" for name, value in params.items())
        super().__init__(params=params, text=f"{self.reason}({shown})" if shown else self.reason)

    @property
    def reason(self) -> str:
        """The stable reason code, e.g. `user_busy`."""
        return self.key.removeprefix("refused.")


class ChannelNotAllowed(Refused):
    """Generation is not allowed in this channel."""

    key = "refused.channel_not_allowed"


class BlockedWord(Refused):
    """The prompt contains a blocked word (`word`)."""

    key = "refused.blocked_word"


class PromptTooLong(Refused):
    """The prompt, once cleaned, is `length` characters: more than `limit`."""

    key = "refused.prompt_too_long"


class StyledPromptTooLong(PromptTooLong):
    """The prompt, once the server style `style` wrapped it, is `length` characters: too long."""

    key = "refused.styled_prompt_too_long"


class UserBusy(Refused):
    """The user already has `count` tasks running in a guild where none may wait."""

    key = "refused.user_busy"


class QueueFull(Refused):
    """The user already has `count` tasks waiting, the limit, beyond `running` at the service."""

    key = "refused.queue_full"


class QuotaExceeded(Refused):
    """The user used up the daily quota (`count`); it resets at `resets_at` (epoch seconds)."""

    key = "refused.quota_exceeded"


class NoAccount(Refused, AccountProblem):
    """The guild has no Miaohua account configured."""

    key = "refused.no_account"
