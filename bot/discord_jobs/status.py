"""One status message per task, edited only on change and at most once per interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import aiohttp
import discord
from discord.http import handle_message_parameters

from bot.background import finish_or_cancel
from bot.discord_jobs.host import DiscordHost
from bot.discord_jobs.throttle import ThrottledMessage
from bot.discord_pacing import Priority, paced_as, turn_first
from bot.replies import NO_MENTIONS
from bot.store import StoreUnavailable, Task

log = logging.getLogger(__name__)

FINISHED_MEMORY = 10_000
# How long a stop waits for each kind of the bot's last sends to Discord (status posts and
# edits, log entries, 🔁 reactions). Discord's limits may hold them far longer (one edit per
# channel per window), and a stop must end within the service manager's timeout (30 s in
# deploy/miaohua-bot.service), the other services' stops included.
CLOSE_GRACE = 5.0
# A count in a status (place in line, tasks ahead at the service) is updated at most this
# often: it ticks down many times while a task waits, each tick an edit under Discord's limit
# of five per channel per 5 s shared by every task there; a change of state is not held.
COUNT_INTERVAL = 10.0


@dataclass(slots=True)
class _Entry:
    """Where a task's status message is, and the throttled text it shows."""

    channel_id: int
    message_id: int | None
    message: ThrottledMessage
    final: bool = False
    urgent: bool = False  # its edits go before other status edits (a failure's text)
    # What the newest text counts ("queued", "waiting"), None for a text without a count.
    counting: str | None = None
    # Set while the task's command is being answered with its status: nothing is posted
    # for the task until that answer is sent (or could not be, and the post is due); then
    # `on_answer` runs (see `StatusBoard.accepted`).
    answer: asyncio.Future[None] | None = None
    on_answer: Callable[[], None] | None = None


class StatusBoard:
    """Posts and edits task status messages with the bot token, coalescing rapid changes.

    A change within `interval` seconds of the last edit is not sent at once: the newest text
    is kept and sent by one delayed edit, so a busy task costs at most one edit per interval;
    a change of a count alone (its place in line moving up) waits for `count_interval`.
    """

    def __init__(
        self,
        bot: DiscordHost,
        *,
        interval: float = 2.0,
        count_interval: float = COUNT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self.interval = interval
        self.count_interval = count_interval
        self._clock = clock
        self._entries: dict[int, _Entry] = {}
        # Tasks whose final text was requested: late progress events must not overwrite it.
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._pending: set[asyncio.Task[None]] = set()  # `show_soon` calls not done yet
        # Interactions whose public answer will be the status message of the task they create.
        self._answering: set[int] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._entries) + len(self._pending)

    def message_id(self, task_id: int) -> int | None:
        """The status message of a task this board is tracking."""
        entry = self._entries.get(task_id)
        return entry.message_id if entry else None

    async def show(
        self,
        task: Task,
        text: str,
        *,
        final: bool = False,
        urgent: bool = False,
        counting: str | None = None,
    ) -> None:
        """Make the task's status message say `text` (posting it if there is none yet);
        `urgent`: ahead of other tasks' status edits when requests wait for Discord;
        `counting`: what the text counts, whose mere change waits for `count_interval`."""
        if self._closed or (task.id in self._finished and not final):
            return  # closed: its requests could only meet a closed session
        if final:
            self._finished[task.id] = None
            while len(self._finished) > FINISHED_MEMORY:
                self._finished.popitem(last=False)
        entry = self._entries.get(task.id)
        if entry is None:
            entry = self._entry(task)
            self._entries[task.id] = entry
        entry.message.want(text)
        entry.final = final
        entry.urgent = urgent
        recount = counting is not None and counting == entry.counting
        entry.counting = counting
        async with entry.message.lock:
            if entry.answer is not None:
                await asyncio.shield(entry.answer)  # the answer may turn out to be the message
            posting = entry.message_id is None
            if posting:
                await self._post(task.id, entry, text)
        if not posting:
            await entry.message.update(interval=self.count_interval if recount else None)
        self._forget_if_settled(task.id, entry)

    @contextlib.contextmanager
    def answering(self, interaction_id: int) -> Iterator[None]:
        """Within it, a task accepted for this interaction gets no status message of its own:
        its command's public answer will be it, once `answered` says it was sent.

        A task's first status then costs no request beyond the answer Discord waits for
        anyway, and stays attached to the command that asked for it."""
        self._answering.add(interaction_id)
        try:
            yield
        finally:
            self._answering.discard(interaction_id)

    def accepted(
        self,
        task: Task,
        text: str,
        *,
        then: Callable[[], None],
        counting: str | None = None,
    ) -> None:
        """Show a newly accepted task's first status: held for its command's answer when
        that answer will carry it (see `answering`), else posted in the background. `then`
        runs once the status message is known (or is known to be missing)."""
        if task.interaction_id not in self._answering:
            self.show_soon(task, text, then=then, counting=counting)
            return
        self._answering.discard(task.interaction_id)
        entry = self._entry(task)
        entry.message.want(text)
        entry.counting = counting
        entry.answer = asyncio.get_running_loop().create_future()
        entry.on_answer = then
        self._entries[task.id] = entry

    def answered(self, task: Task, message_id: int | None, text: str) -> None:
        """The command's answer went out as message `message_id` showing `text`: it is the
        task's status message from now on (its id is stored in the background). None: the
        answer could not carry the status (deferred meanwhile, or refused), so the status
        message is posted as for any task."""
        entry = self._entries.get(task.id)
        if entry is None or entry.answer is None:
            return
        answer, entry.answer = entry.answer, None
        then, entry.on_answer = entry.on_answer, None
        if message_id is not None:
            entry.message_id = message_id
            entry.message.sent(text)
        answer.set_result(None)
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            return  # stopping: after a restart, the task's next status is posted
        if message_id is None:
            self.show_soon(task, text, then=then, counting=entry.counting)
        else:
            self._track(self._adopted(task.id, message_id, then), f"status-{task.id}")

    async def _adopted(
        self, task_id: int, message_id: int, then: Callable[[], None] | None
    ) -> None:
        await self._remember(task_id, message_id)
        if then is not None:
            then()

    def show_soon(
        self,
        task: Task,
        text: str,
        *,
        final: bool = False,
        then: Callable[[], None] | None = None,
        counting: str | None = None,
    ) -> None:
        """`show` without waiting for it: the job layer reports progress from its dispatcher
        and poll rounds, and stores a delivery once posted, none of which may stall while
        Discord's rate limits (5 posts and 5 edits per 5 s per channel) hold a status post
        or edit back for seconds. `then` runs once it is shown (or failed to be)."""
        if final:
            self._finished[task.id] = None  # from now on, progress must not overwrite it
        shown = self._show_logged(task, text, final, then, counting)
        self._track(shown, f"status-{task.id}")

    def _track(self, work: Coroutine[object, object, None], name: str) -> None:
        job = asyncio.create_task(work, name=name)
        self._pending.add(job)
        job.add_done_callback(self._pending.discard)

    async def _show_logged(
        self,
        task: Task,
        text: str,
        final: bool,
        then: Callable[[], None] | None,
        counting: str | None,
    ) -> None:
        try:
            await self.show(task, text, final=final, counting=counting)
        except Exception:
            log.exception("task %s: status message not updated", task.id)
        if then is not None:
            then()

    async def close(self, grace: float = CLOSE_GRACE) -> None:
        """Send pending posts and edits now, for up to `grace` seconds in all (what Discord
        holds longer is dropped), and stop the timers; nothing is shown after it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await finish_or_cancel(self._pending, grace)
        self._closed = True  # a change from now on would start a timer firing after the end
        flushes = [asyncio.create_task(e.message.flush()) for e in self._entries.values()]
        if dropped := await finish_or_cancel(flushes, max(0.0, deadline - loop.time())):
            log.warning(
                "%d status edits not sent: Discord held them past the stop's %g s", dropped, grace
            )
        self._entries.clear()

    def _entry(self, task: Task) -> _Entry:
        task_id = task.id

        async def edit(text: str) -> bool:
            return await self._edit(task_id, entry, text)

        def settled() -> None:
            self._forget_if_settled(task_id, entry)

        def turn() -> AbstractAsyncContextManager[None]:
            # A status edit waiting for Discord's budget is rendered when its turn comes.
            priority = Priority.RESULT if entry.urgent else Priority.STATUS_EDIT
            return turn_first(self.bot.pacer, priority)

        message = ThrottledMessage(
            edit, interval=self.interval, clock=self._clock, on_idle=settled, turn=turn
        )
        entry = _Entry(task.channel_id, task.status_message_id, message)
        return entry

    def _forget_if_settled(self, task_id: int, entry: _Entry) -> None:
        # A final text that could not be sent is not retried either: keeping the entry
        # would only hold memory for a task that is over.
        if entry.final and not entry.message.waiting:
            self._entries.pop(task_id, None)

    # Status messages are posted and edited with discord.py's low-level REST calls: the bot
    # needs only the new message's id, so building a `discord.Message` from each answer
    # (most of the cost of a send or edit on the bot's side) would be wasted.

    async def _post(self, task_id: int, entry: _Entry, text: str) -> None:
        try:
            with (
                paced_as(Priority.STATUS_POST),
                handle_message_parameters(text, allowed_mentions=NO_MENTIONS) as params,
            ):
                message = await self.bot.http.send_message(entry.channel_id, params=params)
        except (discord.Forbidden, discord.NotFound):
            log.info(
                "task %s: no status message, channel %s unavailable", task_id, entry.channel_id
            )
            entry.message_id = 0  # never retried; 0 marks "no message"
            entry.message.shown = text
            return
        except discord.HTTPException as exc:
            log.warning("task %s: status message not posted (%s)", task_id, exc.status)
            return
        except (aiohttp.ClientError, OSError) as exc:  # connection lost, e.g. while stopping
            log.warning("task %s: status message not posted (%r)", task_id, exc)
            return
        except RuntimeError:  # aiohttp's "Session is closed": a post due as it stopped
            if not self.bot.is_closed():
                raise
            log.warning("task %s: status message not posted, the bot is stopping", task_id)
            return
        entry.message_id = int(message["id"])
        entry.message.sent(text)
        await self._remember(task_id, entry.message_id)

    async def _remember(self, task_id: int, message_id: int) -> None:
        try:
            await self.bot.store.tasks.set_status_message(task_id, message_id)
        except StoreUnavailable as exc:
            # Kept in memory for this run; only a restart would post a fresh status message.
            log.warning("task %s: status message id not stored (%s)", task_id, exc)

    async def _edit(self, task_id: int, entry: _Entry, text: str) -> bool:
        """Edit the status message; whether it now shows `text` (or there is none to edit)."""
        if not entry.message_id:
            return True
        try:
            with (
                paced_as(Priority.RESULT if entry.urgent else Priority.STATUS_EDIT),
                handle_message_parameters(text, allowed_mentions=NO_MENTIONS) as params,
            ):
                await self.bot.http.edit_message(entry.channel_id, entry.message_id, params=params)
        except (discord.Forbidden, discord.NotFound):
            log.info("task %s: status message %s is gone", task_id, entry.message_id)
            entry.message_id = 0
        except discord.HTTPException as exc:
            log.warning("task %s: status edit failed (%s)", task_id, exc.status)
            return False
        except (aiohttp.ClientError, OSError) as exc:  # connection lost, e.g. while stopping
            log.warning("task %s: status edit failed (%r)", task_id, exc)
            return False
        except RuntimeError:  # aiohttp's "Session is closed": an edit due as it stopped
            if not self.bot.is_closed():
                raise
            log.warning("task %s: status edit dropped, the bot is stopping", task_id)
            return False
        return True
