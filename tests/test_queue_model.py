"""The service-queue model behind adaptive polling, and the decisions it drives (fake clock)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from bot.jobs.polling import AdaptiveInterval
from bot.jobs.queue_model import QueueModel


def test_a_new_task_inherits_the_newest_sighting_counted_down_and_up() -> None:
    model = QueueModel(drain_prior=1.0)
    seqs = [model.submitted() for _ in range(10)]
    model.seen_queued(seqs[4], 20, now=1.0)  # task 5: 20 ahead
    model.seen_queued(seqs[9], 21, now=3.0)  # task 10: 25 would be ahead without a drain
    assert model.drain == pytest.approx(2.0)  # 4 tasks left the queue in 2 s
    new = model.submitted()
    # 21 ahead of task 10, task 10 itself, minus 1 s of draining at 2 tasks/s.
    assert model.ahead(new, now=4.0) == pytest.approx(20.0)
    # It starts once fewer than 20 are ahead (task 5 was queued with 20: no start at 20).
    assert model.slots == 20
    assert model.wait_for(new, now=4.0) == pytest.approx(0.5)
    assert model.wait_for(new, now=20.0) == 0.0


def test_the_start_threshold_is_learned_from_bracketed_starts() -> None:
    model = QueueModel(drain_prior=2.0, learning_rate=0.5)
    seq = model.submitted()
    model.seen_queued(seq, 30, now=0.0)
    assert model.slots == 30  # the most it can be, before any start is seen
    # It started 5 s later: at 2 tasks/s, 20 were still ahead then (so it starts under 21).
    model.started(30, seen_at=0.0, started_at=5.0)
    assert model.slots == pytest.approx(30 + 0.5 * (21 - 30))
    # A task that has to wait for 30 ahead, 21 of which let it start: 5 s at 2 tasks/s.
    model.slots = 21.0
    assert model.wait(30) == pytest.approx(5.0)


def test_a_task_seen_running_early_pulls_the_queue_estimate_down() -> None:
    model = QueueModel(drain_prior=1.0)
    first, second = model.submitted(), model.submitted()
    model.seen_queued(first, 10, now=0.0)
    assert model.ahead(second, now=1.0) == pytest.approx(10.0)
    model.seen_running(second, now=1.0)  # it runs: fewer than 10 were ahead of it
    assert model.ahead(second, now=1.0) == pytest.approx(9.0)
    later = model.submitted()
    assert model.ahead(later, now=1.0) == pytest.approx(10.0)


def test_nothing_seen_queued_means_no_predicted_wait() -> None:
    model = QueueModel(drain_prior=1.0)
    assert not model.learned
    assert model.wait_for(model.submitted(), now=5.0) == 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def task(n: int) -> SimpleNamespace:
    return SimpleNamespace(id=n, size="512x512", count=1)


def test_a_new_tasks_first_poll_waits_for_the_queue_the_newest_task_reported() -> None:
    clock = Clock()
    strategy = AdaptiveInterval(
        base_seconds=2.0, workers=4, max_interval=30.0, warm_after=0, clock=clock
    )
    idle = strategy.next_interval(task(1), None, 0, 0.0)  # nothing known about a queue
    assert idle == pytest.approx(2.0 * 0.8 + 0.9 * 0.8)  # earliest finish + 0.9 of its range
    for n in range(2, 12):
        strategy.next_interval(task(n), None, 0, 0.0)
    clock.now = 1.0
    strategy.next_interval(task(6), 20, 1, 1.0)  # task 6: 20 ahead
    clock.now = 3.0
    strategy.next_interval(task(11), 21, 1, 3.0)  # task 11: 21 ahead, so 2 tasks/s drain
    assert strategy.queue.drain == pytest.approx(2.0)
    strategy.queue.slots = 5.0  # as if learned: a task starts once fewer than 5 are ahead
    clock.now = 4.0
    queued = strategy.next_interval(task(12), None, 0, 0.0)
    # 20 ahead of it now (see above); 16 must leave first, 8 s at 2 tasks/s.
    assert queued == pytest.approx(idle + 8.0)


def test_a_queued_task_aims_at_its_finish_when_it_starts_soon() -> None:
    clock = Clock()
    strategy = AdaptiveInterval(
        base_seconds=4.0, workers=4, max_interval=10.0, warm_after=0, clock=clock
    )
    strategy.next_interval(task(1), None, 0, 0.0)
    clock.now = 1.0
    # First sighting of any queue: 20 ahead is the most a start allows, so it starts soon
    # (by the prior drain, 4 runs of 4 s at a time, 1 task/s): aim at the finish.
    aimed = strategy.next_interval(task(1), 20, 1, 1.0)
    assert aimed == pytest.approx(1.0 + 4.0 * 0.8 + 1.2)
    # Seen running at 6.4 s, after 5.4 s of which about 2.7 had passed at the start: with
    # 20 ahead when seen and 1 task/s, about 17 were still ahead when it started.
    clock.now = 6.4
    strategy.next_interval(task(1), 0, 2, 6.4)
    assert strategy.queue.slots == pytest.approx(20 + 0.3 * (18.3 - 20))
    # A long queue: look again when it should be about to start, at most 10 s on.
    clock.now = 7.0
    assert strategy.next_interval(task(2), 60, 1, 7.0) == 10.0


def test_a_run_shorter_than_thought_is_learned_after_a_predicted_queue_wait() -> None:
    clock = Clock()
    strategy = AdaptiveInterval(
        base_seconds=2.0, workers=4, max_interval=30.0, warm_after=0, clock=clock
    )
    for n in range(1, 11):
        strategy.next_interval(task(n), None, 0, 0.0)
    strategy.next_interval(task(10), 30, 1, 0.0)  # 30 ahead of the newest task
    strategy.queue.slots = 11.0  # a task starts once fewer than 11 are ahead
    clock.now = 1.0
    first = strategy.next_interval(task(11), None, 0, 0.0)
    # No drain measured: 11 at work, 2 s each, 5.5 tasks/s. 31 ahead of it less 1 s of
    # that leaves 25.5, of which 15.5 must go before it starts.
    assert first == pytest.approx(15.5 / 5.5 + 1.6 + 0.72)
    # Found done at that first poll: it started no earlier than predicted, so its run took
    # at most 1.32 s, though 1.6 s was thought the shortest possible.
    strategy.completed(task(11), first - 1.0)
    # Learned (at rate 0.3, in log terms) towards 1.32 s, not just nudged by one early find.
    assert strategy.expected(task(12)) <= 2.0 * (1.32 / 2.0) ** 0.3


def test_before_any_task_is_found_done_the_first_polls_hedge_the_prior() -> None:
    strategy = AdaptiveInterval(base_seconds=3.0, spread=0.2, cold_spread=0.5, warm_after=2)
    # Only the prior (3 s) is known: a run of 1.5 to 4.5 s; look 1.2 s into that range.
    assert strategy.next_interval(task(1), None, 0, 0.0) == pytest.approx(1.5 + 1.2)
    strategy.next_interval(task(2), None, 0, 0.0)
    strategy.completed(task(1), 2.7)
    strategy.completed(task(2), 2.7)
    # Warm: the learned run time within its own +-20 %.
    run = strategy.expected(task(3))
    first = strategy.next_interval(task(3), None, 0, 0.0)
    assert first == pytest.approx(run * 0.8 + min(0.9, 1.2 / (0.4 * run)) * 0.4 * run)


def test_before_a_drain_is_measured_it_is_the_start_threshold_over_a_run() -> None:
    model = QueueModel(drain_prior=1.0)
    model.typical_run(4.0)
    assert model.drain == 1.0  # no threshold known yet: the prior stands
    model.seen_queued(model.submitted(), 48, now=0.0)
    model.typical_run(4.0)
    assert model.drain == pytest.approx(12.0)  # 48 at work, 4 s each
    model.seen_queued(model.submitted(), 45, now=1.0)  # 4 left in 1 s: measured
    model.typical_run(2.0)
    assert model.drain == pytest.approx(4.0)
