"""One polling loop for every submitted task: a timer heap, grouped per account."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.jobs.errors import AccountUnreadable, NoAccount
from bot.jobs.models import FailReason
from bot.jobs.polling import PollStrategy
from bot.jobs.protocols import AccountResolver
from bot.jobs.timers import TimerHeap
from bot.store import Store, Task
from bot.v1b import AccountSession, AuthError, InvalidRequest, TaskFailed, TaskResult, V1bError

log = logging.getLogger(__name__)

BATCH_SIZE = 50

Outcome = TaskResult | V1bError
DoneCallback = Callable[[Task], Awaitable[None]]
FailCallback = Callable[[Task, FailReason, str], Awaitable[None]]
ProgressCallback = Callable[[Task, int | None], Awaitable[None]]


@dataclass(slots=True)
class _Pending:
    """A submitted task the poller watches."""

    task: Task
    polls: int = 0
    errors: int = 0
    wait_time: int | None = None


class Poller:
    """Polls submitted tasks when due; hands results to the service's callbacks."""

    def __init__(
        self,
        store: Store,
        accounts: AccountResolver,
        strategy: PollStrategy,
        *,
        on_done: DoneCallback,
        on_failed: FailCallback,
        on_progress: ProgressCallback,
        use_batch: bool = True,
        batch_interval: float = 0.5,
        task_timeout: float = 600.0,
        error_backoff: float = 1.0,
        max_error_backoff: float = 30.0,
        coalesce: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self.strategy = strategy
        self._on_done = on_done
        self._on_failed = on_failed
        self._on_progress = on_progress
        self.use_batch = use_batch
        self.batch_interval = batch_interval
        self._batch_works = False  # a batch call has succeeded: polls cost per account, not task
        self.task_timeout = task_timeout
        self.error_backoff = error_backoff
        self.max_error_backoff = max_error_backoff
        self.coalesce = coalesce
        self._clock = clock
        self._wall = wall_clock
        self._pending: dict[int, _Pending] = {}
        self._by_guild: defaultdict[int, set[int]] = defaultdict(set)
        self._timers = TimerHeap()
        self._wake = asyncio.Event()
        self._groups: set[asyncio.Task[None]] = set()
        self._polling: set[int] = set()  # guilds with a poll group running
        self._due: dict[int, list[_Pending]] = defaultdict(list)  # due, waiting for that group
        self._stopping = False

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._pending

    def memory_sizes(self) -> dict[str, int]:
        """Entries of the poller's per-guild and per-task structures (see the service's)."""
        strategy_sizes = getattr(self.strategy, "memory_sizes", dict)
        return {
            "polled_tasks": len(self._pending),
            "polled_guilds": len(self._by_guild),
            "poll_timers": len(self._timers),
            "poll_due_guilds": len(self._due),
            **strategy_sizes(),
        }

    def add(self, task: Task, *, now: bool = False) -> None:
        """Start watching a submitted task; `now` polls it at once (e.g. after a restart)."""
        entry = self._pending[task.id] = _Pending(task, polls=task.poll_count)
        self._by_guild[task.guild_id].add(task.id)
        delay = 0.0 if now else self.strategy.next_interval(task, None, 0, self._elapsed(task))
        self._schedule(entry, delay)

    async def run(self) -> None:
        """Poll due tasks until cancelled."""
        self._stopping = False
        while True:
            self._wake.clear()
            due = self._timers.pop_due(self._clock() + self.coalesce)
            if due or self._due:
                self._launch(due)
            next_due = self._timers.next_due()
            delay = None if next_due is None else max(0.0, next_due - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def stop(self, grace: float) -> None:
        """Stop launching polls; wait up to `grace` seconds for running ones, then cancel."""
        self._stopping = True
        if self._groups:
            _, running = await asyncio.wait(self._groups, timeout=grace)
            for group in running:
                group.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _elapsed(self, task: Task) -> float:
        return max(0.0, self._wall() - (task.submitted_at or self._wall()))

    def _schedule(self, entry: _Pending, delay: float) -> None:
        if self._batch_works:
            # One call polls every task of the account: keep them all on one short beat.
            delay = min(delay, self.batch_interval)
        remaining = self.task_timeout - self._elapsed(entry.task)
        self._timers.schedule(entry.task.id, self._clock() + max(0.0, min(delay, remaining)))
        self._wake.set()

    def _launch(self, task_ids: list[int]) -> None:
        for task_id in task_ids:
            if (entry := self._pending.get(task_id)) is not None:
                self._due[entry.task.guild_id].append(entry)
        # One poll group per guild at a time: tasks falling due meanwhile join the next one.
        for guild_id in [g for g in self._due if g not in self._polling]:
            entries = self._due.pop(guild_id)
            self._polling.add(guild_id)
            group = asyncio.create_task(self._poll_guild(guild_id, entries))
            self._groups.add(group)
            group.add_done_callback(self._groups.discard)
            group.add_done_callback(lambda _, guild_id=guild_id: self._group_done(guild_id))

    def _group_done(self, guild_id: int) -> None:
        self._polling.discard(guild_id)
        if guild_id in self._due:
            self._wake.set()

    async def _poll_guild(self, guild_id: int, entries: list[_Pending]) -> None:
        live = []
        for entry in entries:
            if self._elapsed(entry.task) >= self.task_timeout:
                detail = f"no result after {self.task_timeout:g}s"
                await self._fail(entry, FailReason.TIMEOUT, detail)
            else:
                live.append(entry)
        if not live:
            return
        try:
            acct = await self._accounts.session_for(guild_id)
        except NoAccount:
            for entry in live:
                await self._fail(entry, FailReason.NO_ACCOUNT, "")
            return
        except AccountUnreadable:
            for entry in live:
                await self._fail(entry, FailReason.ACCOUNT_INVALID, "stored credentials unreadable")
            return
        except Exception:
            log.exception("could not get the account of guild %s for polling", guild_id)
            for entry in live:
                self._retry_later(entry)
            return
        if self.use_batch and acct.batch_supported is not False:
            live += self._ride_along(guild_id, live)
            for start in range(0, len(live), BATCH_SIZE):
                await self._poll_batch(acct, live[start : start + BATCH_SIZE])
        else:
            for entry in live:
                if self._stopping:
                    return
                try:
                    outcome: Outcome = await acct.task_result(entry.task.service_task_id or "")
                except V1bError as exc:
                    outcome = exc
                await self._settle(entry, outcome)

    def _ride_along(self, guild_id: int, polled: list[_Pending]) -> list[_Pending]:
        """The guild's other pending tasks: in a batch call they cost nothing extra."""
        self._due.pop(guild_id, None)
        taken = {entry.task.id for entry in polled}
        extra = []
        for task_id in self._by_guild.get(guild_id, ()):
            entry = self._pending.get(task_id)
            if entry is not None and task_id not in taken:
                self._timers.discard(task_id)
                extra.append(entry)
        return extra

    async def _poll_batch(self, acct: AccountSession, chunk: list[_Pending]) -> None:
        ids = [entry.task.service_task_id or "" for entry in chunk]
        try:
            results = await acct.task_results(ids)
            self._batch_works = acct.batch_supported is True
        except V1bError as exc:
            for entry in chunk:
                await self._settle(entry, exc)
            return
        for entry, service_id in zip(chunk, ids, strict=True):
            outcome = results.get(service_id)
            if outcome is None:
                outcome = V1bError("task_results", "task missing from the batch answer")
            await self._settle(entry, outcome)

    async def _settle(self, entry: _Pending, outcome: Outcome) -> None:
        try:
            await self._handle(entry, outcome)
        except Exception:
            log.exception("handling the poll of task %s failed", entry.task.id)
            self._retry_later(entry)

    async def _handle(self, entry: _Pending, outcome: Outcome) -> None:
        task = entry.task
        if isinstance(outcome, TaskFailed):
            await self._fail(entry, FailReason.GENERATION_FAILED, outcome.message)
        elif isinstance(outcome, AuthError):
            await self._fail(entry, FailReason.ACCOUNT_INVALID, outcome.message)
        elif isinstance(outcome, InvalidRequest):
            await self._fail(entry, FailReason.INVALID_REQUEST, outcome.message)
        elif isinstance(outcome, V1bError):
            log.warning("poll of task %s failed, retrying: %s", task.id, outcome)
            self._retry_later(entry)
        elif outcome.failed:
            await self._fail(entry, FailReason.GENERATION_FAILED, outcome.error_msg)
        elif outcome.done:
            await self._done(entry, outcome)
        else:
            await self._still_pending(entry, outcome.wait_time)

    async def _still_pending(self, entry: _Pending, wait_time: int | None) -> None:
        entry.polls += 1
        entry.errors = 0
        task = entry.task
        delay = self.strategy.next_interval(task, wait_time, entry.polls, self._elapsed(task))
        self._schedule(entry, delay)
        if wait_time != entry.wait_time:
            entry.wait_time = wait_time
            next_poll_at = self._wall() + delay
            updated = await self._store.tasks.record_progress(task.id, wait_time, next_poll_at)
            if updated is not None:
                entry.task = updated
                await self._on_progress(updated, wait_time)

    async def _done(self, entry: _Pending, result: TaskResult) -> None:
        task = entry.task
        self.strategy.completed(task, self._elapsed(task))
        self._forget(task.id)
        images = [image.model_dump() for image in result.images]
        done = await self._store.tasks.mark_done(task.id, images, result.select_seed)
        if done is None:
            log.warning("task %s was no longer submitted when found done", task.id)
            return
        await self._on_done(done)

    async def _fail(self, entry: _Pending, reason: FailReason, detail: str) -> None:
        self._forget(entry.task.id)
        await self._on_failed(entry.task, reason, detail)

    def _retry_later(self, entry: _Pending) -> None:
        entry.errors += 1
        delay = min(self.max_error_backoff, self.error_backoff * 2 ** (entry.errors - 1))
        self._schedule(entry, delay)

    def _forget(self, task_id: int) -> None:
        entry = self._pending.pop(task_id, None)
        if entry is not None:
            guild_tasks = self._by_guild.get(entry.task.guild_id)
            if guild_tasks is not None:
                guild_tasks.discard(task_id)
                if not guild_tasks:
                    del self._by_guild[entry.task.guild_id]
        self._timers.discard(task_id)
        self.strategy.forget(task_id)
