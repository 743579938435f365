"""The bot's services start in one order and stop in the reverse one, whatever fails."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.app import cog_modules
from bot.lifecycle import Lifecycle, ShuttingDown, Step, nothing

# What a running bot has started, in start order (the cogs come last: commands go first).
SERVICES = ["store", "v1b", "accounts", "forms", "delivery", "loop lag", "generation", "training"]
STARTED = [*SERVICES, "housekeeping", "form warm-up", *cog_modules()]


def stopped_order(records: list[logging.LogRecord]) -> list[str]:
    return [
        str(r.args[0]) if isinstance(r.args, tuple) else ""
        for r in records
        if r.name == "bot.lifecycle" and r.msg == "stopped %s"
    ]


async def test_shutdown_stops_every_service_in_reverse_start_order(harness, caplog) -> None:
    bot = harness.bot
    assert bot.lifecycle.started == STARTED
    caplog.set_level(logging.DEBUG, logger="bot.lifecycle")
    await harness.stop()
    assert stopped_order(caplog.records) == STARTED[::-1]
    assert bot.lifecycle.started == []
    assert bot.is_closed()
    with pytest.raises(ValueError, match="Connection closed"):
        await bot.store.settings.languages()


async def test_a_failing_stop_still_closes_the_database_and_disconnects(harness, caplog) -> None:
    bot = harness.bot

    async def fail() -> None:
        raise RuntimeError("flush failed")

    await bot.lifecycle.start(Step("flaky", nothing, fail))
    caplog.set_level(logging.DEBUG, logger="bot.lifecycle")
    await harness.stop()
    failed = [r for r in caplog.records if r.getMessage() == "stopping flaky failed"]
    assert len(failed) == 1 and failed[0].exc_info is not None
    harness.check.ignore(lambda r: r.getMessage() == "stopping flaky failed")
    # Every service started before the failing one was still stopped, the store included.
    assert stopped_order(caplog.records) == STARTED[::-1]
    assert bot.is_closed()
    with pytest.raises(ValueError, match="Connection closed"):
        await bot.store.settings.languages()


async def test_close_twice_stops_each_service_once(harness, caplog) -> None:
    bot = harness.bot
    caplog.set_level(logging.DEBUG, logger="bot.lifecycle")
    await bot.close()
    await harness.stop()  # closes again, as SIGTERM after an error would
    assert stopped_order(caplog.records) == STARTED[::-1]


# The lifecycle on its own.


class Journal:
    """Steps that write what they do into one list."""

    def __init__(self) -> None:
        self.done: list[str] = []

    def step(self, name: str, *, fail_start: bool = False, fail_stop: bool = False) -> Step:
        async def start() -> None:
            if fail_start:
                raise RuntimeError(f"{name} cannot start")
            self.done.append(f"start {name}")

        async def stop() -> None:
            self.done.append(f"stop {name}")
            if fail_stop:
                raise RuntimeError(f"{name} cannot stop")

        return Step(name, start, stop)


async def test_steps_stop_in_reverse_order_and_a_failed_stop_does_not_skip_the_rest(
    caplog,
) -> None:
    journal, lifecycle = Journal(), Lifecycle()
    for name in ("a", "b", "c"):
        await lifecycle.start(journal.step(name, fail_stop=name == "b"))
    await lifecycle.stop()
    assert journal.done == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "stopping b failed"
    ]
    await lifecycle.stop()  # nothing left to stop
    assert journal.done[-1] == "stop a"


async def test_a_step_that_failed_to_start_is_not_stopped_but_earlier_ones_are() -> None:
    journal, lifecycle = Journal(), Lifecycle()
    await lifecycle.start(journal.step("a"))
    with pytest.raises(RuntimeError, match="b cannot start"):
        await lifecycle.start(journal.step("b", fail_start=True))
    assert lifecycle.started == ["a"]
    await lifecycle.stop()
    assert journal.done == ["start a", "stop a"]


async def test_a_step_cannot_be_started_twice() -> None:
    journal, lifecycle = Journal(), Lifecycle()
    await lifecycle.start(journal.step("a"))
    with pytest.raises(ValueError, match="a is already started"):
        await lifecycle.start(journal.step("a"))
    assert journal.done == ["start a"]


async def test_nothing_starts_once_stopping_began_and_a_start_in_flight_is_undone() -> None:
    journal, lifecycle = Journal(), Lifecycle()
    await lifecycle.start(journal.step("a"))
    release = asyncio.Event()
    entered = asyncio.Event()

    async def slow_start() -> None:
        entered.set()
        await release.wait()
        journal.done.append("start slow")

    async def slow_stop() -> None:
        journal.done.append("stop slow")

    starting = asyncio.create_task(lifecycle.start(Step("slow", slow_start, slow_stop)))
    await entered.wait()
    await lifecycle.stop()  # a signal while the bot is still starting
    release.set()
    with pytest.raises(ShuttingDown, match="not starting slow"):
        await starting
    with pytest.raises(ShuttingDown, match="not starting b"):
        await lifecycle.start(journal.step("b"))
    assert journal.done == ["start a", "stop a", "start slow", "stop slow"]
    assert lifecycle.started == []
