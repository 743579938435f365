"""The throttled message editor shared by task status and training progress messages."""

from __future__ import annotations

import asyncio

import pytest

from bot.discord_jobs.throttle import ThrottledMessage


class Recorder:
    """A message that records what it was made to show; can refuse an edit."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.refuse: set[str] = set()
        self.changed = asyncio.Event()

    async def send(self, text: str) -> bool:
        self.sent.append(text)
        self.changed.set()
        return text not in self.refuse


async def test_sends_on_change_only_and_coalesces_changes_within_the_interval() -> None:
    now = [0.0]
    message = Recorder()
    throttled = ThrottledMessage(message.send, interval=10.0, clock=lambda: now[0])
    await throttled.update("a")
    await throttled.update("a")  # unchanged: nothing to send
    assert message.sent == ["a"]
    now[0] = 9.99  # the interval allows the next edit in 0.01 s
    await throttled.update("b")
    await throttled.update("c")
    assert message.sent == ["a"] and throttled.waiting
    message.changed.clear()
    await asyncio.wait_for(message.changed.wait(), 5)
    assert message.sent == ["a", "c"]  # one delayed edit, with the newest text


async def test_a_change_asking_a_longer_interval_is_held_until_a_change_due_sooner() -> None:
    now = [0.0]
    message = Recorder()
    throttled = ThrottledMessage(message.send, interval=0.01, clock=lambda: now[0])
    await throttled.update("place 3")
    now[0] = 1.0
    await throttled.update("place 2", interval=60.0)  # due at 60: held
    await throttled.update("place 1", interval=60.0)
    assert message.sent == ["place 3"] and throttled.waiting
    await throttled.update("started")  # due at 0.01, long past: sent now, the hold dropped
    assert message.sent == ["place 3", "started"] and not throttled.waiting
    now[0] = 1.001
    message.changed.clear()
    await throttled.update("started, 1 ahead", interval=60.0)
    await throttled.update("done")  # due 0.01 after the last send: brought forward
    await asyncio.wait_for(message.changed.wait(), 5)
    assert message.sent == ["place 3", "started", "done"] and not throttled.waiting


async def test_a_refused_edit_is_sent_again_with_the_next_update_and_flush_sends_now() -> None:
    now = [0.0]
    message = Recorder()
    message.refuse.add("a")
    throttled = ThrottledMessage(message.send, interval=10.0, clock=lambda: now[0])
    await throttled.update("a")
    now[0] = 20.0
    await throttled.update("a")  # not shown yet: tried again
    assert message.sent == ["a", "a"]
    message.refuse.clear()
    now[0] = 25.0
    await throttled.update("b")  # within the interval: held for later
    assert throttled.waiting
    await throttled.flush()
    assert message.sent == ["a", "a", "b"] and not throttled.waiting


async def test_flush_waits_for_a_delayed_edit_already_under_way() -> None:
    # At shutdown the status board flushes every message before discord.py closes its
    # session: a delayed edit that already fired and is waiting for Discord must be waited
    # for, not left running into the closed session.
    now = [0.0]
    release = asyncio.Event()
    under_way = asyncio.Event()
    sent: list[str] = []

    async def slow_send(text: str) -> bool:
        under_way.set()
        await release.wait()
        sent.append(text)
        return True

    throttled = ThrottledMessage(slow_send, interval=0.01, clock=lambda: now[0])
    throttled.sent("a")
    await throttled.update("b")  # within the interval: a delayed edit
    now[0] = 1.0
    await asyncio.wait_for(under_way.wait(), 5)  # it fired and is sending
    flushing = asyncio.create_task(throttled.flush())
    await asyncio.sleep(0.05)
    assert not flushing.done()  # still waiting for the edit under way
    release.set()
    await asyncio.wait_for(flushing, 5)
    assert sent == ["b"]


async def test_a_delayed_edit_builds_its_text_when_it_is_sent() -> None:
    now = [0.0]
    message = Recorder()
    state = {"elapsed": 0}

    async def text() -> str:
        return f"running for {state['elapsed']}s"

    throttled = ThrottledMessage(message.send, interval=10.0, clock=lambda: now[0])
    await throttled.update("queued")
    now[0] = 9.99
    state["elapsed"] = 1
    await throttled.update(text)
    message.changed.clear()
    state["elapsed"] = 7  # what the message shows is the state when the edit goes out
    await asyncio.wait_for(message.changed.wait(), 5)
    assert message.sent == ["queued", "running for 7s"]


class _StoppingHost:
    """A bot whose HTTP session is already closed, as during shutdown."""

    def __init__(self, closed: bool) -> None:
        self.closed = closed
        self.http = self

    def is_closed(self) -> bool:
        return self.closed

    async def edit_message(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("Session is closed")

    async def send_message(self, *args: object, **kwargs: object) -> None:
        raise RuntimeError("Session is closed")


async def test_a_status_edit_due_while_the_bot_stops_is_dropped_with_a_warning(caplog) -> None:
    from bot.discord_jobs.status import StatusBoard, _Entry

    entry = _Entry(
        channel_id=1, message_id=2, message=ThrottledMessage(Recorder().send, interval=1)
    )
    board = StatusBoard(_StoppingHost(closed=True))  # type: ignore[arg-type]
    assert await board._edit(7, entry, "done") is False
    await board._post(7, _Entry(channel_id=1, message_id=None, message=entry.message), "new")
    assert "the bot is stopping" in caplog.text
    # While the bot runs, the same error is a bug, not a shutdown: it is not swallowed.
    running = StatusBoard(_StoppingHost(closed=False))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        await running._edit(7, entry, "done")
