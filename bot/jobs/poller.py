"""One polling loop for the bot: every submitted task, grouped per account, and the
periodic rounds other services register (training jobs poll on their own interval)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from bot.background import finish_or_cancel
from bot.jobs.errors import AccountUnreadable, NoAccount
from bot.jobs.models import FailReason
from bot.jobs.polling import PollStrategy
from bot.jobs.protocols import AccountResolver
from bot.jobs.timers import TimerHeap
from bot.store import Store, StoreUnavailable, Task, until_stored
from bot.v1b import (
    AccountSession,
    AuthError,
    InvalidRequest,
    ResponseTooLarge,
    ResultImage,
    TaskFailed,
    TaskResult,
    V1bError,
)
from bot.v1b.account import BATCH_LIMIT

log = logging.getLogger(__name__)

Outcome = TaskResult | V1bError
DoneCallback = Callable[[Task], Awaitable[None]]
FailCallback = Callable[[Task, FailReason, str], Awaitable[None]]
ProgressCallback = Callable[[Task, int | None], Awaitable[None]]
GoneCallback = Callable[[Task], None]
RecheckHook = Callable[[Task, float], float | None]


@dataclass(frozen=True, slots=True)
class _Verdict:
    """A failure the poller decided on its own (timeout, no usable account)."""

    reason: FailReason
    detail: str


def requested_images(task: Task, result: TaskResult) -> list[ResultImage]:
    """The result's images, at most as many as the task asked for.

    A broken or hostile service may list hundreds: each one would be downloaded.
    """
    wanted = max(1, task.count)
    if len(result.images) > wanted:
        log.warning(
            "task %s: the service listed %d images for %d requested; keeping %d",
            task.id,
            len(result.images),
            wanted,
            wanted,
        )
    return list(result.images[:wanted])


@dataclass(slots=True)
class _Round:
    """A periodic poll registered with `Poller.every`."""

    run: Callable[[], Awaitable[None]]
    interval: float
    task: asyncio.Task[None] | None = None
    woken: bool = False  # woken while running: run again as soon as this round ends


@dataclass(slots=True)
class _Pending:
    """A submitted task the poller watches."""

    task: Task
    polls: int = 0
    errors: int = 0
    wait_time: int | None = None


class Poller:
    """Polls submitted tasks when due; hands results to the service's callbacks.

    A task leaves the poller only once its outcome is stored: while the database refuses
    writes, its poll group keeps retrying the write (the guild's other tasks wait for the
    group, as their outcomes could not be stored either), and the task's slot stays taken.
    """

    def __init__(
        self,
        store: Store,
        accounts: AccountResolver,
        strategy: PollStrategy,
        *,
        on_done: DoneCallback,
        on_failed: FailCallback,
        on_progress: ProgressCallback,
        on_gone: GoneCallback,
        use_batch: bool = True,
        batch_interval: float = 0.5,
        task_timeout: float = 600.0,
        error_backoff: float = 1.0,
        max_error_backoff: float = 30.0,
        coalesce: float = 0.05,
        reload_rate: float = 200.0,
        launch_burst: int = 10,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self.strategy = strategy
        self._on_done = on_done
        self._on_failed = on_failed
        self._on_progress = on_progress
        self._on_gone = on_gone
        self.use_batch = use_batch
        self.batch_interval = batch_interval
        # The session of the last batch call: its client knows whether the service answers
        # batch calls (then polls cost per account, not per task).
        self._batch_session: AccountSession | None = None
        self.task_timeout = task_timeout
        self.error_backoff = error_backoff
        self.max_error_backoff = max_error_backoff
        self.coalesce = coalesce
        self.reload_rate = reload_rate
        # Poll groups started per pass of the event loop: each one's first step (building
        # and sending its request) runs in the loop's next pass, so hundreds falling due
        # together would hold up commands and answers for as long as all of those take.
        self.launch_burst = max(1, launch_burst)
        self._clock = clock
        self._wall = wall_clock
        self._pending: dict[int, _Pending] = {}
        self._by_guild: defaultdict[int, set[int]] = defaultdict(set)
        self._timers: TimerHeap[int | str] = TimerHeap()  # task ids and round names
        self._rounds: dict[str, _Round] = {}
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
            "poll_timers": len(self._timers) - sum(name in self._timers for name in self._rounds),
            "poll_due_guilds": len(self._due),
            **strategy_sizes(),
        }

    def add(self, task: Task, *, now: bool = False) -> None:
        """Start watching a submitted task; `now` polls it at once."""
        delay = 0.0 if now else self.strategy.next_interval(task, None, 0, self._elapsed(task))
        self._watch(task, delay)

    def add_reloaded(self, tasks: Sequence[Task]) -> None:
        """Start watching the tasks found submitted at start, each polled soon.

        Their first polls are spread at `reload_rate` per second: thousands polled at once
        would hold up the event loop (commands waiting for their answer meanwhile), then
        come back together, as one wave, at every interval after.
        """
        for index, task in enumerate(tasks):
            self._watch(task, index / self.reload_rate)

    def _watch(self, task: Task, delay: float) -> None:
        # The stored wait is what the task's status shows: a poll finding the same one
        # after a restart has nothing to store or show.
        entry = _Pending(task, polls=task.poll_count, wait_time=task.wait_time)
        self._pending[task.id] = entry
        self._by_guild[task.guild_id].add(task.id)
        self._schedule(entry, delay)

    def every(self, name: str, interval: float, run: Callable[[], Awaitable[None]]) -> None:
        """Run `run` now, then `interval` seconds after each run ends (or when woken)."""
        self._rounds[name] = _Round(run, interval)
        self._timers.schedule(name, self._clock())
        self._wake.set()

    def wake(self, name: str) -> None:
        """Run the round `name` now, or again right after its current run."""
        entry = self._rounds.get(name)
        if entry is None:
            return
        if entry.task is not None:
            entry.woken = True
        else:
            self._timers.schedule(name, self._clock())
            self._wake.set()

    async def cancel(self, name: str) -> None:
        """Stop the round `name`, cancelling its current run."""
        entry = self._rounds.pop(name, None)
        self._timers.discard(name)
        if entry is not None and entry.task is not None:
            entry.task.cancel()
            await asyncio.gather(entry.task, return_exceptions=True)

    async def run(self) -> None:
        """Poll due tasks and run due rounds until cancelled."""
        self._stopping = False
        while True:
            self._wake.clear()
            due = self._timers.pop_due(self._clock() + self.coalesce)
            task_ids = [key for key in due if isinstance(key, int) and not self._postponed(key)]
            for name in (key for key in due if isinstance(key, str)):
                self._start_round(name)
            if task_ids or self._due:
                self._launch(task_ids)
            if self._launchable():
                await asyncio.sleep(0)  # the next burst after what waits meanwhile
                continue
            next_due = self._timers.next_due()
            delay = None if next_due is None else max(0.0, next_due - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    def _postponed(self, task_id: int) -> bool:
        """Whether the strategy, asked as the task's poll falls due, put it off (what it
        learned since scheduling it says the task cannot be done yet): no call is made.
        Not on the batch beat, where a call costs per account, not per task."""
        entry = self._pending.get(task_id)
        recheck: RecheckHook | None = getattr(self.strategy, "recheck", None)  # optional
        if recheck is None or entry is None or entry.errors or self._on_batch_beat():
            return False
        later = recheck(entry.task, self._elapsed(entry.task))
        if later is None or later <= self.coalesce:
            return False
        self._schedule(entry, later)
        return True

    def _start_round(self, name: str) -> None:
        entry = self._rounds.get(name)
        if entry is None or entry.task is not None or self._stopping:
            return
        entry.task = asyncio.create_task(self._run_round(name, entry), name=f"poll-{name}")

    async def _run_round(self, name: str, entry: _Round) -> None:
        try:
            await entry.run()
        except Exception:
            log.exception("poll round %s failed", name)
        finally:
            entry.task = None
            if self._rounds.get(name) is entry:
                delay = 0.0 if entry.woken else entry.interval
                entry.woken = False
                self._timers.schedule(name, self._clock() + delay)
                self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop launching polls; wait up to `grace` seconds for running ones, then cancel."""
        self._stopping = True
        await finish_or_cancel(self._groups, grace)

    def _elapsed(self, task: Task) -> float:
        return max(0.0, self._wall() - (task.submitted_at or self._wall()))

    def _on_batch_beat(self) -> bool:
        # One call polls every task of the account: keep them all on one short beat.
        return self._batch_session is not None and self._batch_session.batch_supported is True

    def _schedule(self, entry: _Pending, delay: float) -> None:
        if self._on_batch_beat():
            delay = min(delay, self.batch_interval)
        remaining = self.task_timeout - self._elapsed(entry.task)
        self._timers.schedule(entry.task.id, self._clock() + max(0.0, min(delay, remaining)))
        self._wake.set()

    def _launch(self, task_ids: list[int]) -> None:
        for task_id in task_ids:
            if (entry := self._pending.get(task_id)) is not None:
                self._due[entry.task.guild_id].append(entry)
        # One poll group per guild at a time: tasks falling due meanwhile join the next one.
        idle = [g for g in self._due if g not in self._polling]
        for guild_id in idle[: self.launch_burst]:
            entries = self._due.pop(guild_id)
            self._polling.add(guild_id)
            group = asyncio.create_task(self._poll_guild(guild_id, entries))
            self._groups.add(group)
            group.add_done_callback(self._groups.discard)
            group.add_done_callback(functools.partial(self._group_done, guild_id))

    def _launchable(self) -> bool:
        """Whether some guild's due tasks could start a group now (a burst was cut short)."""
        return not self._stopping and any(g not in self._polling for g in self._due)

    def _group_done(self, guild_id: int, _group: asyncio.Task[None]) -> None:
        self._polling.discard(guild_id)
        if guild_id in self._due:
            self._wake.set()

    async def _poll_guild(self, guild_id: int, entries: list[_Pending]) -> None:
        live = []
        for entry in entries:
            if self._elapsed(entry.task) >= self.task_timeout:
                detail = f"no result after {self.task_timeout:g}s"
                await self._settle(entry, _Verdict(FailReason.TIMEOUT, detail))
            else:
                live.append(entry)
        # Each task is polled on the account it was submitted with, which may no longer be
        # the guild's current one.
        by_account: defaultdict[int | None, list[_Pending]] = defaultdict(list)
        for entry in live:
            by_account[entry.task.account_id].append(entry)
        for account_id, group in by_account.items():
            if self._stopping:
                return
            await self._poll_account(guild_id, account_id, group)

    async def _poll_account(
        self, guild_id: int, account_id: int | None, live: list[_Pending]
    ) -> None:
        try:
            acct = await self._accounts.session_for_account(guild_id, account_id)
        except NoAccount:
            for entry in live:
                await self._settle(entry, _Verdict(FailReason.NO_ACCOUNT, ""))
            return
        except AccountUnreadable:
            verdict = _Verdict(FailReason.ACCOUNT_INVALID, "stored credentials unreadable")
            for entry in live:
                await self._settle(entry, verdict)
            return
        except StoreUnavailable as exc:
            log.warning("guild %s: account not readable for polling now (%s)", guild_id, exc)
            for entry in live:
                self._retry_later(entry)
            return
        except Exception:
            log.exception("could not get account %s of guild %s for polling", account_id, guild_id)
            for entry in live:
                self._retry_later(entry)
            return
        if self.use_batch and acct.batch_supported is not False:
            live += self._ride_along(guild_id, account_id, live)
            for start in range(0, len(live), BATCH_LIMIT):
                await self._poll_batch(acct, live[start : start + BATCH_LIMIT])
        else:
            for entry in live:
                if self._stopping:
                    return
                try:
                    outcome: Outcome = await acct.task_result(entry.task.service_task_id or "")
                except V1bError as exc:
                    outcome = exc
                await self._settle(entry, outcome)

    def _ride_along(
        self, guild_id: int, account_id: int | None, polled: list[_Pending]
    ) -> list[_Pending]:
        """The account's other pending tasks: in a batch call they cost nothing extra."""
        waiting = [e for e in self._due.pop(guild_id, []) if e.task.account_id != account_id]
        if waiting:
            self._due[guild_id] = waiting  # other accounts' tasks wait for the next group
        taken = {entry.task.id for entry in polled}
        extra = []
        for task_id in self._by_guild.get(guild_id, ()):
            entry = self._pending.get(task_id)
            if entry is not None and task_id not in taken and entry.task.account_id == account_id:
                self._timers.discard(task_id)
                extra.append(entry)
        return extra

    async def _poll_batch(self, acct: AccountSession, chunk: list[_Pending]) -> None:
        ids = [entry.task.service_task_id or "" for entry in chunk]
        try:
            results = await acct.task_results(ids)
            self._batch_session = acct
        except V1bError as exc:
            for entry in chunk:
                await self._settle(entry, exc)
            return
        for entry, service_id in zip(chunk, ids, strict=True):
            outcome = results.get(service_id)
            if outcome is None:
                outcome = V1bError("task_results", "task missing from the batch answer")
            await self._settle(entry, outcome)

    async def _settle(self, entry: _Pending, outcome: Outcome | _Verdict) -> None:
        try:
            await self._handle(entry, outcome)
        except StoreUnavailable as exc:
            log.warning("task %s: poll not recorded (%s), polling again", entry.task.id, exc)
            self._retry_later(entry)
        except Exception:
            log.exception("handling the poll of task %s failed", entry.task.id)
            self._retry_later(entry)

    async def _handle(self, entry: _Pending, outcome: Outcome | _Verdict) -> None:
        task = entry.task
        if isinstance(outcome, _Verdict):
            await self._fail(entry, outcome.reason, outcome.detail)
        elif isinstance(outcome, TaskFailed):
            await self._fail(entry, FailReason.GENERATION_FAILED, outcome.message)
        elif isinstance(outcome, AuthError):
            await self._fail(entry, FailReason.ACCOUNT_INVALID, outcome.message)
        elif isinstance(outcome, InvalidRequest):
            await self._fail(entry, FailReason.INVALID_REQUEST, outcome.message)
        elif isinstance(outcome, ResponseTooLarge):
            await self._fail(entry, FailReason.RESPONSE_TOO_LARGE, outcome.message)
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
            next_poll_at = self._wall() + delay
            try:
                updated = await self._store.tasks.record_progress(task.id, wait_time, next_poll_at)
            except StoreUnavailable as exc:
                log.debug("task %s: progress not recorded (%s)", task.id, exc)
                return  # recorded at a later poll; the outcome is what must be stored
            entry.wait_time = wait_time
            if updated is not None:
                entry.task = updated
                await self._on_progress(updated, wait_time)

    async def _done(self, entry: _Pending, result: TaskResult) -> None:
        task = entry.task
        images = [image.model_dump() for image in requested_images(task, result)]
        done = await until_stored(
            lambda: self._store.tasks.mark_done(task.id, images, result.select_seed),
            what=f"the result of task {task.id}",
        )
        self.strategy.completed(task, self._elapsed(task))
        self._forget(task.id)
        if done is None:
            log.warning("task %s was no longer submitted when found done", task.id)
            self._on_gone(task)
            return
        await self._on_done(done)

    async def _fail(self, entry: _Pending, reason: FailReason, detail: str) -> None:
        # The callback stores the failure (retrying while the store refuses) and frees the slot.
        await self._on_failed(entry.task, reason, detail)
        self._forget(entry.task.id)

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
