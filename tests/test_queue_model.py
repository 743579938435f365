"""The service-queue model behind adaptive polling, and the decisions it drives (fake clock)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest

from bot.jobs.polling import AdaptiveInterval
from bot.jobs.queue_model import QueueModel


def test_a_new_task_inherits_the_newest_sighting_counted_down_and_up() -> None:
    model = QueueModel(drain_prior=1.0, learning_rate=1.0)
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


def test_a_queue_that_stops_draining_makes_waits_long() -> None:
    model = QueueModel(drain_prior=10.0, learning_rate=0.5)
    seq = model.submitted()
    model.seen_queued(seq, 5000, now=0.0)
    model.seen_queued(seq, 5000, now=60.0)  # nothing left in a minute
    assert model.drain == pytest.approx(5.0)
    model.seen_queued(seq, 5000, now=120.0)
    assert model.drain == pytest.approx(2.5)
    assert model.wait_for(seq, now=120.0) == pytest.approx(1.0 / 2.5)  # slots: 5000
    assert model.wait_for(model.submitted(), now=120.0) == pytest.approx(2.0 / 2.5)


def test_a_started_task_is_dated_back_on_the_newest_sighting() -> None:
    model = QueueModel(drain_prior=2.0)
    first, second, third = model.submitted(), model.submitted(), model.submitted()
    assert model.start_at(first) is None  # no queue seen: no idea
    model.seen_queued(first, 4, now=10.0)  # starts with fewer than 4 ahead
    model.seen_queued(third, 6, now=10.0)  # the same moment: no drain measured
    # Task 2 had 5 ahead at 10 s: 2 must leave first, 1 s at 2 tasks/s.
    assert model.start_at(second) == pytest.approx(11.0)
    assert model.start_at(first) == pytest.approx(10.5)


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


def test_before_a_drain_is_measured_it_is_the_start_threshold_over_a_run() -> None:
    model = QueueModel(drain_prior=1.0)
    model.typical_run(4.0)
    assert model.drain == 1.0  # no threshold known yet: the prior stands
    model.seen_queued(model.submitted(), 48, now=0.0)
    assert model.drain == pytest.approx(12.0)  # 48 at work, 4 s each
    # Queued with 45 ahead: 45 at work (11.25 a second), and 4 left in 1 s: measured.
    model.seen_queued(model.submitted(), 45, now=1.0)
    measured = 11.25 + 0.3 * (4.0 - 11.25)
    assert model.drain == pytest.approx(measured)
    model.typical_run(2.0)  # no longer a guess from runs
    assert model.drain == pytest.approx(measured)


# The adaptive strategy on a fake clock. Tasks are submitted at clock 0 unless said, so
# that a task's elapsed time is the clock's.


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def task(n: int, size: str = "512x512", count: int = 1) -> SimpleNamespace:
    return SimpleNamespace(id=n, size=size, count=count)


def polled_at(strategy: AdaptiveInterval, clock: Clock, t: SimpleNamespace, delay: float) -> float:
    """When the poller calls the service for `t`, `delay` from now, asking the strategy
    again each time the poll falls due (a put-off poll calls nothing)."""
    clock.now += delay
    while (later := strategy.recheck(t, clock.now)) is not None:
        clock.now += later
    return clock.now


def test_a_new_tasks_first_poll_waits_for_the_queue_the_newest_task_reported() -> None:
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=2.0, warm_after=0, probe_every=1e9, clock=clock)
    for n in range(1, 11):
        strategy.next_interval(task(n), None, 0, 0.0)
    strategy.next_interval(task(10), 30, 1, 0.0)  # the newest task: 30 ahead
    strategy.queue.slots = 11.0  # a task starts once fewer than 11 are ahead
    new = task(11)
    delay = strategy.next_interval(new, None, 0, 0.0)
    # No drain measured yet: 11 at work, 2 s each, 5.5 a second. 31 ahead of it, 21 to
    # leave first: it starts at 3.82 s, give or take 0.05 s + a tenth of that; it runs 1.6
    # to 2.4 s. A start and a run both early are rare: the earliest 3 % of finishes come
    # within sqrt(2 * 0.03 * 0.8 * that start's spread) of the earliest possible one, and
    # the first poll the lag budget after them.
    start = 21 / 5.5
    margin = 0.05 + 0.1 * start
    earliest = start - margin + 1.6
    assert polled_at(strategy, clock, new, delay) == pytest.approx(
        earliest + math.sqrt(2 * 0.03 * 0.8 * 2 * margin) + strategy.lag_budget
    )


def test_a_due_poll_is_put_off_when_a_newer_sighting_shows_a_longer_queue() -> None:
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=2.0, warm_after=0, probe_every=1e9, clock=clock)
    strategy.queue = QueueModel(drain_prior=1.0, learning_rate=1.0)
    ahead_of, behind = task(1), task(2)
    strategy.next_interval(ahead_of, None, 0, 0.0)
    strategy.next_interval(ahead_of, 20, 1, 0.0)  # a queue: 20 ahead of it
    # 21 ahead of the next one; 20 at work, 2 s each: it starts at once, done by 2.67 s.
    due = strategy.next_interval(behind, None, 0, 0.0)
    clock.now = 1.0
    strategy.next_interval(ahead_of, 19, 2, 1.0)  # only one left in a second
    clock.now = due
    while (later := strategy.recheck(behind, clock.now)) is not None and clock.now < 2.67:
        clock.now += later  # the strategy looks again on the way
    # Due, the poll is put off: 20 ahead of it at 1 s, leaving at 1 a second, it starts
    # at 3 s and cannot be done before 4.6 s.
    assert later is not None
    assert polled_at(strategy, clock, behind, later) > 3.0 + 1.6


def test_while_tasks_queue_the_newest_is_polled_at_once_every_probe_interval() -> None:
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=2.0, probe_every=2.0, clock=clock)
    strategy.next_interval(task(1), None, 0, 0.0)
    strategy.next_interval(task(1), 50, 1, 0.0)  # a queue: seen at 0 s
    clock.now = 1.0
    assert strategy.next_interval(task(2), None, 0, 0.0) > 1.0  # the sighting is recent
    clock.now = 2.5
    probe = strategy.next_interval(task(3), None, 0, 0.0)
    assert probe == strategy.min_interval
    assert strategy.recheck(task(3), probe) is None  # a probe is never put off
    assert strategy.next_interval(task(4), None, 0, 0.0) > 1.0  # one probe at a time
    strategy.next_interval(task(3), 60, 1, probe)  # what it found
    assert strategy.queue.seen_at == 2.5


def test_the_run_time_is_learned_from_bracketed_runs_whatever_the_prior() -> None:
    # The service takes 2 s a 512x512 image where the prior said 3 (and the other way).
    for prior, truth in ((3.0, 2.0), (2.0, 3.0), (8.0, 2.0)):
        clock = Clock()
        strategy = AdaptiveInterval(base_seconds=prior, clock=clock)
        rng = random.Random(3)
        for n in range(60):
            t = task(n, size=rng.choice(["512x512", "768x768", "1024x1024"]))
            run = strategy.prior(t) / prior * truth * rng.uniform(0.8, 1.2)
            clock.now = 0.0
            at = polled_at(strategy, clock, t, strategy.next_interval(t, None, 0, 0))
            while at < run:
                at = polled_at(strategy, clock, t, strategy.next_interval(t, 0, 1, at))
            strategy.completed(t, at)
        assert strategy.expected(task(99)) == pytest.approx(truth, rel=0.06)


def test_a_task_behind_a_queue_that_does_not_drain_is_polled_about_once_a_minute() -> None:
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=3.0, long_interval=60.0, clock=clock)
    stuck = task(1)
    strategy.next_interval(stuck, 9000, 1, 0.0)  # reloaded after a restart: 9,000 ahead
    strategy.next_interval(task(2), 48, 1, 0.0)  # a task about to start: 48 ahead
    delays = []
    for minute in range(1, 6):
        clock.now = 60.0 * minute  # nothing moves
        delays.append(strategy.next_interval(stuck, 9000, 1 + minute, clock.now))
    assert delays[-1] == 60.0
    # One seen queued, then running a second later, is aimed at its finish, seconds away.
    clock.now = 301.0
    strategy.next_interval(task(2), 48, 2, clock.now)
    clock.now = 302.0
    assert strategy.next_interval(task(2), 0, 3, clock.now) < 5.0


def test_a_service_that_reports_no_queue_still_gets_polls_near_the_finish() -> None:
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=2.0, clock=clock)
    for n in range(30):
        t = task(n)
        clock.now = 0.0
        at = polled_at(strategy, clock, t, strategy.next_interval(t, None, 0, 0))
        polls = 1
        while at < 2.0:
            at = polled_at(strategy, clock, t, strategy.next_interval(t, None, polls, at))
            polls += 1
        strategy.completed(t, at)
        assert at - 2.0 <= strategy.lag_budget + 0.01
    assert polls <= 2


def test_a_run_far_longer_than_expected_is_polled_at_a_tenth_of_its_age() -> None:
    # A task found running after a restart, long past any expected finish (a service gone
    # slow): polled sparser as it ages, each poll a call (nothing to re-aim on the way).
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=3.0, long_interval=60.0, clock=clock)
    old = task(1)
    clock.now = 200.0
    delay = strategy.next_interval(old, 0, 5, 200.0)
    assert delay == pytest.approx(20.0, rel=0.01)
    assert strategy.recheck(old, 200.0 + delay) is None
    clock.now = 5000.0
    assert strategy.next_interval(old, 0, 6, 5000.0) == 60.0


def test_before_any_queue_the_newest_task_is_probed_each_time_a_quarter_more_are_out() -> None:
    # A burst of 50 submissions a second fills 48 workers, then queues. Probing the newest
    # task each time a quarter more are out finds the queue while it is short: how few
    # ahead still make a task wait is known nearly from the start, not from a sighting
    # seconds later with a hundred ahead.
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=2.0, clock=clock)
    probed = []
    for n in range(1, 61):
        clock.now = n * 0.02
        if strategy.next_interval(task(n), None, 0, 0.0) == strategy.min_interval:
            probed.append(n)
            # What the probe finds: running among the first 48, else queued behind them.
            strategy.next_interval(task(n), 0 if n <= 48 else n - 1, 1, 0.0)
    assert probed == [8, 10, 13, 17, 22, 28, 35, 44, 55]
    assert strategy.queue.slots == 54


def test_a_probed_task_found_queued_is_polled_again_halfway_to_its_possible_starts() -> None:
    # The fewest ahead a task showed while queued only bounds the start threshold from
    # above; the probed task is polled again when, on the line, it has half as many ahead:
    # still queued, it lowers the bound; running, it raises the lower one.
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=2.0, clock=clock)
    for n in range(1, 8):
        strategy.next_interval(task(n), None, 0, 0.0)
    probe = task(8)
    assert strategy.next_interval(probe, None, 0, 0.0) == strategy.min_interval
    clock.now = 0.05
    # 20 ahead: a task starts with fewer than 20 ahead; none measured, 10 leave a second
    # (20 at work, 2 s each): it has 10 ahead 1 s later.
    delay = strategy.next_interval(probe, 20, 1, 0.05)
    assert delay == pytest.approx(1.0)
    clock.now = 1.05
    assert strategy.recheck(probe, 1.05) is None  # made, not put off
    strategy.next_interval(probe, 12, 2, 1.05)  # still queued, 12 ahead
    assert strategy.queue.slots == 12


def test_a_far_off_poll_is_looked_at_again_halfway_there() -> None:
    # A first poll over 11 s off (a 12 s run, no queue): the strategy looks again halfway
    # there, with what it learned meanwhile, not only at `max_interval` (10 s).
    strategy = AdaptiveInterval(base_seconds=12.0, warm_after=0, clock=Clock())
    assert 5.0 < strategy.next_interval(task(1), None, 0, 0.0) < 6.0


def test_runs_found_done_at_once_move_the_run_time_into_what_they_allow() -> None:
    # Found done at its first poll, 3.6 s in, a 512x512 run took at most 1.2 times the
    # prior: every factor up to 1 fits it (the search reaches down to half the current).
    # The estimate moves into that range, not to its edge, so that the next polls come
    # early enough to bracket a run from both sides.
    strategy = AdaptiveInterval(base_seconds=3.0, warm_after=0, clock=Clock())
    strategy.next_interval(task(1), None, 0, 0.0)
    strategy.completed(task(1), 3.6)
    assert strategy.expected(task(9)) / 3.0 == pytest.approx(0.7, abs=0.05)


def test_a_probed_task_behind_a_long_queue_is_looked_at_again_within_a_minute() -> None:
    # Looking whether it still waits is due many minutes ahead: like any far-off poll, it
    # is looked at again (without a call) at most `long_interval` ahead, not at that time.
    clock = Clock()
    strategy = AdaptiveInterval(base_seconds=3.0, long_interval=60.0, clock=clock)
    for n in range(1, 8):
        strategy.next_interval(task(n), None, 0, 0.0)
    assert strategy.next_interval(task(8), None, 0, 0.0) == strategy.min_interval
    strategy.next_interval(task(8), 48, 1, 0.0)  # a task starts with under 48 ahead
    clock.now = 3.0
    late = task(9)
    assert strategy.next_interval(late, None, 0, 0.0) == strategy.min_interval
    # 9,000 ahead: 24 ahead (halfway to the lower bound, 0) only in over ten minutes.
    assert strategy.next_interval(late, 9000, 1, 0.0) == 60.0
    clock.now = 63.0
    assert strategy.recheck(late, 60.0) == 60.0
