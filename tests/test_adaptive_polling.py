"""Adaptive polling through the real bot: the poller asks the strategy again as a poll falls
due, and a poll put off then costs no call to the service."""

from __future__ import annotations

from bot.jobs.polling import AdaptiveInterval
from bot.store import Task
from tests.genutil import imagine, task_id_of, wait_result
from tests.helpers import answer_text


async def test_a_due_poll_the_strategy_puts_off_calls_nothing(harness_factory):
    # The prior (2 s) is four times the service's speed: the first poll is aimed late, and
    # the strategy looks again halfway there, without asking the service.
    h = await harness_factory(
        {"generation_time": 0.5},
        # One call per task and poll (on the batch beat a call costs per account: no re-check).
        miaohua={"poll_strategy": "adaptive", "expected_generation_time": 2.0, "use_batch": False},
    )
    strategy = h.bot.generation.poller.strategy
    assert isinstance(strategy, AdaptiveInterval)
    answers: list[float | None] = []
    ask = strategy.recheck

    def recheck(task: Task, elapsed: float) -> float | None:
        answers.append(later := ask(task, elapsed))
        return later

    strategy.recheck = recheck  # type: ignore[method-assign]
    before = h.emu.state.calls["task_result"]
    task_id = task_id_of(await answer_text(await imagine(h, count=1)))
    await wait_result(h, task_id)
    polls = h.emu.state.calls["task_result"] - before
    put_off = sum(later is not None for later in answers)
    assert put_off >= 1
    assert polls == len(answers) - put_off >= 1  # every other due poll was made
