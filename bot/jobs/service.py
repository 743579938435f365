"""The generation service: admission, fair dispatch, polling and exactly-once delivery."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from bot.background import Background, cancel_and_wait, finish_or_cancel
from bot.images import CheckedImage
from bot.jobs import admission
from bot.jobs.errors import AccountUnreadable, NoAccount, Refused
from bot.jobs.locks import KeyedLocks
from bot.jobs.models import FailReason, GenerationRequest, Limits, Posted
from bot.jobs.poller import Poller
from bot.jobs.polling import PollStrategy
from bot.jobs.protocols import AccountResolver, BoundAccount, JobEvents
from bot.jobs.queue import GuildQueue
from bot.jobs.timers import TimerHeap
from bot.store import Store, StoreUnavailable, Task, TaskState, until_stored
from bot.v1b import (
    AccountBusy,
    AuthError,
    ConnectionFailed,
    InvalidRequest,
    NotEnoughPoints,
    ResponseTooLarge,
    TaskParams,
    V1bError,
)

log = logging.getLogger(__name__)


def task_params(task: Task) -> TaskParams:
    """Build the v1b submission of a persisted task."""
    return TaskParams(
        model_name=task.model,
        prompt=task.prompt,
        neg_prompt=task.negative_prompt,
        n_images=task.count,
        scale=task.scale,
        select_seed=task.seed,
        output_size=task.size,
        init_img=task.init_image_url or "",
    )


class GenerationService:
    """Runs generation tasks from request to delivered result, surviving restarts."""

    def __init__(
        self,
        store: Store,
        accounts: AccountResolver,
        events: JobEvents,
        *,
        account_concurrency: int = 2,
        running_limit: Callable[[int], Awaitable[int | None]] | None = None,
        strategy: PollStrategy,
        task_timeout: float = 600.0,
        use_batch: bool = True,
        batch_interval: float = 0.5,
        busy_backoff: float = 5.0,
        delivery_retry: float = 30.0,
        delivery_attempts: int = 5,
        poll_error_backoff: float = 1.0,
        stop_grace: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._events = events
        self.account_concurrency = max(1, account_concurrency)
        # A guild's limit on one member's tasks at the service (None: none), read at start for
        # the tasks reloaded; enqueue and `set_user_running` keep it current after that.
        self._running_limit = running_limit
        self.busy_backoff = busy_backoff
        self.delivery_retry = delivery_retry
        self.delivery_attempts = max(1, delivery_attempts)
        self.stop_grace = stop_grace
        self._clock = clock
        self._wall = wall_clock
        self.poller = Poller(
            store,
            accounts,
            strategy,
            on_done=self._on_done,
            on_failed=self._fail,
            on_progress=self._on_poll_progress,
            on_gone=lambda task: self._release(task.guild_id, task.id),
            use_batch=use_batch,
            batch_interval=batch_interval,
            task_timeout=task_timeout,
            error_backoff=poll_error_backoff,
            clock=clock,
            wall_clock=wall_clock,
        )
        self._queues: dict[int, GuildQueue] = defaultdict(GuildQueue)
        self._positions: dict[int, int] = {}
        # guild -> {task id: member} of the tasks being submitted or at the service
        self._running: dict[int, dict[int, int]] = defaultdict(dict)
        # guild -> a member's running limit (None: none), kept while the guild has work
        self._user_running: dict[int, int | None] = {}
        self._paused_until: dict[int, float] = {}
        self._admission_locks: KeyedLocks[tuple[int, int]] = KeyedLocks()  # (guild, member)
        self._dispatch_wake = asyncio.Event()
        # Guilds whose queue or running tasks changed since the dispatcher last looked: it
        # looks at these (and paused ones) only, never at every guild with a queue.
        self._to_dispatch: set[int] = set()
        self._retries: TimerHeap[int] = TimerHeap()
        self._retry_wake = asyncio.Event()
        self._delivery_failures: dict[int, int] = defaultdict(int)
        self._delivering: set[int] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._workers = Background(log, "job worker")
        self._stopping = False

    async def start(self) -> None:
        """Reload unfinished tasks from the store and start the loops."""
        # The store is the truth: tasks enqueued before start() are reloaded with the rest.
        self._queues.clear()
        self._positions.clear()
        self._running.clear()
        self._user_running.clear()
        submitted = await self._store.tasks.list_by_state(TaskState.SUBMITTED)
        for task in submitted:
            self._running[task.guild_id][task.id] = task.user_id
        self.poller.add_reloaded(submitted)
        for task in await self._store.tasks.list_by_state(TaskState.QUEUED):
            self._queues[task.guild_id].push(task)
        if self._running_limit is not None:
            for guild_id in {*self._queues, *self._running}:
                self._user_running[guild_id] = await self._running_limit(guild_id)
        for queue in self._queues.values():
            self._positions.update(queue.positions())
        self._to_dispatch = set(self._queues)
        for task in await self._store.tasks.list_by_state(TaskState.DONE):
            self._retries.schedule(task.id, self._clock())
        self._stopping = False
        self._loops = [
            asyncio.create_task(self._dispatch_loop(), name="jobs-dispatch"),
            asyncio.create_task(self.poller.run(), name="jobs-poll"),
            asyncio.create_task(self._retry_loop(), name="jobs-deliver"),
        ]
        log.info(
            "generation service started: %d queued, %d submitted, %d to deliver",
            sum(len(queue) for queue in self._queues.values()),
            len(self.poller),
            len(self._retries),
        )

    async def stop(self) -> None:
        """Stop taking work, let running submissions and deliveries finish, stop the loops."""
        self._stopping = True
        await cancel_and_wait(self._loops)
        self._loops = []
        await self.poller.stop(self.stop_grace)
        await finish_or_cancel(self._workers, self.stop_grace)
        if summary := getattr(self.poller.strategy, "summary", None):
            log.info("polling learned: %s", summary())
        log.info("generation service stopped")

    async def enqueue_with_image(
        self, request: GenerationRequest, image: CheckedImage, *, limits: Limits
    ) -> Task:
        """Upload an init image to the guild's account, then enqueue the request as img2img.

        Cheap refusals come first, so nothing is uploaded for a request that cannot run.
        """
        self.check(request, limits)
        session = await self._accounts.session_for(request.guild_id)
        (url,) = await session.upload_images([(image.filename, image.data, image.content_type)])
        i2i = dataclasses.replace(request, kind="i2i", init_image_url=url)
        return await self.enqueue(i2i, limits=limits)

    async def enqueue(self, request: GenerationRequest, *, limits: Limits) -> Task:
        """Admit a request, persist it as queued and wake the dispatcher; return the task."""
        self.check(request, limits)
        await self._accounts.session_for(request.guild_id)
        async with self._admission_locks.hold((request.guild_id, request.user_id)):
            try:
                day = await admission.admit(self._store, request, limits, wall_clock=self._wall)
            except Refused as refusal:
                self._refused(request, refusal)
                raise
            try:
                task = await self._store.tasks.create(**request.task_fields())
            except BaseException:
                self._spawn(
                    until_stored(
                        lambda: admission.refund_quota(self._store, request, day),
                        what=f"the quota refund of user {request.user_id}",
                    )
                )
                raise
        self._user_running[task.guild_id] = limits.user_running
        queue = self._queues[task.guild_id]
        queue.push(task)
        # Taken now if it can be, so its position (and `queue_position` once this returns)
        # says whether it waits: a task passing members at their limit never "waits at 2".
        self._dispatch_now(task.guild_id)
        waiting = self._queues.get(task.guild_id)
        position = waiting.positions().get(task.id) if waiting is not None else None
        if position is not None:
            self._positions[task.id] = position
        await self._emit("task_accepted", task, position)
        self._spawn(self._report_positions(task.guild_id))  # a new user's turn moves others
        self._wake_dispatch(task.guild_id)
        return task

    def check(self, request: GenerationRequest, limits: Limits) -> None:
        """Run the admission checks that need no storage; a refusal is reported, then raised."""
        try:
            admission.check_request(request, limits)
        except Refused as refusal:
            self._refused(request, refusal)
            raise

    def set_user_running(self, guild_id: int, limit: int | None) -> None:
        """Apply a guild's new limit on a member's tasks at the service to its waiting work."""
        if guild_id in self._user_running:
            self._user_running[guild_id] = limit
            self._wake_dispatch(guild_id)

    def queue_position(self, task_id: int, guild_id: int | None = None) -> int | None:
        """Return the 1-based position of a queued task in its guild's queue, or None.

        Given the task's guild, only that guild's queue is read; without it, every guild's
        (a cost that grows with all the waiting tasks: commands pass the guild).
        """
        for queue in self._queues_of(guild_id):
            if (position := queue.positions().get(task_id)) is not None:
                return position
        return None

    def _queues_of(self, guild_id: int | None) -> list[GuildQueue]:
        if guild_id is None:
            return list(self._queues.values())
        queue = self._queues.get(guild_id)
        return [queue] if queue is not None else []

    def memory_sizes(self) -> dict[str, int]:
        """How many entries each per-guild, per-member and per-task structure holds.

        Every one of them shrinks back when its guild, member or task goes idle; the
        housekeeping log line reports them so growth would show.
        """
        return {
            "queues": len(self._queues),
            "positions": len(self._positions),
            "running_guilds": len(self._running),
            "running_limits": len(self._user_running),
            "paused_guilds": len(self._paused_until),
            "admission_locks": len(self._admission_locks),
            "delivery_retries": len(self._retries),
            "delivery_failures": len(self._delivery_failures),
            "delivering": len(self._delivering),
            "workers": len(self._workers),
            **self.poller.memory_sizes(),
        }

    def in_flight(self) -> dict[str, int]:
        """Unfinished tasks held in memory, all guilds together: waiting to be submitted,
        being submitted or at the service, finished and being (or waiting to be) posted."""
        return {
            "queued": sum(len(queue) for queue in self._queues.values()),
            "running": sum(len(running) for running in self._running.values()),
            "delivering": len(self._delivering) + len(self._retries),
        }

    def queue_depth(self, guild_id: int) -> int:
        """Return how many tasks of the guild wait to be submitted."""
        queue = self._queues.get(guild_id)
        return len(queue) if queue is not None else 0

    async def cancel(self, task_id: int, guild_id: int | None = None) -> bool:
        """Cancel a task that is still queued; True when it was. Given the task's guild,
        only that guild's queue is searched."""
        for queue in self._queues_of(guild_id):
            if (task := queue.remove(task_id)) is not None:
                guild_id = task.guild_id
                # Out of the queue first, so the dispatcher cannot submit it meanwhile.
                try:
                    cancelled = await self._store.tasks.mark_cancelled(task_id)
                except StoreUnavailable:
                    self._queues[guild_id].push_front(task)  # still queued, as the store says
                    self._wake_dispatch(guild_id)
                    raise
                self._positions.pop(task_id, None)
                self._spawn(self._report_positions(guild_id))
                if cancelled is None:
                    return False
                self._spawn(self._refund(cancelled))
                await self._emit("task_cancelled", cancelled)
                return True
        return False

    async def redeliver(self, task_id: int, *, replacing: int | None = None) -> bool:
        """Post a finished task's result again (a 'done' one is then marked delivered).

        A delivered task is posted again only while it still points at `replacing` (the
        message found gone), so callers racing each other post it once; it then points at
        the new message. False when the result could not be posted, or a moderator removed it.
        """
        task = await self._store.tasks.get(task_id)
        if task is None or task.state not in (TaskState.DONE, TaskState.DELIVERED):
            return False
        if task.removed_by is not None:
            return False  # a moderator deleted it
        if task_id in self._delivering:
            return True  # being posted right now
        if task.state == TaskState.DONE:
            await self._deliver(task_id)
            after = await self._store.tasks.get(task_id)
            return after is not None and after.state == TaskState.DELIVERED
        if task.result_message_id != replacing:
            return True  # already posted again
        self._delivering.add(task_id)
        try:
            posted = await self._events.task_done(task)
            if posted is not None:
                await self._store.tasks.set_result_message(task_id, posted.message_id, posted.place)
        except Exception:
            log.exception("re-posting the result of task %s failed", task_id)
            return False
        finally:
            self._delivering.discard(task_id)
        return posted is not None

    # Dispatch

    async def _dispatch_loop(self) -> None:
        while True:
            self._dispatch_wake.clear()
            resume = None
            changed, self._to_dispatch = self._to_dispatch, set()
            for guild_id in changed | self._paused_until.keys():
                if guild_id not in self._queues:
                    continue
                paused = self._paused_until.get(guild_id, 0.0) - self._clock()
                if paused > 0:
                    resume = paused if resume is None else min(resume, paused)
                    continue
                self._paused_until.pop(guild_id, None)
                self._dispatch_guild(guild_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(resume):
                    await self._dispatch_wake.wait()

    def _wake_dispatch(self, guild_id: int) -> None:
        """Have the dispatcher look at this guild again (its queue or slots changed)."""
        self._to_dispatch.add(guild_id)
        self._dispatch_wake.set()

    def _dispatch_now(self, guild_id: int) -> None:
        """Dispatch a guild at once, unless the loop would not (not started, paused)."""
        if self._loops and self._paused_until.get(guild_id, 0.0) <= self._clock():
            self._dispatch_guild(guild_id)

    def _dispatch_guild(self, guild_id: int) -> None:
        queue = self._queues[guild_id]
        running = self._running[guild_id]
        limit = self._user_running.get(guild_id)
        per_member = Counter(running.values())
        taken = False
        while queue and len(running) < self.account_concurrency and not self._stopping:
            # Members at their running limit are passed over, not waited for.
            task = queue.pop(lambda user_id: limit is None or per_member[user_id] < limit)
            if task is None:
                break
            running[task.id] = task.user_id
            per_member[task.user_id] += 1
            self._positions.pop(task.id, None)
            self._spawn(self._submit(task))
            taken = True
        if not queue:
            del self._queues[guild_id]
        if not running:
            del self._running[guild_id]
        self._forget_if_idle(guild_id)
        if taken:
            self._spawn(self._report_positions(guild_id))

    async def _submit(self, task: Task) -> None:
        bound: BoundAccount | None = None  # held until the task records it (or fails)
        try:
            bound = await self._accounts.acquire(task.guild_id)
            service_id = await bound.session.submit_task(task_params(task))
        except (AccountBusy, ConnectionFailed, StoreUnavailable) as exc:
            await self._back_off(task, exc)
        except NoAccount:
            await self._fail(task, FailReason.NO_ACCOUNT, "")
        except AccountUnreadable:
            await self._fail(task, FailReason.ACCOUNT_INVALID, "stored credentials unreadable")
        except NotEnoughPoints as exc:
            await self._fail(task, FailReason.NOT_ENOUGH_POINTS, exc.message)
        except AuthError as exc:
            await self._fail(task, FailReason.ACCOUNT_INVALID, exc.message)
        except InvalidRequest as exc:
            await self._fail(task, FailReason.INVALID_REQUEST, exc.message)
        except ResponseTooLarge as exc:
            await self._fail(task, FailReason.RESPONSE_TOO_LARGE, exc.message)
        except V1bError as exc:
            # The request may have reached the service: submitting again could charge twice.
            await self._fail(task, FailReason.SERVICE_ERROR, exc.message)
        except Exception:
            log.exception("submitting task %s failed", task.id)
            await self._fail(task, FailReason.SERVICE_ERROR, "internal error")
        else:
            # The service runs it now: its id must be stored, or the result is lost.
            account_id = bound.account_id
            submitted = await until_stored(
                lambda: self._store.tasks.mark_submitted(task.id, service_id, account_id),
                what=f"the submission of task {task.id}",
            )
            if submitted is None:
                log.warning("task %s left 'queued' while it was being submitted", task.id)
                self._release(task.guild_id, task.id)
                return
            log.debug("task %s submitted as %s", task.id, service_id)
            self.poller.add(submitted)
            await self._emit("task_progress", submitted, None, None)
        finally:
            if bound is not None:
                await self._accounts.release(bound)

    async def _back_off(self, task: Task, exc: V1bError | StoreUnavailable) -> None:
        """Put a task back at the head of its user's line and pause the guild's submissions."""
        log.info("guild %s: %s; retrying in %gs", task.guild_id, exc, self.busy_backoff)
        requeued = None
        if not isinstance(exc, StoreUnavailable):
            try:
                requeued = await self._store.tasks.requeue(task.id)
            except StoreUnavailable as store_exc:
                # It is still 'queued' in the store; only the attempt count is not recorded.
                log.warning("task %s: attempt not recorded (%s)", task.id, store_exc)
        # Back in the queue before the slot is freed, so the guild never looks idle here.
        self._queues[task.guild_id].push_front(requeued or task)
        self._release(task.guild_id, task.id)
        self._paused_until[task.guild_id] = self._clock() + self.busy_backoff
        self._spawn(self._report_positions(task.guild_id))
        self._wake_dispatch(task.guild_id)

    def _release(self, guild_id: int, task_id: int) -> None:
        running = self._running.get(guild_id)
        if running is not None:
            running.pop(task_id, None)
            if not running:  # an idle guild keeps no entry
                del self._running[guild_id]
                self._forget_if_idle(guild_id)
        self._wake_dispatch(guild_id)

    def _forget_if_idle(self, guild_id: int) -> None:
        if guild_id not in self._queues and guild_id not in self._running:
            self._user_running.pop(guild_id, None)

    async def _report_positions(self, guild_id: int) -> None:
        queue = self._queues.get(guild_id)
        order = queue.order() if queue is not None else []
        # The queued tasks as the queue holds them: nothing shown of a task changes while it
        # waits, so a long line moving up costs no statement per task.
        changed = [
            (task, position)
            for position, task in enumerate(order, start=1)
            if self._positions.get(task.id) != position
        ]
        self._positions.update((task.id, position) for task, position in changed)
        for task, position in changed:
            # Dispatched, cancelled or moved again while an earlier one was reported: what
            # happened to it since is reported by whoever changed it.
            if self._positions.get(task.id) == position:
                await self._emit("task_progress", task, position, None)

    # Poll outcomes

    async def _on_poll_progress(self, task: Task, wait_time: int | None) -> None:
        await self._emit("task_progress", task, None, wait_time)

    async def _on_done(self, task: Task) -> None:
        self._release(task.guild_id, task.id)
        self._spawn(self._deliver(task.id))
        await self._accounts.finished_with(task.account_id)

    async def _fail(self, task: Task, reason: FailReason, detail: str) -> None:
        """Store the failure (retrying while the store refuses), free the slot, tell the user."""
        try:
            failed = await until_stored(
                lambda: self._store.tasks.mark_failed(task.id, reason.value, detail),
                what=f"the failure of task {task.id}",
            )
        finally:
            self._release(task.guild_id, task.id)
        if failed is None:
            log.warning("task %s could not be marked failed (%s)", task.id, reason)
            return
        log.info("task %s failed: %s %s", task.id, reason, detail)
        await self._accounts.finished_with(failed.account_id)
        await self._refund(failed)
        await self._emit("task_failed", failed)

    async def _refund(self, task: Task) -> None:
        """Give a task's images back to its requester's daily quota: they got none."""
        day = admission.utc_day(task.created_at)
        await until_stored(
            lambda: self._store.usage.refund(task.guild_id, task.user_id, day, max(1, task.count)),
            what=f"the quota refund of task {task.id}",
        )

    # Delivery

    async def _deliver(self, task_id: int) -> None:
        if task_id in self._delivering:
            return
        self._delivering.add(task_id)
        try:
            await self._deliver_once(task_id)
        finally:
            self._delivering.discard(task_id)

    async def _deliver_once(self, task_id: int) -> None:
        task = await until_stored(
            lambda: self._store.tasks.get(task_id), what=f"the reading of task {task_id}"
        )
        if task is None or task.state != TaskState.DONE:
            self._delivery_failures.pop(task_id, None)
            return
        result: Posted | None = None
        try:
            result = await self._events.task_done(task)
        except Exception:
            log.exception("delivering task %s failed", task_id)
        if result is None:
            await self._delivery_failed(task)
            return
        self._delivery_failures.pop(task_id, None)
        posted: Posted = result
        # Posted: unless this is stored, a restart would post the result a second time.
        # Its place too: links to the result must point where it is, not where it was asked.
        delivered = await until_stored(
            lambda: self._store.tasks.mark_delivered(task_id, posted.message_id, posted.place),
            what=f"the delivery of task {task_id}",
        )
        if not delivered:
            log.warning("task %s was no longer 'done' after delivery", task_id)
            return
        log.info(
            "task %s delivered in guild %s, %.1f s after acceptance",
            task_id,
            task.guild_id,
            self._wall() - task.created_at,
        )

    async def _delivery_failed(self, task: Task) -> None:
        self._delivery_failures[task.id] += 1
        attempts = self._delivery_failures[task.id]
        if attempts >= self.delivery_attempts:
            del self._delivery_failures[task.id]
            await self._fail(task, FailReason.DELIVERY_FAILED, f"{attempts} attempts")
            return
        log.warning("task %s not delivered (attempt %d), retrying later", task.id, attempts)
        self._retries.schedule(task.id, self._clock() + self.delivery_retry)
        self._retry_wake.set()

    async def _retry_loop(self) -> None:
        while True:
            self._retry_wake.clear()
            for task_id in self._retries.pop_due(self._clock()):
                self._spawn(self._deliver(task_id))
            next_due = self._retries.next_due()
            delay = None if next_due is None else max(0.0, next_due - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._retry_wake.wait()

    # Plumbing

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self._workers.spawn(coro)

    def _refused(self, request: GenerationRequest, refusal: Refused) -> None:
        """Tell the events about a refusal; their failure never changes the member's answer."""
        try:
            self._events.request_refused(request, refusal)
        except Exception:
            log.exception("reporting the refusal of a request of user %s failed", request.user_id)

    async def _emit(self, name: str, *args: Any) -> None:
        """Call a progress callback; its failures are logged and never propagate."""
        try:
            await getattr(self._events, name)(*args)
        except Exception:
            log.exception("event %s failed for task %s", name, args[0].id)
