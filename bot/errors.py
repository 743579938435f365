"""The bot's domain errors: what went wrong, as a message key and the values that fill it.

Domain code (bot/v1b, bot/store, bot/jobs, bot/training) raises these without knowing about
Discord; `bot.tree.describe_error` turns any of them into the member's language, in one place.

    DomainError                  key + params
    ├── UserFacingError          a refusal of the member's input; the key is chosen where raised
    ├── AccountProblem           the guild's Miaohua account cannot be used (missing, unreadable)
    ├── ServiceFailure           something the bot relies on failed (bot.store.StoreUnavailable)
    ├── bot.jobs.errors.JobError admission refusals (`Refused`), the account errors of the jobs
    └── bot.v1b.errors.V1bError  what the Miaohua service answered, one class per meaning
"""

from __future__ import annotations

from collections.abc import Mapping


class DomainError(Exception):
    """An error a member is told about: `key` names the catalog message, `params` fill it.

    A class whose message never varies sets `key` on the class (the catalog meta-test checks
    every such key); otherwise it is given when raised. `str()` of the error (`text`, else
    the key) is for logs and never holds a secret.
    """

    key: str
    params: Mapping[str, object]

    def __init__(
        self,
        key: str | None = None,
        params: Mapping[str, object] | None = None,
        *,
        text: str | None = None,
    ) -> None:
        if key is not None:
            self.key = key
        super().__init__(self.key if text is None else text)
        self.params = dict(params or {})


class UserFacingError(DomainError):
    """A refusal of the member's input or request; nothing was done, they can act on it."""

    def __init__(self, key: str, /, **params: object) -> None:
        super().__init__(key, params)


class AccountProblem(DomainError):
    """The guild's Miaohua account cannot be used for this work; an admin can fix it."""


class ServiceFailure(DomainError):
    """Something the bot relies on failed; nothing was done and trying later may work."""
