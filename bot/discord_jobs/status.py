"""One status message per task, edited only on change and at most once per interval."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import discord

from bot.replies import NO_MENTIONS
from bot.store import StoreUnavailable, Task

if TYPE_CHECKING:
    from bot.app import BotCore

log = logging.getLogger(__name__)

FINISHED_MEMORY = 10_000


@dataclass(slots=True)
class _Entry:
    """What a task's status message shows and what it should show next."""

    channel_id: int
    guild_id: int
    message_id: int | None
    shown: str | None = None
    wanted: str | None = None
    final: bool = False
    last_edit: float = float("-inf")
    timer: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class StatusBoard:
    """Posts and edits task status messages with the bot token, coalescing rapid changes.

    A change within `interval` seconds of the last edit is not sent at once: the newest text
    is kept and sent by one delayed edit, so a busy task costs at most one edit per interval.
    """

    def __init__(
        self, bot: BotCore, *, interval: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.bot = bot
        self.interval = interval
        self._clock = clock
        self._entries: dict[int, _Entry] = {}
        # Tasks whose final text was requested: late progress events must not overwrite it.
        self._finished: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def message_id(self, task_id: int) -> int | None:
        """The status message of a task this board is tracking."""
        entry = self._entries.get(task_id)
        return entry.message_id if entry else None

    async def show(self, task: Task, text: str, *, final: bool = False) -> None:
        """Make the task's status message say `text` (posting it if there is none yet)."""
        if task.id in self._finished and not final:
            return
        if final:
            self._finished[task.id] = None
            while len(self._finished) > FINISHED_MEMORY:
                self._finished.popitem(last=False)
        entry = self._entries.get(task.id)
        if entry is None:
            entry = _Entry(task.channel_id, task.guild_id, task.status_message_id)
            self._entries[task.id] = entry
        entry.wanted = text
        entry.final = final
        async with entry.lock:
            if entry.message_id is None:
                await self._post(task.id, entry)
            elif entry.wanted != entry.shown:
                delay = entry.last_edit + self.interval - self._clock()
                if delay <= 0:
                    await self._edit(task.id, entry)
                elif entry.timer is None:
                    entry.timer = asyncio.create_task(self._edit_later(task.id, entry, delay))
            self._forget_if_settled(task.id, entry)

    async def close(self) -> None:
        """Send pending edits now and stop the timers."""
        for task_id, entry in list(self._entries.items()):
            if entry.timer is not None:
                entry.timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await entry.timer
                entry.timer = None
                if entry.wanted != entry.shown and entry.message_id:
                    await self._edit(task_id, entry)
        self._entries.clear()

    async def _edit_later(self, task_id: int, entry: _Entry, delay: float) -> None:
        await asyncio.sleep(delay)
        async with entry.lock:
            entry.timer = None
            if entry.wanted != entry.shown:
                await self._edit(task_id, entry)
            self._forget_if_settled(task_id, entry)

    def _forget_if_settled(self, task_id: int, entry: _Entry) -> None:
        # A final text that could not be sent is not retried either: keeping the entry
        # would only hold memory for a task that is over.
        if entry.final and entry.timer is None:
            self._entries.pop(task_id, None)

    def _channel(self, entry: _Entry) -> discord.PartialMessageable:
        return self.bot.get_partial_messageable(entry.channel_id, guild_id=entry.guild_id)  # type: ignore[attr-defined]

    async def _post(self, task_id: int, entry: _Entry) -> None:
        text = entry.wanted or ""
        try:
            message = await self._channel(entry).send(text, allowed_mentions=NO_MENTIONS)
        except (discord.Forbidden, discord.NotFound):
            log.info(
                "task %s: no status message, channel %s unavailable", task_id, entry.channel_id
            )
            entry.message_id = 0  # never retried; 0 marks "no message"
            entry.shown = text
            return
        except discord.HTTPException as exc:
            log.warning("task %s: status message not posted (%s)", task_id, exc.status)
            return
        entry.message_id = message.id
        entry.shown = text
        entry.last_edit = self._clock()
        try:
            await self.bot.store.tasks.set_status_message(task_id, message.id)
        except StoreUnavailable as exc:
            # Kept in memory for this run; only a restart would post a fresh status message.
            log.warning("task %s: status message id not stored (%s)", task_id, exc)

    async def _edit(self, task_id: int, entry: _Entry) -> None:
        text = entry.wanted or ""
        entry.last_edit = self._clock()
        if not entry.message_id:
            entry.shown = text
            return
        try:
            await (
                self._channel(entry)
                .get_partial_message(entry.message_id)
                .edit(content=text, allowed_mentions=NO_MENTIONS)
            )
        except (discord.Forbidden, discord.NotFound):
            log.info("task %s: status message %s is gone", task_id, entry.message_id)
            entry.message_id = 0
        except discord.HTTPException as exc:
            log.warning("task %s: status edit failed (%s)", task_id, exc.status)
            return
        entry.shown = text
