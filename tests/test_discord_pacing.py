"""The bot's pacing of its Discord requests under the global limit, on a fake clock."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from bot.discord_pacing import GlobalPacer, Priority
from bot.store import TaskState
from fakediscord import FakeDiscord
from fakediscord.ratelimits import RateLimits
from fakediscord.recording import RecordedRequest
from tests.conftest import CH_A, GUILD_A, Harness, HarnessFactory
from tests.genutil import FAST_POLLING, eventually, imagine, result_of, task_id_of, wait_result
from tests.helpers import answer_text


class Clock:
    """Monotonic seconds that move only when told, with the timers the pacer arms."""

    def __init__(self) -> None:
        self.now = 100.0
        self.timers: list[tuple[float, Callable[[], None], Timer]] = []

    def __call__(self) -> float:
        return self.now

    def schedule(self, delay: float, callback: Callable[[], None]) -> Any:
        timer = Timer()
        self.timers.append((self.now + delay, callback, timer))
        return timer

    async def advance(self, seconds: float) -> None:
        """Move time on, firing the timers that come due, and let the woken tasks run."""
        for _ in range(5):  # tasks just created ask first, at the present time
            await asyncio.sleep(0)
        self.now += seconds
        while due := [t for t in self.timers if t[0] <= self.now and not t[2].cancelled]:
            for entry in due:
                self.timers.remove(entry)
                entry[1]()
        for _ in range(5):
            await asyncio.sleep(0)


class Timer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def pacer(rate: int, clock: Clock, burst: int | None = None) -> GlobalPacer:
    # Unless a test is about spreading, the whole budget may go at once.
    return GlobalPacer(rate, clock=clock, schedule=clock.schedule, burst=burst or rate)


async def test_requests_within_the_budget_go_at_once_and_the_next_waits_for_the_window() -> None:
    clock = Clock()
    p = pacer(3, clock)
    assert [await p.acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    fourth = asyncio.create_task(p.acquire())
    await clock.advance(0.5)
    assert not fourth.done() and len(p) == 1
    await clock.advance(0.5)  # the first request's second is over
    assert await fourth == pytest.approx(1.0)
    assert (p.held, p.waited) == (1, pytest.approx(1.0))


async def test_no_sliding_second_holds_more_than_the_budget() -> None:
    clock = Clock()
    p = pacer(5, clock)
    sent: list[float] = []

    async def one() -> None:
        await p.acquire()
        sent.append(clock.now)

    tasks = [asyncio.create_task(one()) for _ in range(23)]
    await clock.advance(0)
    while not all(t.done() for t in tasks):
        await clock.advance(0.25)
    assert len(sent) == 23
    for t in sent:
        assert sum(t <= s < t + 1.0 for s in sent) <= 5, sent
    # and the budget is used: 23 requests at 5 per second go within four seconds
    assert max(sent) - min(sent) == pytest.approx(4.0)


async def test_the_budget_is_spread_over_the_second() -> None:
    clock = Clock()
    p = GlobalPacer(40, clock=clock, schedule=clock.schedule)  # 10 per quarter second
    sent: list[float] = []

    async def one() -> None:
        await p.acquire()
        sent.append(clock.now)

    tasks = [asyncio.create_task(one()) for _ in range(40)]
    while not all(t.done() for t in tasks):
        await clock.advance(0.125)
    assert Counter(sent) == {100.0: 10, 100.25: 10, 100.5: 10, 100.75: 10}


async def test_waiting_requests_go_by_priority_then_in_order() -> None:
    clock = Clock()
    p = pacer(1, clock)
    await p.acquire()  # the budget is spent for a second
    order: list[str] = []

    async def one(name: str, priority: Priority) -> None:
        await p.acquire(priority)
        order.append(name)

    asks = [
        ("edit 1", Priority.STATUS_EDIT),
        ("post 1", Priority.STATUS_POST),
        ("edit 2", Priority.STATUS_EDIT),
        ("result 1", Priority.RESULT),
        ("post 2", Priority.STATUS_POST),
        ("result 2", Priority.RESULT),
    ]
    tasks = [asyncio.create_task(one(n, pr)) for n, pr in asks]
    await clock.advance(0)
    for _ in asks:
        await clock.advance(1.0)
    await asyncio.gather(*tasks)
    assert order == ["result 1", "result 2", "post 1", "post 2", "edit 1", "edit 2"]


async def test_a_request_arriving_later_with_priority_overtakes_those_waiting() -> None:
    clock = Clock()
    p = pacer(1, clock)
    await p.acquire()
    edits = [asyncio.create_task(p.acquire(Priority.STATUS_EDIT)) for _ in range(3)]
    await clock.advance(0.5)
    result = asyncio.create_task(p.acquire(Priority.RESULT))
    await clock.advance(0.5)  # one slot frees: the result takes it, not the older edits
    assert result.done() and not any(e.done() for e in edits)


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    clock = Clock()
    p = pacer(1, clock)
    await p.acquire()
    first = asyncio.create_task(p.acquire(Priority.RESULT))
    second = asyncio.create_task(p.acquire(Priority.STATUS_EDIT))
    await clock.advance(0)
    first.cancel()
    await clock.advance(1.0)
    assert first.cancelled() and second.done()


async def test_a_global_429_holds_every_request_until_it_is_over() -> None:
    clock = Clock()
    p = pacer(10, clock)
    await p.acquire()
    p.hold(2.0)
    waiting = asyncio.create_task(p.acquire(Priority.RESULT))
    await clock.advance(1.9)
    assert not waiting.done()  # the budget has room, but Discord said to wait
    await clock.advance(0.1)
    assert await waiting == pytest.approx(2.0)


# Through the real bot: discord.py's client against the fake Discord and its rate limits.

CHANNELS = [70_000 + i for i in range(8)]


def _channels(fake: FakeDiscord) -> None:
    for i, channel in enumerate(CHANNELS):
        fake.add_channel(GUILD_A, channel, f"room-{i}")


async def _burst(h: Harness, channels: list[int]) -> list[int]:
    """One /imagine per channel, all at once; the task ids."""
    commands = await asyncio.gather(
        *(imagine(h, f"lantern {i}", count=1, channel_id=ch) for i, ch in enumerate(channels))
    )
    return [task_id_of(await answer_text(ix)) for ix in commands]


def _kind(request: RecordedRequest) -> str | None:
    """What a request to a channel was: a result, a status post or edit, a reaction."""
    if re.fullmatch(r"/channels/\d+/messages", request.path) and request.method == "POST":
        return "result" if request.files else "status post"
    if re.fullmatch(r"/channels/\d+/messages/\d+", request.path) and request.method == "PATCH":
        return "status edit"
    if "/reactions/" in request.path:
        return "reaction"
    return None


async def _paced_bot(
    harness_factory: HarnessFactory, channels: list[int], *, budget: int, global_limit: int
) -> Harness:
    """A bot paced at `budget` requests a second against a fake Discord whose global limit
    is `global_limit`, with a server per channel and room for a task in each at once."""
    h = await harness_factory(
        fake_setup=_channels,
        discord={"requests_per_second": budget},
        miaohua=FAST_POLLING,
        limits={"user_running": len(channels)},
        emulator={"workers": len(channels), "generation_time": 0.2},
    )
    h.fake.rate_limits = RateLimits(global_limit=global_limit)
    return h


async def _each_posted_once(h: Harness, ids: list[int], channels: list[int]) -> None:
    """Wait for every task's result, then check each was delivered and posted once."""
    for task_id, channel in zip(ids, channels, strict=True):
        await wait_result(h, task_id, channel, timeout=60)
    await h.idle(timeout=60)
    for task_id, channel in zip(ids, channels, strict=True):
        assert (await h.bot.store.tasks.get(task_id)).state == TaskState.DELIVERED
        assert len(result_of(h, task_id, channel)) == 1


async def test_a_burst_across_channels_meets_no_global_429_and_every_result_is_posted(
    harness_factory: HarnessFactory,
) -> None:
    # Discord's global limit brought down to 10 requests a second, the bot's budget under it:
    # eight tasks in eight channels ask for ~40 requests, a burst of them when the results
    # come in together.
    h = await _paced_bot(harness_factory, CHANNELS, budget=8, global_limit=10)
    await _each_posted_once(h, await _burst(h, CHANNELS), CHANNELS)
    limited = h.fake.rate_limits.stats.limited
    assert [r for r in limited if r.scope == "global"] == [], [(r.method, r.path) for r in limited]
    kinds = Counter(_kind(r) for r in h.fake.requests)
    # Each task's status message is its command's answer, which Discord does not count.
    assert kinds["result"] == len(CHANNELS) and kinds["status post"] == 0
    assert h.bot.pacer.held > 0  # the budget was really spent, and requests waited for it


async def test_results_go_before_the_status_edits_waiting_for_discord(
    harness_factory: HarnessFactory,
) -> None:
    channels = CHANNELS[:6]
    n, at_once = len(channels), 3
    h = await harness_factory(
        fake_setup=_channels,
        discord={"requests_per_second": 3, "rerun_reaction": True},
        miaohua={**FAST_POLLING, "account_concurrency": at_once},
        limits={"user_running": len(channels)},
        emulator={"workers": len(channels), "generation_time": 0.05},
    )
    # Nothing goes to Discord for now, as after a global 429 (the commands' answers do:
    # Discord does not count interaction callbacks, and each answer is its task's status
    # message). Three tasks start at once, three wait in line: when those start, their status
    # edits wait, and every result waits too.
    h.bot.pacer.hold(60)
    ids = await _burst(h, channels)
    await eventually(lambda: len(h.bot.pacer) == n + (n - at_once), timeout=30)
    h.bot.pacer.hold(0)
    for task_id, channel in zip(ids, channels, strict=True):
        await wait_result(h, task_id, channel, timeout=60)
    await h.idle(timeout=60)
    # The rerun reactions are added in the background, after their result is recorded.
    await eventually(lambda: [_kind(r) for r in h.fake.requests].count("reaction") == n, 30)

    order = [kind for r in h.fake.requests if (kind := _kind(r)) is not None]
    assert order[:n] == ["result"] * n, order
    assert set(order[n:]) == {"status edit", "reaction"}, order
    assert h.fake.rate_limits.stats.limited == []
    # Operators see the waits too.
    waits = h.bot.metrics.registry.get_sample_value(
        "miaohua_discord_pacing_wait_seconds_count", {"priority": "result"}
    )
    assert waits is not None and waits >= n
    assert h.bot.metrics.registry.get_sample_value("miaohua_discord_requests_waiting") == 0


async def test_a_status_edit_waiting_for_discord_sends_the_newest_text_and_skips_the_rest(
    harness_factory: HarnessFactory,
) -> None:
    h = await harness_factory(miaohua=FAST_POLLING)
    (task_id,) = await _burst(h, [CH_A])
    await wait_result(h, task_id)
    await h.idle()
    task = await h.bot.store.tasks.get(task_id)
    board = h.bot.delivery.status
    board.interval = 0.0  # every change is an edit, sent at once
    path = f"/channels/{CH_A}/messages/{task.status_message_id}"
    before = len(h.fake.requests)

    # Nothing goes to Discord for now: the first edit waits for its turn while the text
    # changes twice more.
    h.bot.pacer.hold(60)
    for text in ("first", "second", "newest"):
        board.show_soon(task, text, final=True)
        await eventually(lambda: len(h.bot.pacer) == 1)
    h.bot.pacer.hold(0)
    await h.idle()

    edits = [r.json["content"] for r in h.fake.requests[before:] if r.path == path]
    assert edits == ["newest"]
    assert (h.fake.message(task.status_message_id) or {}).get("content") == "newest"


async def test_a_global_429_all_the_same_pauses_the_pacer_and_every_result_is_posted(
    harness_factory: HarnessFactory,
) -> None:
    # A budget above what Discord allows (as when two processes share one token): Discord's
    # global 429s come all the same. discord.py retries them; the pacer holds every request
    # for the 429's Retry-After.
    channels = CHANNELS[:4]
    h = await _paced_bot(harness_factory, channels, budget=20, global_limit=3)
    await _each_posted_once(h, await _burst(h, channels), channels)

    limited = [r for r in h.fake.rate_limits.stats.limited if r.scope == "global"]
    assert limited and h.bot.pacer.global_429s == len(limited)
