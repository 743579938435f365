"""Learning the service's run-time factor (bot/jobs/run_factor.py): the totals kept as runs
come and go equal the sums afresh, and the factor chosen is the one the search over the
whole window chooses (a reference copy of that computation below)."""

from __future__ import annotations

import math
import random
from collections import deque
from types import SimpleNamespace

import pytest

from bot.jobs.polling import AdaptiveInterval
from bot.jobs.run_factor import IN_REACH, SCALE, STEP, RunFactor
from tests.genutil import imagine, task_id_of, wait_result
from tests.helpers import answer_text

SPREAD, OUTLIERS = 0.2, 0.02


def reference_log_likelihood(runs: deque[tuple[float, float]], factor: float) -> float:
    """A factor's log-likelihood, summed over every kept run (floats)."""
    low, high = factor * (1 - SPREAD), factor * (1 + SPREAD)
    score = 0.0
    for shortest, longest in runs:
        overlap = min(high, longest) - max(low, shortest)
        if overlap > 0:
            score += math.log(OUTLIERS + overlap / (high - low))
        else:
            miss = max(shortest / high, low / max(longest, 1e-9), 1.0)  # 1: touching
            score += math.log(OUTLIERS) - math.log(miss)
    return score


def reference_factor(runs: deque[tuple[float, float]], factor: float) -> float:
    """The search from `factor`, every candidate summed over the whole window: in strides
    of 8 % up to x2 either way, then of 2 %; of equally likely ones, the middle one."""
    best = factor
    for step, reach in ((0.08, 9), (0.02, 3)):
        centre = best
        scores = [
            (reference_log_likelihood(runs, centre * math.exp(step * k)), k)
            for k in range(-reach, reach + 1)
        ]
        top = max(score for score, _ in scores)
        tied = [k for score, k in scores if score >= top - 1e-9]
        best = centre * math.exp(step * tied[len(tied) // 2])
    return best


def random_runs(rng: random.Random, count: int) -> list[tuple[float, float]]:
    """Bracketed runs of a service whose speed wanders and jumps (x3 or /3): found done at
    once (bounded from above only), bracketed by two polls, and far outside the model."""
    runs, speed = [], 1.0
    for n in range(count):
        speed *= math.exp(rng.gauss(0, 0.03))
        if n % 100 == 99:
            speed *= rng.choice((3.0, 1 / 3))
        speed = min(max(speed, 0.05), 20.0)
        run = speed * rng.uniform(0.8, 1.2)
        kind = rng.random()
        if kind < 0.3:  # found done at its first poll
            runs.append((0.0, run + rng.uniform(0, 0.5 * speed)))
        elif kind < 0.95:  # not done at one poll, done at the next
            runs.append((max(0.0, run - rng.uniform(0, 0.3 * speed)), run + rng.uniform(0, 0.3)))
        elif kind < 0.97:  # a start guessed far too early: a run that looks very long
            runs.append((run * rng.uniform(3, 10), run * rng.uniform(10, 20)))
        elif kind < 0.99:  # one that looks far too short
            runs.append((0.0, run * rng.uniform(0.01, 0.2)))
        else:  # found done at once with no time to speak of
            runs.append((0.0, 1e-12))
    return runs


def test_kept_totals_equal_the_sums_afresh_over_a_long_random_history() -> None:
    rng = random.Random(14)
    samples = 20
    learner = RunFactor(spread=SPREAD, outliers=OUTLIERS, samples=samples)
    window: deque[tuple[float, float]] = deque(maxlen=samples)
    factor, visited, check = 1.0, set(), 0
    for n, (shortest, longest) in enumerate(random_runs(rng, 1500)):
        window.append((shortest, longest))
        chosen = learner.add(shortest, longest)
        factor = reference_factor(window, factor)
        assert chosen == factor  # the same float, not merely close
        index = round(math.log(chosen) / STEP)
        visited.add(index)
        if n < check:
            continue
        # Checked after 1 to 2 windows' worth of runs: points the searches left alone
        # meanwhile catch up on a few runs, or on more than the window holds.
        check = n + rng.randint(1, 2 * samples)
        kept = learner.kept_totals()
        assert kept and all(abs(point - index) <= IN_REACH for point in kept)
        for point, total in kept.items():
            assert total == learner.log_likelihood(point)  # exact: integers never drift
            # ...and within the fixed point's rounding of the float sum.
            afresh = reference_log_likelihood(window, math.exp(STEP * point))
            assert abs(total / SCALE - afresh) <= samples * 2**-41 + 1e-11
    # The window turned over many times, and the factor travelled far enough that lattice
    # points left the search's reach and came back.
    assert max(visited) - min(visited) > 3 * IN_REACH


def drive(strategy: AdaptiveInterval, durations: list[float]) -> None:
    """Poll synthetic tasks one after another as the poller does (re-checks included)."""
    for n, duration in enumerate(durations):
        task = SimpleNamespace(id=n, size="512x512", count=1)
        at = strategy.next_interval(task, None, 0, 0.0)  # type: ignore[arg-type]
        polls = 0
        while True:
            if (later := strategy.recheck(task, at)) is not None:  # type: ignore[arg-type]
                at += later
                continue
            if at >= duration:
                strategy.completed(task, at)  # type: ignore[arg-type]
                break
            polls += 1
            at += strategy.next_interval(task, 0, polls, at)  # type: ignore[arg-type]


def record_choices(strategy: AdaptiveInterval) -> list[tuple[float, float]]:
    """From now on, each factor the strategy learns beside the whole-window search's."""
    window: deque[tuple[float, float]] = deque(maxlen=AdaptiveInterval.SAMPLES)
    chosen: list[tuple[float, float]] = []
    add = strategy._runs.add

    def checked_add(shortest: float, longest: float) -> float:
        before = strategy._runs.value
        window.append((shortest, longest))
        factor = add(shortest, longest)
        chosen.append((factor, reference_factor(window, before)))
        return factor

    strategy._runs.add = checked_add  # type: ignore[method-assign]
    return chosen


def test_the_strategy_chooses_the_factor_of_the_search_over_the_whole_window() -> None:
    # A service at 2 s a run, then 6 s, 1 s and 12 s, against a prior of 3 s: the factor
    # moves far and often, and every completion's choice is the reference's, to the bit.
    rng = random.Random(7)
    durations = [mean * rng.uniform(0.8, 1.2) for mean in (2, 6, 1, 12) for _ in range(150)]
    strategy = AdaptiveInterval(base_seconds=3.0)
    chosen = record_choices(strategy)
    drive(strategy, durations)
    assert len(chosen) > 500  # nearly every task taught it something
    assert all(factor == reference for factor, reference in chosen)
    factors = {round(math.log(factor) / STEP) for factor, _ in chosen}
    assert len(factors) > 30  # it did move: over 1/3 to 4 times the prior
    assert strategy._runs.value == pytest.approx(4.0, rel=0.1)  # 12 s runs over a 3 s prior


def test_a_completion_costs_a_logarithm_per_factor_in_reach_not_per_kept_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With a full window of 100 runs, summing each of the 26 candidates over every run
    # takes 2,600 logarithms a completion. Kept totals take one per candidate looked at
    # (26), and for a point looked at again after a while one per run it missed, for one
    # coming in reach a window's worth: fewer than one per lattice point in the search's
    # reach (2 * IN_REACH + 1 = 79), here with a jump in the service's speed on the way.
    rng = random.Random(3)
    durations = [mean * rng.uniform(0.8, 1.2) for mean in (2, 5) for _ in range(300)]
    strategy = AdaptiveInterval(base_seconds=3.0)
    drive(strategy, durations[:200])  # the window is full from here on
    logs = 0
    log = math.log

    def counted(*args: float) -> float:
        nonlocal logs
        logs += 1
        return log(*args)

    monkeypatch.setattr(math, "log", counted)
    drive(strategy, durations[200:])
    assert 0 < logs / 400 < 2 * IN_REACH + 1


def test_a_bracket_touching_a_factors_window_misses_it_by_nothing() -> None:
    # Polls are aimed at the end of the current factor's window, so brackets start on
    # it to the bit: one doing so scores as one overlapping the window by a hair, not
    # (as `low / longest` < 1 would rate it) better than one overlapping it.
    high = math.exp(STEP * 0) * (1 + SPREAD)
    scores = []
    for shortest in (math.nextafter(high, 0), high, math.nextafter(high, 2)):
        learner = RunFactor(spread=SPREAD, outliers=OUTLIERS, samples=10)
        learner.add(shortest, 2.0)
        scores.append(learner.log_likelihood(0))
    assert max(scores) - min(scores) <= 1  # 2**-40: the same, but for rounding
    assert scores[1] / SCALE == pytest.approx(math.log(OUTLIERS))


async def test_the_bot_learns_the_factor_of_the_search_over_the_whole_window(harness_factory):
    # Through the real bot: the runs its polls bracket at the emulator teach it the
    # service's speed (four times its prior), each step the whole-window search's.
    h = await harness_factory(
        {"generation_time": 0.3},
        miaohua={"poll_strategy": "adaptive", "expected_generation_time": 1.2, "use_batch": False},
        limits={"user_running": 4},
    )
    strategy = h.bot.generation.poller.strategy
    assert isinstance(strategy, AdaptiveInterval)
    chosen = record_choices(strategy)
    for _ in range(2):  # two rounds of four tasks at once
        answers = [await imagine(h, count=1) for _ in range(4)]
        for answer in answers:
            await wait_result(h, task_id_of(await answer_text(answer)))
    assert len(chosen) >= 6  # most tasks' runs were bracketed closely enough to learn from
    assert all(factor == reference for factor, reference in chosen)
    assert strategy._runs.value < 0.6  # runs take a quarter of the prior's 1.2 s
