"""The job layer's costs with many pending tasks: nothing per command or per restart that
reads every guild or every task. Real emulator over loopback (generating so slowly that no
task finishes here) and a real SQLite store, as in tests/test_jobs.py."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.emulator import EmulatorServer, EmulatorSettings
from bot.jobs import FixedInterval, GenerationService, Limits
from bot.jobs.queue import GuildQueue
from bot.jobs.service import task_params
from bot.store import Store, Task
from bot.v1b import V1bClient
from tests.test_jobs import EMAIL, PASSWORD, Events, Resolver, request, wait_for

OPEN = Limits(prompt_length=200, user_running=None)
GUILDS = list(range(100, 130))


@pytest.fixture
async def slow_emu() -> AsyncIterator[EmulatorServer]:
    settings = EmulatorSettings(accounts={EMAIL: PASSWORD}, generation_time=10_000.0, workers=1)
    async with EmulatorServer(settings) as server:
        yield server


@pytest.fixture
async def slow_client(slow_emu: EmulatorServer) -> AsyncIterator[V1bClient]:
    v1b = V1bClient(slow_emu.base_url, requests_per_second=1000, max_retries=0)
    yield v1b
    await v1b.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    db = await Store.open(tmp_path / "bot.db")
    yield db
    await db.close()


@pytest.fixture
async def service_factory(store: Store, slow_client: V1bClient) -> AsyncIterator[Any]:
    resolver = Resolver(slow_client, {g: (EMAIL, PASSWORD) for g in GUILDS})
    started: list[GenerationService] = []

    async def factory(events: Events, **kw: Any) -> GenerationService:
        options: dict[str, Any] = {"strategy": FixedInterval(600.0), "stop_grace": 1.0}
        options.update(kw)
        service = GenerationService(store, resolver, events, **options)
        started.append(service)
        await service.start()
        return service

    yield factory
    for service in started:
        await service.stop()


async def submitted_task(
    store: Store, client: V1bClient, n: int, *, record_wait: bool, guild: int | None = None
) -> Task:
    """A task really submitted to the emulator and stored as a running bot stores it; with
    `record_wait`, the wait the service reports is stored too (as its first poll does)."""
    guild = GUILDS[n % len(GUILDS)] if guild is None else guild
    task = await store.tasks.create(**request(guild=guild).task_fields())
    session = client.account(EMAIL, PASSWORD)
    service_id = await session.submit_task(task_params(task))
    await store.tasks.mark_submitted(task.id, service_id)
    if record_wait:
        result = await session.task_result(service_id)
        await store.tasks.record_progress(task.id, result.wait_time, None)
    return task


async def test_a_restart_spreads_the_first_polls_of_the_reloaded_tasks(
    store: Store, slow_client: V1bClient, service_factory: Any
) -> None:
    tasks = [await submitted_task(store, slow_client, n, record_wait=True) for n in range(60)]
    now = [1000.0]
    service: GenerationService = await service_factory(Events(), clock=lambda: now[0])
    # Read before the poll loop first runs: when each reloaded task is first due.
    due = sorted(service.poller._timers._due[t.id] for t in tasks)
    assert due[0] == now[0]
    # At most 21 in any tenth of a second (200 a second), not one wave of 60 at once.
    for first in range(len(due)):
        within = sum(1 for at in due[first:] if at < due[first] + 0.1)
        assert within <= 21, (first, within)
    rate = service.poller.reload_rate
    assert due[-1] - due[0] == pytest.approx((len(due) - 1) / rate)


async def test_a_restart_stores_and_shows_nothing_for_a_wait_that_has_not_changed(
    store: Store, slow_client: V1bClient, service_factory: Any
) -> None:
    guild = GUILDS[0]
    unchanged = [
        await submitted_task(store, slow_client, n, record_wait=True, guild=guild) for n in range(8)
    ]
    # Reloaded last (in id order; one guild's polls run one after another) with no wait
    # stored: its first poll after the restart is news, and comes after the others'.
    last = await submitted_task(store, slow_client, 8, record_wait=False, guild=guild)
    before = {t.id: (await store.tasks.get(t.id)) for t in unchanged}
    events = Events()
    await service_factory(events)
    await wait_for(lambda: any(task_id == last.id for task_id, _, _ in events.progress))
    assert [task_id for task_id, _, _ in events.progress] == [last.id]
    for task in unchanged:
        assert await store.tasks.get(task.id) == before[task.id], "a poll stored nothing new"


async def test_the_dispatcher_looks_only_at_the_guild_whose_queue_changed(
    service_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = Events()
    service: GenerationService = await service_factory(events, account_concurrency=1)
    # Every guild: one task at the service (its only slot) and one waiting behind it.
    for guild in GUILDS:
        for _ in range(2):
            await service.enqueue(request(guild=guild), limits=OPEN)
    await wait_for(lambda: service.in_flight()["running"] == len(GUILDS))
    assert service.in_flight()["queued"] == len(GUILDS)
    looked_at: Counter[int] = Counter()
    dispatch = service._dispatch_guild

    def spy(guild_id: int) -> None:
        looked_at[guild_id] += 1
        dispatch(guild_id)

    monkeypatch.setattr(service, "_dispatch_guild", spy)
    # The dispatcher's pass for the last guild's enqueue, if it has not run yet.
    service.set_user_running(GUILDS[-1], None)
    await wait_for(lambda: looked_at[GUILDS[-1]] >= 1)
    looked_at.clear()
    await service.enqueue(request(guild=GUILDS[0]), limits=OPEN)
    # Once at enqueue, once in the dispatcher's pass (which, before, visited every guild).
    await wait_for(lambda: looked_at[GUILDS[0]] >= 2)
    assert set(looked_at) == {GUILDS[0]}


async def test_a_task_s_queue_position_reads_only_its_guild_s_queue(
    service_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    service: GenerationService = await service_factory(Events(), account_concurrency=1)
    tasks = [
        await service.enqueue(request(guild=guild), limits=OPEN)
        for guild in GUILDS
        for _ in range(2)
    ]
    read: list[int] = []
    positions = GuildQueue.positions

    def spy(queue: GuildQueue) -> dict[int, int]:
        result = positions(queue)
        read.append(len(result))
        return result

    monkeypatch.setattr(GuildQueue, "positions", spy)
    waiting = tasks[-1]
    assert service.queue_position(waiting.id, waiting.guild_id) == 1
    assert len(read) == 1
    assert await service.cancel(waiting.id, waiting.guild_id)
    assert service.queue_position(waiting.id, waiting.guild_id) is None


async def test_polls_falling_due_together_start_a_few_per_pass_of_the_event_loop(
    store: Store, slow_client: V1bClient, service_factory: Any, monkeypatch: Any
) -> None:
    # Thirty guilds' tasks due at once started thirty poll groups in one pass of the loop:
    # their requests were all built and sent before a command's answer could go out.
    tasks = [await submitted_task(store, slow_client, n, record_wait=True) for n in range(30)]
    loop = asyncio.get_running_loop()
    passes = [0]
    ticking = [True]

    def tick() -> None:  # runs once per pass of the event loop
        passes[0] += 1
        if ticking[0]:
            loop.call_soon(tick)

    loop.call_soon(tick)
    now = [1000.0]
    service: GenerationService = await service_factory(Events(), clock=lambda: now[0])
    poller = service.poller
    started: list[int] = []
    poll_guild = poller._poll_guild

    async def stamped(guild_id: int, entries: Any) -> None:
        started.append(passes[0])
        await poll_guild(guild_id, entries)

    monkeypatch.setattr(poller, "_poll_guild", stamped)
    now[0] += 60.0  # before the poll loop first runs: every reloaded task is due
    try:
        await wait_for(lambda: len(started) == len(tasks))
    finally:
        ticking[0] = False
    per_pass = Counter(started)
    assert max(per_pass.values()) <= 10, per_pass  # the poller's launch_burst
    assert len(per_pass) >= 3
