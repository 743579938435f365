"""Keeping the bot's REST requests under Discord's global rate limit, most urgent first.

Discord allows a bot token 50 requests per second across all routes (interaction
callbacks and interaction webhooks excepted), announces that limit in no header, and
answers a request over it with a global 429 that stops every request for a while.
discord.py follows the per-route headers but does not pace the global limit, so a burst
(many tasks finishing at once in many channels) meets global 429s, and a request retried
five times is given up. The pacer spends a budget of `rate` requests per sliding second
below Discord's limit and, when the budget is spent, lets the waiting requests go in order
of priority: a finished task's result before status posts, status posts before status
edits and reactions.

A request takes its turn when discord.py's `HTTPClient.request` is called, before the
per-route wait: one waiting there for the global budget must not hold its route's bucket
(a status post holding the channel's message bucket would keep the channel's result
behind it). The budget is counted when a request really leaves, though: where aiohttp
sends it (a trace's request start), a request that Discord's per-route limit held back
past its turn, or a retry after a 429, gives back its old turn and takes one at the
front of the line.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import logging
import math
import time
import types
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord

log = logging.getLogger(__name__)

# Discord's routes that do not count towards the global limit: interaction callbacks and the
# interaction webhook (follow-ups), which also carry their own token.
_EXEMPT_PREFIXES = ("/interactions/", "/webhooks/")


class Priority(enum.IntEnum):
    """What a request is for; lower goes first when requests wait for the budget."""

    HELD = -1  # had its turn, then Discord held it back (per-route limit, 429): goes next
    RESULT = 0  # results, failure notices, and anything not marked (rare, asked for by someone)
    STATUS_POST = 1
    STATUS_EDIT = 2  # status edits and reactions: superseded or cosmetic within seconds


@dataclass(slots=True)
class PacedRequest:
    """The marking of the requests made in one context, and the waits they had."""

    priority: Priority
    # (wall-clock start, seconds) of each wait for the budget: time spent waiting for Discord.
    waits: list[tuple[float, float]] = field(default_factory=list)

    @property
    def waited(self) -> float:
        return sum(seconds for _, seconds in self.waits)


_current: ContextVar[PacedRequest | None] = ContextVar("discord_paced_request", default=None)


@contextlib.contextmanager
def paced_as(priority: Priority) -> Iterator[PacedRequest]:
    """Mark the Discord requests made inside the block (and tasks it starts) with `priority`;
    the yielded record collects how long they waited for the global budget."""
    request = PacedRequest(priority)
    token = _current.set(request)
    try:
        yield request
    finally:
        _current.reset(token)


@dataclass(slots=True)
class _Turn:
    """A request's turn: when the budget was spent for it, whether a request took it, and
    whether that request has left."""

    at: float
    taken: bool = False
    sent: bool = False


_turn: ContextVar[_Turn | None] = ContextVar("discord_request_turn", default=None)

Schedule = Callable[[float, Callable[[], None]], asyncio.TimerHandle]


class GlobalPacer:
    """At most `rate` requests in any `window` seconds; waiting requests go by priority,
    then in the order they came.

    A sliding window, not a token bucket: Discord counts in fixed one-second windows, and no
    fixed window can then hold more than `rate` requests either; and at most `burst` in
    any quarter of a window. Nothing blocks the event
    loop: a request over the budget awaits a future that a timer completes.
    """

    def __init__(
        self,
        rate: int,
        *,
        window: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        schedule: Schedule | None = None,
        slack: float = 0.05,
        burst: int | None = None,
        observe: Callable[[str, float], None] = lambda priority, seconds: None,
    ) -> None:
        self.rate = rate
        self._observe = observe  # each wait: the priority's name and the seconds
        # At most `burst` in any quarter window as well: a budget spent all at once would
        # reach Discord bunched with the next window's (network and event-loop delays vary)
        # and could exceed Discord's limit there; spread out, only a sliver can.
        self.burst = burst if burst is not None else max(1, math.ceil(rate / 4))
        # A request leaving this long after its turn is counted again when it leaves:
        # within it, no second holds more than `rate` plus what `slack` lets through.
        self.slack = slack
        self.window = window
        self._clock = clock
        self._schedule = schedule
        self._sent: deque[float] = deque()  # when each request of the last window was let go
        self._waiting: list[tuple[int, int, asyncio.Future[float]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._held_until = float("-inf")  # after a global 429: nothing goes before this
        self.held = 0  # requests that had to wait, since start
        self.global_429s = 0  # global 429s Discord answered all the same (shared token)
        self.waited = 0.0  # their seconds of waiting, together

    def __len__(self) -> int:
        """Requests waiting for the budget."""
        return sum(not future.done() for _, _, future in self._waiting)

    def now(self) -> float:
        return self._clock()

    async def acquire(self, priority: Priority = Priority.RESULT) -> float:
        """Wait until a request of `priority` may go; the seconds it waited."""
        return (await self.turn(priority))[1]

    async def turn(self, priority: Priority = Priority.RESULT) -> tuple[float, float]:
        """Wait until a request of `priority` may go: when its turn came (by `now`), and
        the seconds it waited."""
        now = self._clock()
        if not self._waiting and self._free_at(now) <= now:
            self._sent.append(now)
            return now, 0.0
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._order), future))
        self._arm(now)
        at = await future  # cancelled: the entry is skipped when its turn comes
        waited = self._clock() - now
        self.held += 1
        self.waited += waited
        self._observe(priority.name.lower(), waited)
        return at, waited

    def give_back(self, at: float) -> None:
        """Return the turn taken at `at`: its request did not leave then."""
        with contextlib.suppress(ValueError):
            self._sent.remove(at)
        if self._waiting:
            self._rearm()

    def hold(self, seconds: float) -> None:
        """Send nothing for the next `seconds` (Discord answered a global 429); Discord's
        latest word counts, so 0 ends a hold."""
        self._held_until = self._clock() + seconds
        if self._waiting:
            self._rearm()

    def close(self) -> None:
        """Stop the timer; requests still waiting go at once (the session is closing)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._clock()
        for _, _, future in self._waiting:
            if not future.done():
                future.set_result(now)
        self._waiting.clear()

    def _free_at(self, now: float) -> float:
        """When the next request may go, by the budget and any hold."""
        sent = self._sent
        while sent and sent[0] <= now - self.window:
            sent.popleft()
        free = max(now, self._held_until)
        if len(sent) >= self.rate:
            free = max(free, sent[-self.rate] + self.window)
        if len(sent) >= self.burst:
            free = max(free, sent[-self.burst] + self.window / 4)
        return free

    def _rearm(self) -> None:
        """Wake the waiting requests when the budget allows now (it changed)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._arm(self._clock())

    def _arm(self, now: float) -> None:
        if self._timer is not None:
            return
        delay = max(0.0, self._free_at(now) - now)
        schedule = self._schedule or asyncio.get_running_loop().call_later
        self._timer = schedule(delay, self._release)

    def _release(self) -> None:
        """Let go of the most urgent waiting requests that the budget allows now."""
        self._timer = None
        now = self._clock()
        waiting = self._waiting
        while waiting:
            future = waiting[0][2]
            if future.done():  # its caller was cancelled
                heapq.heappop(waiting)
                continue
            if self._free_at(now) > now:
                break
            heapq.heappop(waiting)
            self._sent.append(now)
            future.set_result(now)
        if waiting:
            self._arm(now)


def _exempt(url: str) -> bool:
    """Whether a request is not bound by the global limit: not Discord's REST API (the
    gateway, the CDN), or an interaction callback or webhook."""
    base = discord.http.Route.BASE
    if not url.startswith(base):
        return True
    return url[len(base) :].startswith(_EXEMPT_PREFIXES)


def _note_wait(start: float, waited: float) -> None:
    marked = _current.get()
    if waited > 0 and marked is not None:
        marked.waits.append((start, waited))


@contextlib.asynccontextmanager
async def turn_first(pacer: GlobalPacer, priority: Priority) -> AsyncIterator[None]:
    """Wait for the turn of the next Discord request made inside the block, before it is
    made: what it says can be decided once the wait is over (the newest status text). A
    turn no request took is given back."""
    start = time.time()
    at, waited = await pacer.turn(priority)
    _note_wait(start, waited)
    turn = _Turn(at)
    token = _turn.set(turn)
    try:
        yield
    finally:
        _turn.reset(token)
        if not turn.taken:
            pacer.give_back(at)


def pace_client(http: discord.http.HTTPClient, pacer: GlobalPacer) -> None:
    """Make discord.py's REST requests take their turn from `pacer` (see the module)."""
    inner = http.request

    async def request(route: discord.http.Route, **kwargs: Any) -> Any:
        if _exempt(route.url):
            return await inner(route, **kwargs)
        ahead = _turn.get()
        if ahead is not None and not ahead.taken:  # its turn was taken ahead (`turn_first`)
            ahead.taken = True
            return await inner(route, **kwargs)
        marked = _current.get()
        start = time.time()
        at, waited = await pacer.turn(marked.priority if marked else Priority.RESULT)
        _note_wait(start, waited)
        token = _turn.set(_Turn(at, taken=True))
        try:
            return await inner(route, **kwargs)
        finally:
            _turn.reset(token)

    # An instance attribute: discord.py's own methods call `self.request`.
    setattr(http, "request", request)  # noqa: B010


def pace_requests(trace: aiohttp.TraceConfig, pacer: GlobalPacer) -> None:
    """Count each bot-token request of discord.py's session (whose trace this is) against
    `pacer` when it leaves, and hold the pacer when Discord answers a global 429."""

    async def started(
        session: aiohttp.ClientSession,
        context: types.SimpleNamespace,
        params: aiohttp.TraceRequestStartParams,
    ) -> None:
        if _exempt(str(params.url)):
            return
        turn = _turn.get()
        if turn is not None and not turn.sent:
            turn.sent = True
            if pacer.now() - turn.at <= pacer.slack:
                return  # it leaves at its turn
            pacer.give_back(turn.at)  # held back by a per-route limit since its turn
        # Held back since its turn, a retry, or a request made outside `HTTPClient.request`.
        if turn is not None:
            priority = Priority.HELD
        else:
            marked = _current.get()
            priority = marked.priority if marked else Priority.RESULT
        start = time.time()
        _, waited = await pacer.turn(priority)
        _note_wait(start, waited)

    async def ended(
        session: aiohttp.ClientSession,
        context: types.SimpleNamespace,
        params: aiohttp.TraceRequestEndParams,
    ) -> None:
        headers = params.response.headers
        if params.response.status == 429 and headers.get("X-RateLimit-Global") == "true":
            # discord.py waits out the body's retry_after itself; the header is that value
            # rounded up to whole seconds, so the pacer never lets a request go early.
            retry_after = float(headers.get("Retry-After", "1"))
            log.warning("Discord's global rate limit was hit; pausing for %.0f s", retry_after)
            pacer.global_429s += 1
            pacer.hold(retry_after)

    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
