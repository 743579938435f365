"""The offline polling simulator (bench/polling_sim.py) and what it shows of the strategies."""

from __future__ import annotations

from collections import defaultdict
from itertools import pairwise

import pytest

from bench.polling_sim import ACCOUNT_RATE, Simulation, Workload, median_outcome, where
from bench.run import Workload as BenchWorkload
from bot.jobs.polling import FixedInterval


def test_the_fixed_strategies_poll_as_the_interval_says() -> None:
    work = Workload(tasks=200)
    one, _ = median_outcome(work, "fixed-1s", [1])
    five, _ = median_outcome(work, "fixed-5s", [1])
    oracle, _ = median_outcome(work, "oracle", [1])
    assert one.seen_p95 == pytest.approx(1.0, abs=0.05)  # found within a second
    assert five.seen_p95 == pytest.approx(5.0, abs=0.3)
    assert oracle.polls_per_task == 1.0
    assert five.polls_per_task < one.polls_per_task / 3


def test_a_seed_replays_the_commands_the_bench_plans_with_it() -> None:
    # Seed 7 is the bench's own workload: the same sizes and image counts on the same servers.
    plan = BenchWorkload(100, 50, 100, 50.0, 2.0, 48, seed=7)
    plan.plan()
    sim = Simulation(Workload(tasks=100), 7, None)
    assert [(t.guild, t.size, t.count) for t in sim.tasks] == [
        (c["guild"], c["size"], c["count"]) for c in plan.commands
    ]


def test_an_accounts_calls_wait_for_its_rate_limit() -> None:
    # Polls asked for every 50 ms and the submissions after them share one account's
    # bucket: the calls go out 1 / requests_per_second apart, as the bot's client sends them.
    sim = Simulation(Workload(tasks=6, guilds=1), 7, lambda clock: FixedInterval(0.05))
    tasks = sim.run()
    assert all(t.seen is not None for t in tasks)
    times = sorted(at for _, at in sim.sent)
    assert len(times) > 20
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert min(gaps) >= 1 / ACCOUNT_RATE - 1e-9
    per_account: defaultdict[int, int] = defaultdict(int)
    for account, _ in sim.sent:
        per_account[account] += 1
    assert list(per_account) == [0]


def test_adaptive_meets_the_polling_targets_on_the_bench_workload() -> None:
    # Issue 14's targets, on the median of three runs (seed 7 is the bench's own workload):
    # at most a third of fixed-1s's calls and fewer than fixed-5s's, by a margin that a
    # real run's noise keeps, with the seen p95 within 0.5 s of fixed-1s's (0.45 here).
    work, seeds = Workload(), [7, 8, 9]
    adaptive, _ = median_outcome(work, "adaptive", seeds)
    one, _ = median_outcome(work, "fixed-1s", seeds)
    five, _ = median_outcome(work, "fixed-5s", seeds)
    assert adaptive.polls_per_task <= one.polls_per_task / 3
    assert adaptive.polls_per_task <= five.polls_per_task - 0.15
    assert adaptive.seen_p95 <= one.seen_p95 + 0.45
    assert adaptive.seen_p95 < five.seen_p95


@pytest.mark.slow
@pytest.mark.parametrize(
    "work",
    [
        Workload(tasks=200),  # half the tasks in the first burst, before anything is learned
        Workload(generation_time=3.0),  # a slower service
        Workload(generation_time=1.5),  # a faster one: fixed 5 s finds most done at once
        Workload(prior=1.0),  # a prior three times too fast
    ],
    ids=["200-tasks", "slower", "faster", "fast-prior"],
)
def test_adaptive_polls_less_than_fixed_5s_at_fixed_1s_lag_on_other_workloads(
    work: Workload,
) -> None:
    seeds = [7, 8, 9]
    adaptive, _ = median_outcome(work, "adaptive", seeds)
    one, _ = median_outcome(work, "fixed-1s", seeds)
    five, _ = median_outcome(work, "fixed-5s", seeds)
    assert adaptive.polls_per_task < five.polls_per_task
    assert adaptive.seen_p95 <= one.seen_p95 + 0.5


def test_where_the_polls_go_adds_up_to_the_calls() -> None:
    # One call per poll of one task (no batch): the groups' polls are all the calls, and
    # the first burst is the 100 tasks the 50 servers' two slots take at once.
    work = Workload(tasks=300)
    sim = Simulation(work, 7, lambda clock: FixedInterval(1.0))
    tasks = sim.run()
    groups = where(tasks, 100)
    first = sorted(tasks, key=lambda t: t.submitted_at or 0.0)[:100]
    assert groups["first burst"] == sum(t.polls + 1 for t in first) / 100
    later = [t for t in tasks if t not in first]
    queued = [t for t in later if t.start - (t.submitted_at or 0.0) > 0.05]
    total = groups["first burst"] * 100 + groups["queued"] * len(queued)
    total += groups.get("not queued", 0.0) * (len(later) - len(queued))
    assert total == pytest.approx(sim.calls)
