"""When to poll a submitted task next: fixed intervals, or adaptive aim at the expected finish."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Protocol

from bot.store import Task

log = logging.getLogger(__name__)


class PollStrategy(Protocol):
    """Decides the delay before the next `task_result` poll of one task."""

    def next_interval(
        self, task: Task, wait_time: int | None, polls_so_far: int, elapsed: float
    ) -> float:
        """Return seconds until the next poll; `elapsed` is seconds since submission."""
        ...

    def completed(self, task: Task, elapsed: float) -> None:
        """Learn from a task found done `elapsed` seconds after submission."""
        ...

    def forget(self, task_id: int) -> None:
        """Drop what is kept about a task that will not be polled again."""
        ...


class FixedInterval:
    """Poll every `seconds`, whatever the task."""

    def __init__(self, seconds: float = 1.0) -> None:
        if seconds <= 0:
            raise ValueError("poll interval must be positive")
        self.seconds = seconds

    def next_interval(
        self, task: Task, wait_time: int | None, polls_so_far: int, elapsed: float
    ) -> float:
        """Return the fixed interval."""
        return self.seconds

    def completed(self, task: Task, elapsed: float) -> None:
        """Nothing to learn."""

    def forget(self, task_id: int) -> None:
        """Nothing to drop."""


def parse_size(size: str) -> tuple[int, int]:
    """Return (width, height) of a 'WxH' size, or 512x512 when it cannot be read."""
    width, _, height = size.lower().partition("x")
    try:
        return max(1, int(width)), max(1, int(height))
    except ValueError:
        return 512, 512


@dataclass(slots=True)
class _Track:
    """What the adaptive strategy knows about one submitted task."""

    start_low: float = 0.0  # the task had not started yet at this elapsed time
    start_high: float | None = 0.0  # ... and had started by this one (None: still queued)
    queued: bool = False  # it waited behind other tasks, so its duration is not a clean sample
    first_poll: float | None = None  # when the aimed poll was due (elapsed)
    late_polls: int = 0  # polls after the aimed one
    latest: float = 0.0  # elapsed time by which the task should be done
    overdue: int = 0  # polls after `latest`
    quantile: float = 0.5  # where in the expected range the aimed poll was put
    seen_ahead: int | None = None  # tasks ahead at the last poll that found it queued ...
    seen_at: float = 0.0  # ... and when (elapsed)


class AdaptiveInterval:
    """Aim one poll just after the expected completion, learn from what it finds.

    Service time is modelled as `m * U(1 - spread, 1 + spread)`, with `m` the prior
    (`base_seconds` per 512x512 image, +25 % per extra image) times a learned factor
    per (size, count) bucket. The aimed poll sits at quantile `q` of that range, where
    `q` is as high as `max_quantile` allows but low enough that a task finishing at the
    earliest plausible moment waits at most `lag_budget` seconds. Whether the task is
    done at that poll updates the factor (a Robbins-Monro quantile tracker), which stays
    unbiased although early finishers are only known to be done "by then". Past the aim
    it polls every `lag_budget` seconds until the expected range ends, then every
    `dense` seconds, growing by `backoff`. While the service reports
    tasks ahead, it polls about once per expected slot (`ahead * m / workers`, capped).
    """

    def __init__(
        self,
        *,
        base_seconds: float = 3.0,
        spread: float = 0.2,
        lag_budget: float = 1.2,
        max_quantile: float = 0.9,
        dense: float = 0.35,
        backoff: float = 1.5,
        workers: int = 4,
        min_interval: float = 0.05,
        max_interval: float = 10.0,
        learning_rate: float = 0.05,
        probe_quantile: float = 0.3,
    ) -> None:
        self.base_seconds = base_seconds
        self.spread = spread
        self.lag_budget = lag_budget
        self.max_quantile = max_quantile
        self.dense = dense
        self.backoff = backoff
        self.workers = max(1, workers)
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.learning_rate = learning_rate
        self.probe_quantile = probe_quantile
        self._global = 1.0
        self._factors: dict[tuple[str, int], float] = {}
        # Per bucket: outcome of the current run of aimed polls and its log-probability.
        self._runs: dict[tuple[str, int], tuple[bool, float]] = {}
        self._tracks: dict[int, _Track] = {}
        self._drain: float | None = None  # learned tasks/s leaving the service's queue

    def prior(self, task: Task) -> float:
        """Return the prior service time of a task from its size and image count."""
        width, height = parse_size(task.size)
        return self.base_seconds * (width * height / 512**2) * (1 + 0.25 * (max(1, task.count) - 1))

    def expected(self, task: Task) -> float:
        """Return the current estimate of the mean service time of a task."""
        factor = self._factors.get((task.size, task.count), self._global)
        return self.prior(task) * factor

    def _quantile(self, mean: float) -> float:
        width = 2 * self.spread * mean
        if width <= 0:
            return self.max_quantile
        return max(0.05, min(self.max_quantile, self.lag_budget / width))

    def next_interval(
        self, task: Task, wait_time: int | None, polls_so_far: int, elapsed: float
    ) -> float:
        """Return seconds until the next poll of `task`."""
        track = self._tracks.get(task.id)
        if track is None:
            # A task first seen after polls (e.g. recovered at start-up) is no clean sample.
            track = self._tracks[task.id] = _Track(queued=polls_so_far > 0)
        mean = self.expected(task)
        ahead = wait_time or 0
        if ahead > 0:
            self._observe_queue(track, ahead, elapsed)
            track.queued = True
            track.start_low, track.start_high = elapsed, None
            track.first_poll, track.late_polls, track.overdue = None, 0, 0
            # Aim at the expected finish (start, then service time) rather than the start:
            # one poll instead of two for a task that starts when expected.
            run = mean * (1 - self.spread + 2 * self.spread * self._quantile(mean))
            return self._clamp(ahead / self.drain_rate(mean) + run)
        if track.seen_ahead is not None:
            self._observe_queue(track, 0, elapsed)
        if track.start_high is None:
            track.start_high = elapsed
        if track.first_poll is None:
            start = (track.start_low + track.start_high) / 2
            track.quantile = self._quantile(mean)
            if self._probing(task):
                # Only an earlier poll can show the estimate is too high; it costs a poll.
                track.quantile = min(track.quantile, self.probe_quantile)
            aim = start + mean * (1 - self.spread + 2 * self.spread * track.quantile)
            track.latest = start + mean * (1 + self.spread)
            if aim - elapsed > self.max_interval:
                return self.max_interval  # a check-in on the way; aim again after it
            if aim > elapsed + self.min_interval or polls_so_far == 0:
                track.first_poll = aim
                return self._clamp(aim - elapsed)
            track.first_poll = elapsed
        if polls_so_far > 0 and track.late_polls == 0:
            self._learn(task, track, done=False)
        track.late_polls += 1
        if elapsed < track.latest:
            # Still within the expected range: space polls by the lag we accept.
            return self._clamp(min(self.lag_budget, track.latest - elapsed + self.dense))
        track.overdue += 1
        return self._clamp(self.dense * self.backoff ** (track.overdue - 1))

    def completed(self, task: Task, elapsed: float) -> None:
        """Learn from the aimed poll finding the task done."""
        track = self._tracks.pop(task.id, None)
        if track is None or track.late_polls > 0 or track.start_high is None:
            return
        if track.first_poll is None:
            # Done at a check-in before the aim: place that poll in the expected range.
            mean = self.expected(task)
            start = (track.start_low + track.start_high) / 2
            offset = elapsed - start - mean * (1 - self.spread)
            track.quantile = min(0.99, max(0.01, offset / (2 * self.spread * mean)))
            track.first_poll = elapsed
        self._learn(task, track, done=True)

    def forget(self, task_id: int) -> None:
        """Drop the task's tracking state."""
        self._tracks.pop(task_id, None)

    def _learn(self, task: Task, track: _Track, *, done: bool) -> None:
        # Only the aimed poll of an unqueued task says something clean about the quantile.
        if track.queued or track.first_poll is None:
            return
        quantile = track.quantile
        key = (task.size, task.count)
        chance = max(0.01, quantile if done else 1 - quantile)
        run_done, run_logp = self._runs.get(key, (done, 0.0))
        run_logp = run_logp + math.log(chance) if run_done == done else math.log(chance)
        self._runs[key] = (done, run_logp)
        step = self.learning_rate * ((quantile - 1) if done else quantile)
        # A run of one outcome that chance explains less than 2 % of the time means the
        # estimate is far off: grow the step with the run so a bad prior is corrected fast.
        halvings = (math.log(0.02) - run_logp) / math.log(2)
        if halvings > 0:
            step += (-0.1 if done else 0.1) * halvings
        step = max(-0.5, min(1.0, step))
        factor = self._factors.get(key, self._global) * (1 + step)
        self._factors[key] = min(100.0, max(0.01, factor))
        self._global = min(100.0, max(0.01, self._global * (1 + step / 2)))

    def drain_rate(self, mean: float) -> float:
        """Tasks per second leaving the service's queue: learned, else `workers / mean`."""
        return self._drain if self._drain is not None else self.workers / max(mean, 0.01)

    def _observe_queue(self, track: _Track, ahead: int, elapsed: float) -> None:
        """Learn the queue's drain rate from how fast the tasks ahead of one task went."""
        if track.seen_ahead is not None and elapsed > track.seen_at and ahead <= track.seen_ahead:
            sample = (track.seen_ahead - ahead) / (elapsed - track.seen_at)
            if ahead == 0:  # it started some time before this poll: the rate was at least this
                sample = max(sample, self._drain or 0.0)
            if sample > 0:
                old = self._drain if self._drain is not None else sample
                self._drain = old + 0.2 * (sample - old)
        track.seen_ahead, track.seen_at = (ahead, elapsed) if ahead > 0 else (None, 0.0)

    def _probing(self, task: Task) -> bool:
        """True when recent aimed polls all found tasks done: the estimate may be too high."""
        run_done, run_logp = self._runs.get((task.size, task.count), (False, 0.0))
        return run_done and run_logp < math.log(0.3)

    def _clamp(self, seconds: float) -> float:
        return min(self.max_interval, max(self.min_interval, seconds))


def make_strategy(name: str, **kwargs: Any) -> PollStrategy:
    """Build a strategy by name: "adaptive" or "fixed" (kwargs go to its constructor)."""
    if name == "adaptive":
        return AdaptiveInterval(**kwargs)
    if name == "fixed":
        return FixedInterval(**kwargs)
    raise ValueError(f"unknown poll strategy {name!r} (expected 'adaptive' or 'fixed')")
