"""When to poll a submitted task next: fixed intervals, or adaptive aim at the expected finish."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.jobs.queue_model import QueueModel
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
    """What the adaptive strategy knows about one submitted task (times: elapsed seconds)."""

    start_low: float = 0.0  # it had not started by then (last poll that saw it queued)
    start_high: float | None = None  # it had started by then (first poll that saw it run)
    last_poll: float = 0.0  # latest poll that found it not done
    seen_ahead: int | None = None  # tasks ahead at the last poll that saw it queued
    seen_at_poll: float = 0.0  # when that poll was
    first_seen: bool = True  # no poll has looked at it yet
    quantile: float | None = None  # where its first poll sat in the expected finish range
    overdue: int = 0  # polls after the latest expected finish
    seq: int = 0  # its place in the submission order (the queue model's)
    submitted: float = 0.0  # when it was submitted, on the strategy's clock


class AdaptiveInterval:
    """Poll a task when it can be done, learning the service's speed from what polls find.

    Run time is modelled as `prior * factor * U(1 - spread, 1 + spread)`: the prior is
    `base_seconds` per 512x512 image (+25 % per extra image) and `factor` is learned per
    (size, count), from the run times that polls bracket. Time spent queued at the service
    comes from the queue model: a new task's wait from the newest `wait_time` (tasks ahead)
    any poll reported, counted down at the learned drain rate and up by the submissions
    since; a queued task's from its own `wait_time`. The first poll comes `lag_budget` after
    the earliest plausible finish, then one every `lag_budget` until the latest expected
    finish, then ever sparser. Whether the first poll finds the task done moves `factor` so
    that it does so as often as its place in the range predicts (a Robbins-Monro quantile
    tracker): that is what corrects an estimate that is too high, which a task found done
    at once cannot show otherwise.
    """

    def __init__(
        self,
        *,
        base_seconds: float = 3.0,
        spread: float = 0.2,
        lag_budget: float = 1.2,
        dense: float = 0.35,
        backoff: float = 1.5,
        workers: int = 4,
        min_interval: float = 0.05,
        max_interval: float = 10.0,
        learning_rate: float = 0.3,
        quantile_rate: float = 0.15,
        cold_spread: float = 0.5,
        warm_after: int = 3,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_seconds = base_seconds
        self.spread = spread
        self.lag_budget = lag_budget
        self.dense = dense
        self.backoff = backoff
        self.workers = max(1, workers)
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.learning_rate = learning_rate
        self.quantile_rate = quantile_rate
        # Until `warm_after` tasks have been found done, the prior alone says how long a run
        # takes: aim within the wider `cold_spread`, for a burst of tasks submitted at start.
        self.cold_spread = max(spread, cold_spread)
        self.warm_after = warm_after
        self._found_done = 0
        self._typical_run = base_seconds  # mean expected run of the tasks submitted lately
        self._log_factor: dict[tuple[str, int], float] = {}  # log(run time / prior) by size
        self._global = 0.0  # the same for sizes not seen yet
        self._clock = clock
        # Before the service reports a queue: `workers` runs of `base_seconds` at a time.
        self.queue = QueueModel(drain_prior=self.workers / max(base_seconds, 0.01))
        # Typical seconds a new task waits before it runs, for a service that never shows
        # a queue in `wait_time` (then the queue model knows nothing).
        self._wait = 0.0
        self._tracks: dict[int, _Track] = {}

    # Estimates

    def prior(self, task: Task) -> float:
        """Return the prior run time of a task from its size and image count."""
        return self._prior(task.size, task.count)

    def _prior(self, size: str, count: int) -> float:
        width, height = parse_size(size)
        return self.base_seconds * (width * height / 512**2) * (1 + 0.25 * (max(1, count) - 1))

    def expected(self, task: Task) -> float:
        """Return the current estimate of the mean run time of a task."""
        log_factor = self._log_factor.get((task.size, task.count), self._global)
        return self.prior(task) * math.exp(log_factor)

    def predicted_wait(self, track: _Track) -> float:
        """Seconds a task just submitted should wait at the service before it starts."""
        if self.queue.learned:
            return self.queue.wait_for(track.seq, self._clock())
        return self._wait

    def memory_sizes(self) -> dict[str, int]:
        """Tasks tracked now, and (size, count) pairs learned (bounded by the form)."""
        return {"poll_tracks": len(self._tracks), "learned_sizes": len(self._log_factor)}

    def summary(self) -> str:
        """What has been learned, for the log."""
        return (
            f"run-time factor x{math.exp(self._global):.2f}, {self.queue.summary()}, "
            f"{len(self._log_factor)} size(s) learned"
        )

    # Decisions

    def next_interval(
        self, task: Task, wait_time: int | None, polls_so_far: int, elapsed: float
    ) -> float:
        """Return seconds until the next poll of `task`."""
        track = self._tracks.get(task.id)
        if track is None:
            track = self._tracks[task.id] = self._new_track(elapsed)
            if polls_so_far == 0 and wait_time is None:  # just submitted
                self._typical_run += 0.1 * (self.expected(task) - self._typical_run)
                self.queue.typical_run(self._typical_run)
                track.start_low = track.start_high = elapsed + self.predicted_wait(track)
                first = self._first_poll(task, track)
                if first - elapsed <= self.max_interval:  # not a mere check-in on the way
                    track.quantile = self._first_quantile(task, track)
                return self._clamp(first - elapsed)
        run = self.expected(task)
        track.last_poll = elapsed
        first_seen, track.first_seen = track.first_seen, False
        ahead = wait_time or 0
        if first_seen and ahead == 0 and track.quantile is not None and self._wait < 0.5:
            # Not done yet means "slower than thought" only when tasks do not queue first:
            # otherwise it may just have started late.
            self._track_quantile(task, track.quantile, done=False)
        if ahead > 0:
            return self._queued(task, track, ahead, elapsed, first_seen)
        self.queue.seen_running(track.seq, self._clock())
        if track.start_high is None or track.start_high > elapsed or track.seen_ahead:
            self._started(track, elapsed, first_seen)
        first = self._first_poll(task, track)
        if elapsed < first - self.min_interval:
            return self._clamp(first - elapsed)
        latest = (track.start_high or elapsed) + run * (1 + self._aim_spread())
        if elapsed < latest:
            return self._clamp(min(self.lag_budget, latest - elapsed + self.dense))
        track.overdue += 1
        # Later than the model allows: back off, but never so far that lag outgrows twice
        # the budget while the estimate catches up.
        sparser = self.dense * self.backoff ** (track.overdue - 1)
        return self._clamp(min(sparser, 2 * self.lag_budget))

    def _new_track(self, elapsed: float) -> _Track:
        # A task resumed after a restart is counted now: later than it was submitted, but
        # its own `wait_time` soon corrects that.
        return _Track(seq=self.queue.submitted(), submitted=self._clock() - elapsed)

    def _first_poll(self, task: Task, track: _Track) -> float:
        run = self.expected(task)
        earliest = track.start_low + run * (1 - self._aim_spread())
        return earliest + self._first_quantile(task, track) * self._width(task, track)

    def _width(self, task: Task, track: _Track) -> float:
        start_range = (track.start_high or track.start_low) - track.start_low
        return start_range + 2 * self._aim_spread() * self.expected(task)

    def _aim_spread(self) -> float:
        return self.spread if self._found_done >= self.warm_after else self.cold_spread

    def _first_quantile(self, task: Task, track: _Track) -> float:
        """As late in the range as 0.9, but early enough that no task waits over the budget."""
        return min(0.9, self.lag_budget / max(self._width(task, track), 1e-6))

    def _queued(
        self, task: Task, track: _Track, ahead: int, elapsed: float, first_seen: bool
    ) -> float:
        self.queue.seen_queued(track.seq, ahead, track.submitted + elapsed)
        to_start = self.queue.wait(ahead)
        if first_seen:
            self._learn_wait(elapsed + to_start)
        track.seen_ahead, track.seen_at_poll = ahead, elapsed
        track.start_low, track.start_high = elapsed + to_start, None
        track.quantile, track.overdue = None, 0
        run = self.expected(task)
        if to_start <= max(self.lag_budget * 2, run * (1 - self.spread)):
            track.start_high = track.start_low  # it starts soon: aim straight at the finish
            return self._clamp(self._first_poll(task, track) - elapsed)
        return self._clamp(to_start * 0.8)  # look again when it should be about to start

    def _started(self, track: _Track, elapsed: float, first_seen: bool) -> None:
        if track.seen_ahead is not None:
            # It started since that poll: the `seen_ahead` before it took about half the gap.
            self._learn_start(track, (track.seen_at_poll + elapsed) / 2)
            track.start_low = track.seen_at_poll
        elif first_seen:
            track.start_low = 0.0
            if self._wait > elapsed:
                self._learn_wait(elapsed / 2)
        track.start_high = elapsed
        track.seen_ahead = None

    # Learning

    def completed(self, task: Task, elapsed: float) -> None:
        """Learn from a task found done `elapsed` seconds after submission."""
        track = self._tracks.pop(task.id, None)
        if track is None:
            return
        self._found_done += 1
        key = (task.size, task.count)
        if track.first_seen and track.quantile is not None:
            self._track_quantile(task, track.quantile, done=True)
        run = self.expected(task)
        if track.seen_ahead is not None:
            # Queued at the last poll, done now: it started about one run time ago.
            self._learn_start(track, max(track.seen_at_poll, elapsed - run))
        if track.first_seen:  # done at its first poll: it started by elapsed - earliest run
            latest_start = elapsed - run * (1 - self.spread)
            if self._wait > latest_start:
                self._learn_wait(max(0.0, latest_start))
            # It started no earlier than predicted, as far as the queue model knows: a run
            # learned too short from a start predicted too late only brings the next first
            # polls early, and what those find corrects it.
            start_low, start_high, done_after = track.start_low, None, 0.0
        else:
            start_low, start_high, done_after = track.start_low, track.start_high, track.last_poll
        longest = elapsed - start_low
        shortest = done_after - (start_high if start_high is not None else elapsed)
        if longest < run * (1 - self.spread):
            self._learn_run(key, longest)  # finished sooner than thought possible
        elif shortest > run * (1 + self.spread):
            self._learn_run(key, shortest)  # took longer than thought possible
        elif start_high is not None and longest - max(shortest, 0.0) <= 0.5 * run:
            self._learn_run(key, (longest + max(shortest, 0.0)) / 2, weight=0.3)

    def forget(self, task_id: int) -> None:
        """Drop the task's tracking state."""
        self._tracks.pop(task_id, None)

    def _learn_run(self, key: tuple[str, int], seconds: float, weight: float = 1.0) -> None:
        size, count = key
        prior = self._prior(size, count)
        if seconds <= 0 or prior <= 0:
            return
        target = math.log(seconds / prior)
        current = self._log_factor.get(key, self._global)
        step = self.learning_rate * weight
        self._log_factor[key] = current + step * (target - current)
        self._global += step * 0.5 * (target - self._global)

    def _learn_start(self, track: _Track, started: float) -> None:
        """Learn how many tasks are still ahead when a task starts (what `wait_time` counts,
        queued tasks only or running ones too, differs between services)."""
        if track.seen_ahead:
            at = track.submitted
            self.queue.started(track.seen_ahead, at + track.seen_at_poll, at + started)

    def _learn_wait(self, seconds: float) -> None:
        # The service's queue changes fast as load comes and goes: follow it closely.
        self._wait += 0.5 * (max(0.0, seconds) - self._wait)

    def _track_quantile(self, task: Task, quantile: float, *, done: bool) -> None:
        # Done more often than the quantile predicts: the estimate is too high, and back.
        step = self.quantile_rate * (quantile - (1.0 if done else 0.0))
        key = (task.size, task.count)
        self._log_factor[key] = self._log_factor.get(key, self._global) + step
        self._global += step * 0.5

    def _clamp(self, seconds: float) -> float:
        return min(self.max_interval, max(self.min_interval, seconds))


def make_strategy(name: str, **kwargs: Any) -> PollStrategy:
    """Build a strategy by name: "adaptive" or "fixed" (kwargs go to its constructor)."""
    if name == "adaptive":
        return AdaptiveInterval(**kwargs)
    if name == "fixed":
        return FixedInterval(**kwargs)
    raise ValueError(f"unknown poll strategy {name!r} (expected 'adaptive' or 'fixed')")
