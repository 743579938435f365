"""How long a task waits in the service's queue, from the `wait_time` its polls report.

v1b's `wait_time` is the number of tasks ahead of a queued task. Every task ahead of the
newest one seen queued is also ahead of a task submitted since, and so is every task
submitted in between: the newest sighting, counted down at the rate the queue drains and
counted up by this bot's submissions since, tells a new task how much is ahead of it before
any of its own polls. A task starts once fewer than `slots` tasks are ahead (a service that
counts the running tasks too, like the emulator, reports its busy workers as ahead).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Sighting:
    """A poll that found a task queued: `ahead` tasks before it at time `at`."""

    seq: int  # the task's place in this bot's submission order
    ahead: int
    at: float


class QueueModel:
    """Tasks ahead in the service's queue, how fast that drains, and when a task starts.

    Times are on one clock (the strategy's), in seconds. The drain rate is learned from
    pairs of sightings (of any tasks: the queue is one FIFO), the start threshold `slots`
    from sightings of queued tasks and the starts that polls bracket.
    """

    def __init__(self, *, drain_prior: float, learning_rate: float = 0.3) -> None:
        self.drain = drain_prior  # tasks per second leaving the queue
        self.learning_rate = learning_rate
        self.slots: float | None = None  # a task starts once fewer than this are ahead
        self.fewest_queued: int | None = None  # the least `ahead` a queued task showed
        self._seq = 0
        self._ref: Sighting | None = None
        self._drain_learned = False

    @property
    def learned(self) -> bool:
        """Whether any queued task has been seen yet."""
        return self._ref is not None

    def submitted(self) -> int:
        """Count a task this bot just submitted; return its place in the order."""
        self._seq += 1
        return self._seq

    def ahead(self, seq: int, now: float) -> float:
        """Tasks expected ahead of task `seq` at `now` (0 with nothing seen queued yet)."""
        ref = self._ref
        if ref is None:
            return 0.0
        return max(0.0, ref.ahead + (seq - ref.seq) - self.drain * (now - ref.at))

    def wait(self, ahead: float) -> float:
        """Seconds until a task with `ahead` tasks before it starts."""
        slots = self.slots if self.slots is not None else 1.0
        return max(0.0, ahead - slots + 1) / self.drain

    def wait_for(self, seq: int, now: float) -> float:
        """Seconds until task `seq` starts, from the newest sighting of the queue."""
        return self.wait(self.ahead(seq, now))

    def typical_run(self, seconds: float) -> None:
        """Until a drain is measured, take it as `slots` runs of `seconds` at a time."""
        if not self._drain_learned and self.slots is not None and seconds > 0:
            self.drain = self.slots / seconds

    def seen_queued(self, seq: int, ahead: int, now: float) -> None:
        """A poll found task `seq` queued with `ahead` tasks before it."""
        if self.fewest_queued is None or ahead < self.fewest_queued:
            self.fewest_queued = ahead
            if self.slots is None or self.slots > ahead:
                self.slots = float(ahead)  # queued with `ahead` before it: it needs fewer
        ref = self._ref
        if ref is not None and now - ref.at >= 0.5:
            # Both counts are of one FIFO: what left it in between is the drain.
            left = ref.ahead + (seq - ref.seq) - ahead
            rate = max(left, 0) / (now - ref.at)
            if rate > 0:
                self._learn_drain(rate)
        if ref is None or now >= ref.at:
            self._ref = Sighting(seq, ahead, now)

    def seen_running(self, seq: int, now: float) -> None:
        """A poll found task `seq` started: fewer than `slots` are ahead of it now."""
        if self._ref is None or self.slots is None:
            return
        most = self.slots - 1
        if self.ahead(seq, now) > most:  # the queue drained faster than modelled
            self._ref = Sighting(seq, max(0, round(most)), now)

    def started(self, ahead: int, seen_at: float, started_at: float) -> None:
        """A task seen with `ahead` before it at `seen_at` started at about `started_at`."""
        if started_at <= seen_at:
            return
        at_start = ahead - self.drain * (started_at - seen_at)  # still ahead when it started
        sample = max(1.0, at_start + 1)
        slots = sample if self.slots is None else self.slots
        slots += self.learning_rate * (sample - slots)
        if self.fewest_queued is not None:
            slots = min(slots, float(self.fewest_queued))
        self.slots = max(1.0, slots)

    def _learn_drain(self, rate: float) -> None:
        if not self._drain_learned:
            self.drain, self._drain_learned = rate, True
            return
        self.drain += self.learning_rate * (rate - self.drain)

    def summary(self) -> str:
        """What has been learned, for the log."""
        slots = "unknown" if self.slots is None else f"{self.slots:.0f}"
        return f"queue drains {self.drain:.2f} tasks/s, tasks start with under {slots} ahead"
