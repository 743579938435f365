"""What the job layer needs from the rest of the bot: accounts in, events out."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.jobs.errors import Refused
from bot.jobs.models import GenerationRequest, Posted
from bot.store import Task
from bot.v1b import AccountSession


class BoundAccount(Protocol):
    """A session and the id of the account it belongs to (None: the guild's demo account)."""

    @property
    def account_id(self) -> int | None: ...

    @property
    def session(self) -> AccountSession: ...


class AccountResolver(Protocol):
    """Finds Miaohua account sessions: a guild's current one, or the one work ran on."""

    async def session_for(self, guild_id: int) -> AccountSession:
        """Return the guild's session; raise `bot.jobs.errors.NoAccount` when it has none."""
        ...

    async def session_for_account(self, guild_id: int, account_id: int | None) -> AccountSession:
        """Return the session of the account a task was submitted with (even if replaced)."""
        ...

    async def acquire(self, guild_id: int) -> BoundAccount:
        """Return the guild's current account, kept until `release` even if replaced."""
        ...

    async def release(self, bound: BoundAccount) -> None:
        """End an `acquire` once the work recorded its account (or failed)."""
        ...

    async def finished_with(self, account_id: int | None) -> None:
        """Work submitted with this account finished (a retired one may now be deleted)."""
        ...


class PollRounds(Protocol):
    """The bot's one polling loop (`bot.jobs.poller.Poller`), for services with their own beat."""

    def every(self, name: str, interval: float, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run` now, then `interval` seconds after each run ends (or when woken)."""
        ...

    def wake(self, name: str) -> None:
        """Run the round `name` now, or again right after its current run."""
        ...

    async def cancel(self, name: str) -> None:
        """Stop the round `name`, cancelling its current run."""
        ...


class JobEvents(Protocol):
    """Receives the life of each task; the Discord side implements it."""

    async def task_accepted(self, task: Task, position: int | None) -> None:
        """A new task was stored: it waits at `position` (1-based) in its guild's queue, or
        None when it was taken for submission at once. Sent once per task."""
        ...

    async def task_progress(self, task: Task, position: int | None, wait_time: int | None) -> None:
        """The queue position or the service's wait time of a task changed."""
        ...

    async def task_done(self, task: Task) -> Posted | None:
        """Deliver the result; return where it was posted, or None when it could not be."""
        ...

    async def task_failed(self, task: Task) -> None:
        """A task failed; `task.error` holds the reason code, `task.error_detail` the text."""
        ...

    async def task_cancelled(self, task: Task) -> None:
        """A queued task was cancelled before it was submitted."""
        ...

    def request_refused(self, request: GenerationRequest, refusal: Refused) -> None:
        """A request was refused at admission; must return at once (post in the background)."""
        ...
