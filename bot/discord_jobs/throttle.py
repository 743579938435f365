"""One message edited on change, at most once per interval: task status and training progress."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager

# The text a message should show, or how to build it when it is sent (so a delayed edit
# shows the state of its own moment, e.g. the elapsed time, not the one it was asked at).
Text = str | Callable[[], Awaitable[str]]
Sender = Callable[[str], Awaitable[bool]]
# Waits until a send may go (Discord's budget); the text is rendered once it has.
Turn = Callable[[], AbstractAsyncContextManager[object]]


def _no_wait() -> AbstractAsyncContextManager[object]:
    return contextlib.nullcontext()


class ThrottledMessage:
    """The wanted text of one message, sent only when it differs from what the message shows.

    A change within `interval` seconds of the last send is held: the newest text goes out by
    one delayed send, so a busy message costs at most one edit per interval. A change may ask
    for a longer interval of its own (a count ticking down); a later change asking for a
    shorter one brings the delayed send forward. `send` returns whether the message now
    shows the text (False: it may be tried again on the next change).
    `turn` waits for the moment the send may go: the text is rendered after that wait, so a
    send held back (by Discord's rate limits) shows the newest text, and the texts wanted
    meanwhile cost nothing.
    """

    def __init__(
        self,
        send: Sender,
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        on_idle: Callable[[], None] = lambda: None,
        turn: Turn = _no_wait,
    ) -> None:
        self._send = send
        self._turn = turn
        self.interval = interval
        self._clock = clock
        self._on_idle = on_idle
        self._wanted: Text | None = None
        self.shown: str | None = None
        self._sent_at = float("-inf")
        self._timer: asyncio.Task[None] | None = None
        self._due = float("inf")  # when the delayed send goes, on `clock`
        self.lock = asyncio.Lock()  # one send at a time; callers may hold it to post first

    @property
    def waiting(self) -> bool:
        """Whether a delayed send is scheduled."""
        return self._timer is not None

    def want(self, text: Text) -> None:
        """Record the newest text without sending (a later `update` or `flush` sends it)."""
        self._wanted = text

    def sent(self, text: str) -> None:
        """Record that the message shows `text` as of now (e.g. it was just posted)."""
        self.shown = text
        self._sent_at = self._clock()

    async def update(self, text: Text | None = None, *, interval: float | None = None) -> None:
        """Show `text` (or the text last wanted): now if the interval since the last send
        allows, else later; `interval` in place of the message's own, for this change."""
        if text is not None:
            self._wanted = text
        async with self.lock:
            await self._update_locked(self.interval if interval is None else interval)

    async def _update_locked(self, interval: float) -> None:
        due = self._sent_at + interval
        if self._timer is not None:
            if due >= self._due:
                return  # the delayed send picks up the newest text
            # Due sooner than the delayed send: it has not started (this holds the lock).
            self._timer.cancel()
            self._timer = None
        delay = due - self._clock()
        if delay > 0:
            if await self._differs():
                self._due = due
                self._timer = asyncio.create_task(self._send_later(delay))
            return
        await self._deliver()

    async def flush(self) -> None:
        """Stop the delayed send and send what it would have sent, now; a send already under
        way (a delayed one that fired) is waited for, so none is left running after it."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
            # Waits for it to end without raising its cancellation, so a cancellation of
            # this flush (a stop's grace ran out) is not swallowed with it.
            await asyncio.wait({timer})
        async with self.lock:
            await self._deliver()

    def cancel(self) -> None:
        """Drop the delayed send, if any."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _send_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self.lock:
            self._timer = None
            await self._deliver()
        self._on_idle()

    async def _differs(self) -> bool:
        rendered = await self._rendered()
        return rendered is not None and rendered != self.shown

    async def _rendered(self) -> str | None:
        wanted = self._wanted
        if wanted is None or isinstance(wanted, str):
            return wanted
        return await wanted()

    async def _deliver(self) -> None:
        """Send the newest wanted text once the turn has come, if the message differs."""
        if not await self._differs():
            return  # no turn is taken for nothing
        async with self._turn():
            rendered = await self._rendered()
            if rendered is None or rendered == self.shown:
                return  # nothing new: the turn is not used
            self._sent_at = self._clock()
            if await self._send(rendered):
                self.shown = rendered
