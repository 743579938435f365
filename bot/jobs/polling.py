"""When to poll a submitted task next: fixed intervals, or adaptive aim at the expected finish."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from bot.jobs.queue_model import QueueModel
from bot.jobs.run_factor import RunFactor
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


def _quantile(share: float, width_a: float, width_b: float) -> float:
    """Where the lowest `share` of a sum of two uniform spreads of these widths ends,
    from its least possible value (the sum's density rises, stays flat, then falls)."""
    narrow, wide = sorted((max(width_a, 0.0), max(width_b, 0.0)))
    if narrow <= 1e-9:
        return share * wide
    if share <= narrow / (2 * wide):  # within the rise
        return math.sqrt(2 * share * narrow * wide)
    return share * wide + narrow / 2


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

    seq: int  # its place in the submission order (the queue model's)
    submitted: float  # when it was submitted, on the strategy's clock
    start: float = 0.0  # best guess of when it started or will start
    start_low: float = 0.0  # it had not started by then (last poll that saw it queued)
    start_high: float | None = None  # it had started by then (first poll that saw it run)
    not_done: float | None = None  # the latest poll that found it running, not done
    overdue: int = 0  # polls after the latest expected finish
    postponed: int = 0  # polls postponed in a row by `recheck`
    probing: bool = False  # its next poll is for the queue ahead of it, not for its result
    checking: bool = False  # its next poll looks whether it still waits (the queue's head)
    in_queue: bool = False  # submitted with a queue known, or seen queued: the model has it


class AdaptiveInterval:
    """Poll a task when it can be done, learning the service's speed from what polls find.

    A task's run is modelled as `prior * factor * U(1 - spread, 1 + spread)`: the prior is
    `base_seconds` per 512x512 image (+25 % per extra image), `factor` is learned. Its start
    comes from the queue model (bot/jobs/queue_model.py): the newest `wait_time` any poll
    reported, counted down at the learned drain and up by the submissions since. So a task
    can finish within a window, as the sum of a start and a run spread uniformly: few finish
    in its first moments. The first poll comes `lag_budget` after the earliest `EARLY_TAIL`
    (3 %) of its finishes (or at the window's end, if sooner), then one every `lag_budget`
    to its end: while the model holds, no more than those few tasks found done wait longer
    than that for the poll that sees it, and few take over two polls.
    While tasks queue, a task just submitted is polled at once every `probe_every` seconds,
    for the queue ahead of it (the newest task's `wait_time` predicts the next ones' best);
    before any queue is seen, each time a quarter more tasks are out, so that the first
    queue seen is a short one. The fewest tasks ahead of a task seen waiting bound from
    above how few still make one wait (the start threshold, the service's workers); while
    that bound is loose, a probed task found queued is polled again when, on the model's
    line, it has halfway between that bound and the most a task was seen starting with:
    still queued, it tightens the bound; running, it raises the lower one.

    `factor` is the most likely one given the recent tasks' runs as the polls bracketed them
    (not done at one poll, done at the next; a task found done at once bounds it from above
    only): the service's speed from what polls saw, whatever the prior said
    (bot/jobs/run_factor.py, at a cost per completion that does not grow with the runs kept).

    Polls are aimed with what is known when they are scheduled; `recheck`, called when one
    falls due, aims it again with what was learned since and postpones it, without calling
    the service, when the task cannot be done yet. A task that should not finish for a long
    time (a long queue, a long run) is polled at half its expected remaining time, at most
    every `long_interval`: a minute is short next to waits of hours and keeps the positions
    members see fresh to the minute (10,000 such tasks cost under 170 calls a second, not
    1,000), while polls grow dense again near its finish.
    """

    # Robustness of the run-time likelihood: the share of runs outside the model (services
    # whose run times spread wider, or starts guessed wrong) that should not derail it.
    OUTLIERS = 0.02
    SAMPLES = 100  # recent bracketed runs the factor is learned from
    START_MARGIN = 0.05  # seconds: how well a start is known without a queue ahead
    START_TRUST = 0.1  # a start predicted by the queue model is good to this share of its wait
    PROBE_FROM = 8  # tasks out before a queue is looked for
    PROBE_GROWTH = 1.25  # before a queue is seen, looked for again once this many times more
    MAX_POSTPONES = 12  # a poll postponed this often in a row is made anyway
    EARLY_TAIL = 0.03  # tasks the first poll may leave waiting over `lag_budget` if done early

    def __init__(
        self,
        *,
        base_seconds: float = 3.0,
        spread: float = 0.2,
        lag_budget: float = 1.3,
        dense: float = 0.35,
        backoff: float = 1.5,
        workers: int = 4,
        min_interval: float = 0.05,
        max_interval: float = 10.0,
        long_interval: float = 60.0,
        probe_every: float = 2.0,
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
        self.long_interval = max(max_interval, long_interval)
        self.probe_every = probe_every
        # Until `warm_after` tasks have been found done, the prior alone says how long a run
        # takes: aim within the wider `cold_spread`, for a burst of tasks submitted at start.
        self.cold_spread = max(spread, cold_spread)
        self.warm_after = warm_after
        self._found_done = 0
        # The run-time factor (run time / prior), learned from the runs polls bracketed.
        self._runs = RunFactor(spread=spread, outliers=self.OUTLIERS, samples=self.SAMPLES)
        self._typical_run = base_seconds  # mean expected run of the tasks submitted lately
        self._clock = clock
        # Before the service reports a queue: `workers` runs of `base_seconds` at a time.
        self.queue = QueueModel(drain_prior=self.workers / max(base_seconds, 0.01))
        self._tracks: dict[int, _Track] = {}
        self._probed_at = -math.inf
        self._probed_out = 0  # tasks out at the last probe before any queue was seen

    # Estimates

    def prior(self, task: Task) -> float:
        """Return the prior run time of a task from its size and image count."""
        width, height = parse_size(task.size)
        count = max(1, task.count)
        return self.base_seconds * (width * height / 512**2) * (1 + 0.25 * (count - 1))

    def expected(self, task: Task) -> float:
        """Return the current estimate of the mean run time of a task."""
        return self.prior(task) * self._runs.value

    def memory_sizes(self) -> dict[str, int]:
        """Tasks tracked now (the learned runs are a bounded window)."""
        return {"poll_tracks": len(self._tracks)}

    def summary(self) -> str:
        """What has been learned, for the log."""
        return f"run-time factor x{self._runs.value:.2f}, {self.queue.summary()}"

    def _spread(self) -> float:
        return self.spread if self._found_done >= self.warm_after else self.cold_spread

    def _start(self, track: _Track) -> float:
        """Best guess of the task's start (elapsed seconds), within what its polls bracket:
        when the newest queue sighting, drained since, had or has fewer than `slots` ahead
        of it. Once a task known to be queued is seen running, its guess stays."""
        if track.start_high is None or not track.in_queue:
            start_at = self.queue.start_at(track.seq)
            if start_at is not None:
                track.start = max(0.0, start_at - track.submitted)
        high = track.start_high if track.start_high is not None else math.inf
        return min(max(track.start, track.start_low), high)

    def _check_at(self, track: _Track) -> float | None:
        """When (elapsed seconds) the task has, on the queue model's line, halfway between
        the bounds of the start threshold ahead of it (None once those are known)."""
        ahead = self.queue.head_unsure
        at = None if ahead is None else self.queue.at_ahead(track.seq, ahead)
        return None if at is None else at - track.submitted

    def _start_range(self, track: _Track, trust: float | None = None) -> tuple[float, float]:
        """Earliest and latest plausible start: its polls bracket it; a start predicted by
        the queue model is taken as good to `trust` times the predicted wait, or to half
        of it for a task submitted before any queue was seen (a guess after the fact)."""
        start = self._start(track)
        trust = self.START_TRUST if trust is None else trust
        if not track.in_queue:
            trust = max(trust, 0.5)
        margin = self.START_MARGIN + trust * (start - track.start_low)
        high = track.start_high if track.start_high is not None else math.inf
        return max(track.start_low, start - margin), min(high, start + margin)

    def _next_poll(self, task: Task, track: _Track, elapsed: float) -> tuple[float, bool]:
        """When (elapsed seconds) to poll next: `lag_budget` after the earliest few
        finishes of the window the task can finish in (all of it while the run time is
        still the prior's), or after the latest poll that found it not done, but no later
        than the window's end; and whether the task is overdue (past that window)."""
        first, last = self._start_range(track)
        run, spread = self.expected(task), self._spread()
        early, late = first + run * (1 - spread), last + run * (1 + spread)
        if track.not_done is not None and track.not_done >= early:
            early = track.not_done
        elif self._found_done >= self.warm_after:
            # Few finish in the window's first moments (a start and a run both early):
            # once the model is settled, the budget counts from where the earliest
            # `EARLY_TAIL` of them would.
            early += _quantile(self.EARLY_TAIL, last - first, 2 * spread * run)
        if early < late:
            return min(early + self.lag_budget, late), False
        # Later than the model allows: back off, but no further than twice the budget while
        # the estimate catches up, or a tenth of its run so far on a very long run.
        sparser = min(self.dense * self.backoff ** max(0, track.overdue - 1), 2 * self.lag_budget)
        return elapsed + max(sparser, 0.1 * (elapsed - last)), True

    def _delay(self, target: float, elapsed: float) -> float:
        """Seconds until `target`, checking in on the way when it is far off: halfway
        there, but at most `long_interval` ahead, `recheck` aims again with what was
        learned meanwhile (the poll may come earlier, later or now) without calling the
        service."""
        gap = target - elapsed
        if gap > self.lag_budget:
            gap = max(self.lag_budget, min(self.long_interval, gap / 2))
        return max(self.min_interval, gap)

    # Decisions

    def next_interval(
        self, task: Task, wait_time: int | None, polls_so_far: int, elapsed: float
    ) -> float:
        """Return seconds until the next poll of `task`."""
        track = self._tracks.get(task.id)
        if track is None:
            # A task resumed after a restart is counted now: later than it was submitted,
            # but its own `wait_time` soon corrects that.
            track = _Track(seq=self.queue.submitted(), submitted=self._clock() - elapsed)
            self._tracks[task.id] = track
            track.in_queue = self.queue.learned
            if polls_so_far == 0 and wait_time is None:  # just submitted
                self._typical_run += 0.1 * (self.expected(task) - self._typical_run)
                self.queue.typical_run(self._typical_run)
                if self._probe():
                    track.probing = True
                    return self.min_interval
                return self._delay(self._next_poll(task, track, elapsed)[0], elapsed)
        probed = track.probing
        track.postponed, track.probing, track.checking = 0, False, False
        if wait_time:  # queued, `wait_time` tasks ahead
            self.queue.seen_queued(track.seq, wait_time, self._clock())
            track.start_low, track.start_high, track.overdue = elapsed, None, 0
            track.in_queue = True
            check = self._check_at(track)
            if probed and check is not None and check > elapsed + 0.1:
                # Polled again as the model says it starts: still queued, it shows how few
                # tasks ahead still make one wait, which deep sightings cannot.
                track.checking = True
                return self._delay(check, elapsed)
        else:
            self.queue.seen_running(track.seq, self._clock())
            if track.start_high is None:
                track.start_high = elapsed
            track.not_done = elapsed
        target, overdue = self._next_poll(task, track, elapsed)
        track.overdue = track.overdue + 1 if overdue else 0
        if overdue:  # nothing to re-aim on the way: the model has no window for it
            return min(self.long_interval, max(self.min_interval, target - elapsed))
        return self._delay(target, elapsed)

    def _probe(self) -> bool:
        """Whether to poll a task just submitted at once, for the queue ahead of it: while
        tasks queue, the newest one's `wait_time` is what predicts the next ones' waits
        best; one such poll every `probe_every` keeps the queue model current. Before any
        queue is seen, only while many tasks are out (a queue may be forming)."""
        now = self._clock()
        seen_at = self.queue.seen_at
        if seen_at is None:
            # Each time a quarter more are out: the first queue seen is a short one.
            out = len(self._tracks)
            if out < max(self.PROBE_FROM, self.PROBE_GROWTH * self._probed_out):
                return False
            self._probed_out = out
            self._probed_at = now
            return True
        last = max(seen_at if seen_at is not None else -math.inf, self._probed_at)
        if now - last < self.probe_every:
            return False
        self._probed_at = now
        return True

    def recheck(self, task: Task, elapsed: float) -> float | None:
        """At a poll's due time: seconds to postpone it by, if what was learned since it was
        scheduled says the task cannot be done yet; None to poll now."""
        track = self._tracks.get(task.id)
        if track is None or track.probing or track.postponed >= self.MAX_POSTPONES:
            return None
        if track.checking:  # when it has as many ahead as aimed at, as predicted now
            check = self._check_at(track)
            if check is None or check - elapsed <= self.min_interval:
                return None
            track.postponed += 1
            return self._delay(check, elapsed)
        target, overdue = self._next_poll(task, track, elapsed)
        delay = target - elapsed
        if overdue or delay <= self.min_interval:
            return None
        track.postponed += 1
        return self._delay(elapsed + delay, elapsed)

    # Learning

    def completed(self, task: Task, elapsed: float) -> None:
        """Learn from a task found done `elapsed` seconds after submission."""
        track = self._tracks.pop(task.id, None)
        if track is None:
            return
        self._found_done += 1
        prior = self.prior(task)
        # Taken as good to half the predicted wait here: a learned factor biased by wrong
        # starts would aim every later poll wrong.
        earliest, latest = self._start_range(track, trust=0.5)
        if prior <= 0 or elapsed <= earliest:
            return
        # Its run: more than since its latest start at the last poll that found it running,
        # at most since its earliest start now.
        shortest = 0.0 if track.not_done is None else max(0.0, track.not_done - latest)
        self._runs.add(shortest / prior, (elapsed - earliest) / prior)

    def forget(self, task_id: int) -> None:
        """Drop the task's tracking state."""
        self._tracks.pop(task_id, None)


def make_strategy(name: str, **kwargs: Any) -> PollStrategy:
    """Build a strategy by name: "adaptive" or "fixed" (kwargs go to its constructor)."""
    if name == "adaptive":
        return AdaptiveInterval(**kwargs)
    if name == "fixed":
        return FixedInterval(**kwargs)
    raise ValueError(f"unknown poll strategy {name!r} (expected 'adaptive' or 'fixed')")
