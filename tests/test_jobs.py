"""The job layer against the real emulator over loopback and a real SQLite store."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bot.emulator import EmulatorServer, EmulatorSettings
from bot.jobs import (
    AdaptiveInterval,
    BlockedWord,
    ChannelNotAllowed,
    Delivery,
    FixedInterval,
    GenerationRequest,
    GenerationService,
    Limits,
    NoAccount,
    Posted,
    PromptTooLong,
    QueueFull,
    QuotaExceeded,
    Refused,
    UserBusy,
    admission,
    make_strategy,
)
from bot.jobs.queue import GuildQueue
from bot.jobs.timers import TimerHeap
from bot.store import Store, Task, TaskState
from bot.v1b import AccountSession, V1bClient

EMAIL, PASSWORD = "jobs@miaohua.test", "pw-jobs-1"
POOR_EMAIL = "poor@miaohua.test"
GUILD, POOR_GUILD, NO_ACCOUNT_GUILD = 1, 2, 3
OPEN = Limits(prompt_length=200, user_running=None)


class Resolver:
    """Sessions from one V1bClient; guild -> (email, password)."""

    def __init__(self, client: V1bClient, accounts: dict[int, tuple[str, str]]) -> None:
        self.client = client
        self.accounts = accounts

    async def session_for(self, guild_id: int) -> AccountSession:
        if guild_id not in self.accounts:
            raise NoAccount()
        return self.client.account(*self.accounts[guild_id])

    async def session_for_account(self, guild_id: int, account_id: int | None) -> AccountSession:
        return await self.session_for(guild_id)  # one account per guild here, never replaced

    async def acquire(self, guild_id: int) -> SimpleNamespace:
        return SimpleNamespace(account_id=None, session=await self.session_for(guild_id))

    async def release(self, bound: SimpleNamespace) -> None:
        pass

    async def finished_with(self, account_id: int | None) -> None:
        pass


class Events:
    """Records every callback; deliveries can be made to fail."""

    def __init__(self, delivered: Counter[int] | None = None) -> None:
        self.accepted: list[tuple[int, int | None]] = []
        self.progress: list[tuple[int, int | None, int | None]] = []
        self.delivered = delivered if delivered is not None else Counter()
        self.attempts: Counter[int] = Counter()
        self.failed: dict[int, Task] = {}
        self.cancelled: list[int] = []
        self.refused: list[tuple[int, str]] = []
        self.failures_left = 0
        self.deliver = True
        self.place: Delivery = "channel"
        self._next_message = 5000

    async def task_accepted(self, task: Task, position: int | None) -> None:
        self.accepted.append((task.id, position))

    async def task_progress(self, task: Task, position: int | None, wait_time: int | None) -> None:
        self.progress.append((task.id, position, wait_time))

    async def task_done(self, task: Task) -> Posted | None:
        self.attempts[task.id] += 1
        assert task.state in (TaskState.DONE, TaskState.DELIVERED) and task.images
        if self.failures_left > 0:
            self.failures_left -= 1
            if self.failures_left % 2:
                raise RuntimeError("discord is down")
            return None
        if not self.deliver:
            return None
        self.delivered[task.id] += 1
        self._next_message += 1
        return Posted(self._next_message, self.place)

    async def task_failed(self, task: Task) -> None:
        self.failed[task.id] = task

    async def task_cancelled(self, task: Task) -> None:
        self.cancelled.append(task.id)

    def request_refused(self, request: GenerationRequest, refusal: Refused) -> None:
        self.refused.append((request.user_id, refusal.reason))

    def settled(self, ids: Iterable[int]) -> bool:
        return all(i in self.delivered or i in self.failed for i in ids)


async def wait_for(predicate: Callable[[], bool], within: float = 8.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def delivered_in(store: Store, task_id: int, within: float = 8.0) -> Task:
    """Wait until the store records the task as delivered, and return it."""
    deadline = time.monotonic() + within
    while True:
        task = await store.tasks.get(task_id)
        if task is not None and task.state == TaskState.DELIVERED:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} not recorded as delivered in time")
        await asyncio.sleep(0.01)


async def idle(service: GenerationService) -> None:
    """Wait until the service holds no work: nothing queued, polled, delivered or retried.

    From then on nothing happens without new input, so what a test counts afterwards is final.
    """
    await wait_for(lambda: not any(service.memory_sizes().values()))


def request(
    user: int = 1, guild: int = GUILD, prompt: str = "a red fox", **kw: Any
) -> GenerationRequest:
    fields: dict[str, Any] = {
        "guild_id": guild,
        "channel_id": 10,
        "user_id": user,
        "locale": "en-US",
        "kind": "t2i",
        "model": "Artist_V0.1.3",
        "prompt": prompt,
        "count": 1,
        "scale": 7,
        "size": "512x512",
    }
    fields.update(kw)
    return GenerationRequest(**fields)


@pytest.fixture
async def emu() -> AsyncIterator[EmulatorServer]:
    settings = EmulatorSettings(
        accounts={EMAIL: PASSWORD}, generation_time=0.1, generation_noise=0.2, workers=8
    )
    async with EmulatorServer(settings) as server:
        server.add_account(POOR_EMAIL, PASSWORD, points=0)
        yield server


@pytest.fixture
async def client(emu: EmulatorServer) -> AsyncIterator[V1bClient]:
    v1b = V1bClient(emu.base_url, requests_per_second=500, backoff_base=0.01, max_retries=2)
    yield v1b
    await v1b.close()


@pytest.fixture
def resolver(client: V1bClient) -> Resolver:
    return Resolver(client, {GUILD: (EMAIL, PASSWORD), POOR_GUILD: (POOR_EMAIL, PASSWORD)})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "bot.db")
    yield db
    await db.close()


ServiceFactory = Callable[..., Awaitable[GenerationService]]


@pytest.fixture
async def make_service(store: Store, resolver: Resolver) -> AsyncIterator[ServiceFactory]:
    started: list[GenerationService] = []

    async def factory(events: Events, *, start: bool = True, **kw: Any) -> GenerationService:
        options: dict[str, Any] = {
            "strategy": FixedInterval(0.05),
            "busy_backoff": 0.1,
            "delivery_retry": 0.05,
            "poll_error_backoff": 0.05,
            "stop_grace": 2.0,
        }
        options.update(kw)
        service = GenerationService(store, resolver, events, **options)
        started.append(service)
        if start:
            await service.start()
        return service

    yield factory
    for service in started:
        await service.stop()


async def submission_order(store: Store, ids: Iterable[int]) -> list[int]:
    tasks = [await store.tasks.get(i) for i in ids]
    return [t.id for t in sorted(tasks, key=lambda t: t.submitted_at or 0.0)]  # type: ignore[union-attr]


# The whole path


async def test_submit_poll_deliver(store: Store, make_service: ServiceFactory) -> None:
    events = Events()
    service = await make_service(events, start=False)
    tasks = [await service.enqueue(request(prompt=f"fox {n}"), limits=OPEN) for n in range(3)]
    assert [position for _, position in events.accepted] == [1, 2, 3]
    await service.start()
    await wait_for(lambda: events.settled(t.id for t in tasks))
    for task in tasks:
        stored = await store.tasks.get(task.id)
        assert stored is not None and stored.state == TaskState.DELIVERED
        assert stored.result_message_id is not None and stored.images
        assert stored.seed_used is not None
    assert events.delivered == Counter({t.id: 1 for t in tasks})
    assert not events.failed


async def test_delivery_retried_until_accepted_then_exactly_once(
    store: Store, make_service: ServiceFactory
) -> None:
    events = Events()
    events.failures_left = 3  # None, raise, None
    service = await make_service(events)
    task = await service.enqueue(request(), limits=OPEN)
    await wait_for(lambda: task.id in events.delivered)
    await idle(service)
    assert events.attempts[task.id] == 4 and events.delivered[task.id] == 1
    stored = await store.tasks.get(task.id)
    assert stored is not None and stored.state == TaskState.DELIVERED


async def test_redeliver_posts_once_in_place_of_the_message_found_gone(
    store: Store, make_service: ServiceFactory
) -> None:
    events = Events()
    service = await make_service(events)
    task = await service.enqueue(request(), limits=OPEN)
    stored = await delivered_in(store, task.id)
    # Another caller already replaced the message found gone: nothing is posted.
    assert await service.redeliver(task.id, replacing=stored.result_message_id + 1)
    assert events.delivered[task.id] == 1
    assert await service.redeliver(task.id, replacing=stored.result_message_id)
    again = await store.tasks.get(task.id)
    assert events.delivered[task.id] == 2 and again is not None
    assert again.state == TaskState.DELIVERED and again.delivered_at == stored.delivered_at
    assert again.result_message_id == events._next_message != stored.result_message_id
    events.deliver = False  # neither the channel nor DMs take it
    assert not await service.redeliver(task.id, replacing=again.result_message_id)


async def test_the_place_a_result_went_to_is_recorded_and_follows_a_repost(
    store: Store, make_service: ServiceFactory
) -> None:
    events = Events()
    events.place = "dm"  # asked for the channel, which refused it: it went by DM
    service = await make_service(events)
    task = await service.enqueue(request(), limits=OPEN)
    stored = await delivered_in(store, task.id)
    assert task.delivery == "channel" and stored.delivery == "dm"
    events.place = "channel"
    assert await service.redeliver(task.id, replacing=stored.result_message_id)
    again = await store.tasks.get(task.id)
    assert again is not None and again.result_message_id == events._next_message
    assert again.delivery == "channel"


async def test_delivery_gives_up_after_bounded_attempts(make_service: ServiceFactory) -> None:
    events = Events()
    events.deliver = False
    service = await make_service(events, delivery_attempts=3)
    task = await service.enqueue(request(), limits=OPEN)
    await wait_for(lambda: task.id in events.failed)
    assert events.failed[task.id].error == "delivery_failed"
    assert events.attempts[task.id] == 3


async def test_restart_delivers_everything_exactly_once(
    store: Store, emu: EmulatorServer, make_service: ServiceFactory
) -> None:
    emu.state.settings.generation_time = 0.3
    delivered: Counter[int] = Counter()
    first = Events(delivered)
    first.deliver = False  # the first finished task stays 'done' across the restart
    service = await make_service(first, start=False, account_concurrency=1)
    ids = [(await service.enqueue(request(), limits=OPEN)).id for _ in range(5)]
    await service.start()
    await wait_for(lambda: bool(first.attempts))
    await wait_for(lambda: sum(1 for t in emu.state.tasks.values() if not t.finished) == 1)
    await service.stop()
    states = Counter([(await store.tasks.get(i)).state for i in ids])  # type: ignore[union-attr]
    assert states[TaskState.DONE] >= 1 and states[TaskState.QUEUED] >= 2

    second = Events(delivered)
    service = await make_service(second, account_concurrency=1)
    await wait_for(lambda: all(i in delivered for i in ids))
    await idle(service)
    assert delivered == Counter({i: 1 for i in ids})
    assert not first.failed and not second.failed
    assert await submission_order(store, ids) == ids
    assert emu.state.calls["task_submit"] == len(ids)


# Fairness and capacity


async def test_round_robin_between_users(store: Store, make_service: ServiceFactory) -> None:
    events = Events()
    service = await make_service(events, account_concurrency=1)
    blocker = await service.enqueue(request(user=9), limits=OPEN)
    heavy = [(await service.enqueue(request(user=1), limits=OPEN)).id for _ in range(5)]
    light = (await service.enqueue(request(user=2), limits=OPEN)).id
    assert service.queue_position(heavy[0]) == 1
    assert service.queue_position(light) == 2
    assert service.queue_position(heavy[1]) == 3
    assert service.queue_depth(GUILD) == 6
    await wait_for(lambda: events.settled([blocker.id, *heavy, light]))
    order = await submission_order(store, [blocker.id, *heavy, light])
    assert order == [blocker.id, heavy[0], light, *heavy[1:]]
    assert (heavy[1], 3, None) in events.progress  # positions are reported as they change
    assert (heavy[1], 2, None) in events.progress


async def test_a_line_moving_up_is_reported_without_reading_each_task_again(
    store: Store, make_service: ServiceFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = Events()
    service = await make_service(events, start=False)  # nothing is dispatched: a long line
    queued = [(await service.enqueue(request(user=u), limits=OPEN)).id for u in range(1, 21)]
    await wait_for(lambda: len(events.accepted) == 20)
    reads: list[int] = []
    read = store.tasks.get

    async def counted(task_id: int) -> Task | None:
        reads.append(task_id)
        return await read(task_id)

    monkeypatch.setattr(store.tasks, "get", counted)
    events.progress.clear()
    assert await service.cancel(queued[0], GUILD)
    moved = [(task_id, place, None) for place, task_id in enumerate(queued[1:], start=1)]
    await wait_for(lambda: len(events.progress) == len(moved))
    assert sorted(events.progress) == sorted(moved)  # every task one place up
    assert reads == []  # the queue's own copies: no statement per task of the line


async def test_account_concurrency_is_respected(store: Store, make_service: ServiceFactory) -> None:
    events = Events()
    service = await make_service(events, account_concurrency=2)
    ids = [(await service.enqueue(request(user=n % 3), limits=OPEN)).id for n in range(8)]
    peak = 0
    while not events.settled(ids):
        peak = max(peak, len(await store.tasks.list_by_state(TaskState.SUBMITTED)))
        await asyncio.sleep(0.005)
    assert peak == 2
    assert len(events.delivered) == 8


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most spans (start, end) open at one moment."""
    return max(sum(start <= at < end for start, end in spans) for at, _ in spans)


@pytest.mark.parametrize("busy_above", [None, 3])
async def test_member_running_limit_keeps_account_limits_and_busy_back_off(
    emu: EmulatorServer, store: Store, make_service: ServiceFactory, busy_above: int | None
) -> None:
    emu.state.settings.faults.busy_above = busy_above  # 3: the account answers 603 beyond 3
    events = Events()
    service = await make_service(events, account_concurrency=4, busy_backoff=0.05)
    limits = Limits(user_running=2, user_queued=10)
    lines = {
        user: [(await service.enqueue(request(user=user), limits=limits)).id for _ in range(n)]
        for user, n in ((1, 8), (2, 2))
    }
    every = [task_id for line in lines.values() for task_id in line]
    await wait_for(lambda: events.settled(every), within=30)
    assert set(events.delivered) == set(every) and not events.failed
    spans: dict[int, list[tuple[float, float]]] = {}
    for user, line in lines.items():
        tasks = [await store.tasks.get(task_id) for task_id in line]
        at_service = [emu.state.tasks[t.service_task_id or ""] for t in tasks if t is not None]
        spans[user] = [(t.submitted_at, t.done_at or float("inf")) for t in at_service]
        assert most_at_once(spans[user]) <= 2, user  # the member's running limit
    assert most_at_once([span for line in spans.values() for span in line]) <= 4  # the account's
    if busy_above is not None:
        assert emu.state.calls["task_submit"] > len(every)  # some were answered 603, none lost


async def test_busy_account_backs_off_and_never_fails(
    emu: EmulatorServer, make_service: ServiceFactory
) -> None:
    emu.state.settings.faults.busy_above = 1
    events = Events()
    service = await make_service(events, account_concurrency=4, busy_backoff=0.05)
    ids = [(await service.enqueue(request(user=n % 2), limits=OPEN)).id for n in range(6)]
    await wait_for(lambda: events.settled(ids))
    assert set(events.delivered) == set(ids) and not events.failed
    assert emu.state.calls["task_submit"] > len(ids)  # some submissions were answered 603


async def test_cancel_only_queued(store: Store, make_service: ServiceFactory) -> None:
    events = Events()
    service = await make_service(events, start=False)
    task = await service.enqueue(request(), limits=OPEN)
    await service.start()
    second = await service.enqueue(request(), limits=OPEN)
    third = await service.enqueue(request(), limits=OPEN)
    assert await service.cancel(third.id) is True or third.id in events.delivered
    await wait_for(lambda: events.settled([task.id, second.id]))
    assert await service.cancel(task.id) is False
    stored = await store.tasks.get(third.id)
    assert stored is not None
    assert stored.state in (TaskState.CANCELLED, TaskState.DELIVERED)
    # The Discord side hears of a cancellation (to mark the status message) and of no other.
    assert events.cancelled == ([third.id] if stored.state == TaskState.CANCELLED else [])


# Failures


async def test_not_enough_points_fails(make_service: ServiceFactory) -> None:
    events = Events()
    service = await make_service(events)
    task = await service.enqueue(request(guild=POOR_GUILD), limits=OPEN)
    await wait_for(lambda: task.id in events.failed)
    assert events.failed[task.id].error == "not_enough_points"


async def test_generation_failure_carries_error_msg(
    emu: EmulatorServer, make_service: ServiceFactory
) -> None:
    emu.state.settings.faults.task_failure_rate = 1.0
    events = Events()
    service = await make_service(events)
    task = await service.enqueue(request(), limits=OPEN)
    await wait_for(lambda: task.id in events.failed)
    failed = events.failed[task.id]
    assert failed.error == "generation_failed" and failed.error_detail


async def test_task_timeout(emu: EmulatorServer, make_service: ServiceFactory) -> None:
    emu.state.settings.generation_time = 30.0
    events = Events()
    service = await make_service(events, task_timeout=0.3)
    task = await service.enqueue(request(), limits=OPEN)
    await wait_for(lambda: task.id in events.failed)
    assert events.failed[task.id].error == "timeout"


async def test_invalid_request_fails_with_detail(make_service: ServiceFactory) -> None:
    events = Events()
    service = await make_service(events)
    task = await service.enqueue(request(size="13x13"), limits=OPEN)
    await wait_for(lambda: task.id in events.failed)
    assert events.failed[task.id].error == "invalid_request"
    assert "13x13" in (events.failed[task.id].error_detail or "")


async def test_events_raising_do_not_stop_the_service(make_service: ServiceFactory) -> None:
    class Broken(Events):
        async def task_accepted(self, task: Task, position: int | None) -> None:
            raise RuntimeError("boom")

        async def task_progress(self, *args: Any) -> None:
            raise RuntimeError("boom")

    events = Broken()
    service = await make_service(events)
    ids = [(await service.enqueue(request(), limits=OPEN)).id for _ in range(3)]
    await wait_for(lambda: events.settled(ids))
    assert set(events.delivered) == set(ids)


# Polling


async def test_batch_polling_when_available(
    emu: EmulatorServer, make_service: ServiceFactory
) -> None:
    events = Events()
    service = await make_service(events, account_concurrency=4)
    ids = [(await service.enqueue(request(user=n), limits=OPEN)).id for n in range(4)]
    await wait_for(lambda: events.settled(ids))
    assert emu.state.calls["task_results"] > 0 and emu.state.calls["task_result"] == 0


async def test_falls_back_to_single_polls_without_batch(
    emu: EmulatorServer, client: V1bClient, make_service: ServiceFactory
) -> None:
    emu.state.settings.faults.batch_enabled = False
    events = Events()
    service = await make_service(events, account_concurrency=4)
    ids = [(await service.enqueue(request(user=n), limits=OPEN)).id for n in range(4)]
    await wait_for(lambda: events.settled(ids))
    assert set(events.delivered) == set(ids)
    assert emu.state.calls["task_result"] >= len(ids)
    assert client.batch_supported is False


async def test_use_batch_false_polls_one_by_one(
    emu: EmulatorServer, make_service: ServiceFactory
) -> None:
    events = Events()
    service = await make_service(events, use_batch=False)
    task = await service.enqueue(request(), limits=OPEN)
    await wait_for(lambda: events.settled([task.id]))
    assert emu.state.calls["task_results"] == 0 and emu.state.calls["task_result"] >= 1


async def test_one_poll_loop_for_many_tasks(
    emu: EmulatorServer, store: Store, make_service: ServiceFactory
) -> None:
    emu.state.settings.generation_time = 60.0
    events = Events()
    service = await make_service(events, account_concurrency=100, strategy=FixedInterval(0.05))
    for n in range(100):
        await service.enqueue(request(user=n), limits=OPEN)
    await wait_for(lambda: len(service.poller) == 100)

    def job_tasks() -> int:
        return sum(
            1
            for t in asyncio.all_tasks()
            if t.get_coro().cr_code.co_filename.startswith(str(Path("bot/jobs").resolve()))
        )

    samples = []
    for _ in range(40):
        samples.append(job_tasks())
        await asyncio.sleep(0.01)
    assert max(samples) <= 4  # dispatcher, poller, delivery loop and one account's poll group
    assert len(await store.tasks.list_by_state(TaskState.SUBMITTED)) == 100


@pytest.mark.slow
async def test_adaptive_polls_less_than_fixed(
    emu: EmulatorServer, make_service: ServiceFactory
) -> None:
    emu.state.settings.generation_time = 0.6
    calls = {}
    for name, strategy in {
        "fixed": FixedInterval(0.25),
        "adaptive": AdaptiveInterval(base_seconds=0.6, lag_budget=0.25, dense=0.08),
    }.items():
        before = emu.state.calls["task_result"]
        events = Events()
        service = await make_service(
            events, account_concurrency=4, use_batch=False, strategy=strategy
        )
        ids = [(await service.enqueue(request(user=n), limits=OPEN)).id for n in range(8)]
        await wait_for(lambda ids=ids, events=events: events.settled(ids))
        calls[name] = emu.state.calls["task_result"] - before
        assert set(events.delivered) == set(ids)
        await service.stop()
    assert calls["adaptive"] < calls["fixed"] * 0.75


def simulate(strategy: Any, durations: list[float]) -> tuple[float, float]:
    """Poll synthetic tasks one after another; return (polls per task, p95 delivery lag)."""
    calls, lags = 0, []
    recheck = getattr(strategy, "recheck", lambda task, elapsed: None)
    for n, duration in enumerate(durations):
        task = SimpleNamespace(id=n, size="512x512", count=1)
        at = strategy.next_interval(task, None, 0, 0.0)
        polls = 0
        while True:
            if (later := recheck(task, at)) is not None:  # as the poller: no call
                at += later
                continue
            calls += 1
            if at >= duration:
                strategy.completed(task, at)
                lags.append(at - duration)
                break
            polls += 1
            at += strategy.next_interval(task, 0, polls, at)
    lags.sort()
    return calls / len(durations), lags[int(0.95 * len(lags))]


@pytest.mark.parametrize(("mean", "prior"), [(3.0, 3.0), (6.0, 3.0), (12.0, 3.0), (3.0, 6.0)])
def test_adaptive_meets_the_benchmark_targets(mean: float, prior: float) -> None:
    rng = random.Random(7)
    durations = [mean * rng.uniform(0.8, 1.2) for _ in range(300)]
    fixed_calls, fixed_lag = simulate(FixedInterval(1.0), durations)
    calls, lag = simulate(AdaptiveInterval(base_seconds=prior), durations)
    assert calls <= fixed_calls / 3 + 0.05
    assert lag <= fixed_lag + 0.5


def test_make_strategy() -> None:
    assert isinstance(make_strategy("fixed", seconds=2.0), FixedInterval)
    assert isinstance(make_strategy("adaptive"), AdaptiveInterval)
    with pytest.raises(ValueError, match="unknown"):
        make_strategy("psychic")


# Admission


async def test_admission_refusals(make_service: ServiceFactory) -> None:
    service = await make_service(Events(), start=False)
    with pytest.raises(ChannelNotAllowed) as refused:
        await service.enqueue(request(), limits=Limits(allowed_channels=frozenset({99})))
    assert refused.value.reason == "channel_not_allowed"
    with pytest.raises(BlockedWord) as refused:
        await service.enqueue(request(prompt="A Dragon"), limits=Limits(blocked_words=["dragon"]))
    assert refused.value.params == {"word": "dragon"}
    with pytest.raises(PromptTooLong) as refused:
        await service.enqueue(request(prompt="x" * 11), limits=Limits(prompt_length=10))
    assert refused.value.params == {"length": 11, "limit": 10}
    with pytest.raises(NoAccount) as refused:
        await service.enqueue(request(guild=NO_ACCOUNT_GUILD), limits=OPEN)
    assert refused.value.reason == "no_account"
    one = Limits(user_running=1, user_queued=0)  # no waiting line: the old single limit
    await service.enqueue(request(), limits=one)
    with pytest.raises(UserBusy) as refused:
        await service.enqueue(request(), limits=one)
    assert refused.value.params == {"count": 1}
    await service.enqueue(request(user=2), limits=one)  # another user is not affected
    line = Limits(user_running=1, user_queued=2)  # user 2 has one task already
    await service.enqueue(request(user=2), limits=line)
    await service.enqueue(request(user=2), limits=line)
    with pytest.raises(QueueFull) as refused:
        await service.enqueue(request(user=2), limits=line)
    assert refused.value.params == {"count": 2, "running": 1}


async def test_each_admission_refusal_is_reported_once(make_service: ServiceFactory) -> None:
    events = Events()
    service = await make_service(events, start=False)
    with pytest.raises(BlockedWord):
        await service.enqueue(request(prompt="A Dragon"), limits=Limits(blocked_words=["dragon"]))
    one = Limits(user_running=1, user_queued=0)
    await service.enqueue(request(user=5), limits=one)
    with pytest.raises(UserBusy):
        await service.enqueue(request(user=5), limits=one)
    assert events.refused == [(1, "blocked_word"), (5, "user_busy")]


async def test_quota_race_admits_exactly_the_quota(
    store: Store, make_service: ServiceFactory
) -> None:
    service = await make_service(Events(), start=False)
    limits = Limits(user_running=None, daily_quota=3)
    results = await asyncio.gather(
        *(service.enqueue(request(), limits=limits) for _ in range(10)), return_exceptions=True
    )
    refusals = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refusals) == 7 and sum(isinstance(r, Task) for r in results) == 3
    assert refusals[0].params["count"] == 3
    assert refusals[0].params["resets_at"] > time.time()
    day = admission.utc_day(time.time())
    assert await store.usage.get(GUILD, 1, day) == 3


async def test_a_full_line_is_refused_before_the_quota_and_charges_nothing(
    store: Store, make_service: ServiceFactory
) -> None:
    service = await make_service(Events(), start=False)  # tasks stay queued
    limits = Limits(user_running=1, user_queued=1, daily_quota=3)
    day = admission.utc_day(time.time())
    await service.enqueue(request(), limits=limits)
    await service.enqueue(request(), limits=limits)
    with pytest.raises(QueueFull):
        await service.enqueue(request(), limits=limits)
    with pytest.raises(QueueFull):  # over the quota too: the line is what is said
        await service.enqueue(request(count=2), limits=limits)
    assert await store.usage.get(GUILD, 1, day) == 2  # the refused requests cost nothing
    with pytest.raises(QuotaExceeded):  # room in the line, not in the quota
        await service.enqueue(request(user=2, count=4), limits=limits)
    assert await store.usage.get(GUILD, 2, day) == 0
    await service.enqueue(request(user=2, count=3), limits=limits)
    assert await store.usage.get(GUILD, 2, day) == 3


async def test_quota_counter_is_atomic_without_locks(store: Store) -> None:
    limits = Limits(daily_quota=5)
    outcomes = await asyncio.gather(
        *(admission.take_quota(store, request(user=7), limits, now=time.time()) for _ in range(20)),
        return_exceptions=True,
    )
    assert sum(isinstance(o, str) for o in outcomes) == 5
    assert await store.usage.get(GUILD, 7, admission.utc_day(time.time())) == 5


def test_blocked_words_match_substrings_case_insensitively() -> None:
    assert admission.find_blocked_word("Concatenate", ["CAT"]) == "CAT"
    assert admission.find_blocked_word("a dog", ["cat", " "]) is None


def test_next_utc_midnight() -> None:
    noon = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
    assert admission.utc_day(noon) == "2023-11-14"
    assert admission.next_utc_midnight(noon) == 1_700_006_400.0


# Pure parts


def fake_task(task_id: int, user: int) -> Any:
    return SimpleNamespace(id=task_id, user_id=user)


def test_guild_queue_round_robin_and_push_front() -> None:
    queue = GuildQueue()
    for task_id, user in [(1, 1), (2, 1), (3, 1), (4, 2), (5, 3), (6, 2)]:
        queue.push(fake_task(task_id, user))
    assert [t.id for t in queue.order()] == [1, 4, 5, 2, 6, 3]
    first = queue.pop()
    assert first is not None and first.id == 1
    queue.push_front(first)  # back where it was: same order as before
    assert [t.id for t in queue.order()] == [1, 4, 5, 2, 6, 3]
    assert queue.remove(5) is not None and queue.remove(5) is None
    assert queue.positions() == {1: 1, 4: 2, 2: 3, 6: 4, 3: 5}
    assert [queue.pop().id for _ in range(len(queue))] == [1, 4, 2, 6, 3]  # type: ignore[union-attr]


def test_guild_queue_passes_over_users_not_ready_who_keep_their_turn() -> None:
    queue = GuildQueue()
    for task_id, user in [(1, 1), (2, 1), (3, 2), (4, 3)]:
        queue.push(fake_task(task_id, user))
    taken = queue.pop(lambda user: user != 1)
    assert taken is not None and taken.id == 3  # user 1 is passed over, user 2 is not held up
    assert [t.id for t in queue.order()] == [1, 4, 2]  # user 1 is still first in turn
    assert queue.pop(lambda user: False) is None
    assert len(queue) == 3
    assert [queue.pop().id for _ in range(3)] == [1, 4, 2]  # type: ignore[union-attr]


def test_timer_heap_reschedule_and_discard() -> None:
    heap = TimerHeap()
    heap.schedule(1, 5.0)
    heap.schedule(2, 1.0)
    heap.schedule(1, 0.5)
    heap.schedule(3, 2.0)
    heap.discard(3)
    assert heap.next_due() == 0.5 and len(heap) == 2
    assert heap.pop_due(1.0) == [1, 2]
    assert heap.next_due() is None


async def test_quota_counts_images_and_refunds_them(store: Store) -> None:
    limits = Limits(daily_quota=5)
    now = time.time()
    day = await admission.take_quota(store, request(user=8, count=4), limits, now=now)
    with pytest.raises(QuotaExceeded):
        await admission.take_quota(store, request(user=8, count=2), limits, now=now)
    assert await store.usage.get(GUILD, 8, day) == 4
    await admission.take_quota(store, request(user=8, count=1), limits, now=now)
    await admission.refund_quota(store, request(user=8, count=4), day)
    assert await store.usage.get(GUILD, 8, day) == 1


async def test_other_services_poll_on_the_same_loop_with_their_own_interval(
    make_service: ServiceFactory,
) -> None:
    service = await make_service(Events())
    runs: list[int] = []
    first_may_end = asyncio.Event()
    blocked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cancelled = asyncio.Event()

    async def poll_round() -> None:
        runs.append(len(runs) + 1)
        if len(runs) == 1:
            await first_may_end.wait()
        elif len(runs) == 3:
            try:
                await blocked  # never resolved: only cancel() ends this run
            except asyncio.CancelledError:
                cancelled.set()
                raise

    # An hour-long interval: every run after the first one here comes from a wake.
    service.poller.every("other", 3600.0, poll_round)
    await wait_for(lambda: runs == [1])
    service.poller.wake("other")  # woken while running: runs again as soon as it ends
    first_may_end.set()
    await wait_for(lambda: runs == [1, 2])
    service.poller.wake("other")
    await wait_for(lambda: runs == [1, 2, 3])
    await service.poller.cancel("other")
    assert cancelled.is_set()
    assert service.memory_sizes()["poll_timers"] == 0  # rounds are not counted as tasks
