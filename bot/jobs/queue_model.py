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
    pairs of sightings (of any tasks: the queue is one FIFO) at least `MIN_BASELINE` apart,
    the start threshold `slots` as the fewest tasks ahead any queued task showed (a bound
    from above), and `floor` as the most a task seen running had ahead on the line when
    it was seen (a bound from below, as good as the line).
    """

    MIN_BASELINE = 1.0  # seconds between two sightings to measure the drain over
    MIN_DRAIN = 1e-4  # tasks per second: a queue that does not move waits ~3 h per task
    SURE = 2.0  # the start threshold is known once its bounds are this close

    def __init__(self, *, drain_prior: float, learning_rate: float = 0.3) -> None:
        self.drain = drain_prior  # tasks per second leaving the queue
        self.learning_rate = learning_rate
        self.slots: float | None = None  # a task starts once fewer than this are ahead
        self.floor = 0.0  # a task seen running had this many ahead on the line
        self._seq = 0
        self._ref: Sighting | None = None
        self._drain_learned = False
        self._typical_run = 0.0

    @property
    def learned(self) -> bool:
        """Whether any queued task has been seen yet."""
        return self._ref is not None

    @property
    def seen_at(self) -> float | None:
        """When the newest sighting was (None before any)."""
        return None if self._ref is None else self._ref.at

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

    def start_at(self, seq: int) -> float | None:
        """When task `seq` starts or started (the time its count ahead falls below
        `slots`, on the newest sighting's line), None with nothing seen queued yet."""
        slots = self.slots if self.slots is not None else 1.0
        return self.at_ahead(seq, slots - 1)

    def at_ahead(self, seq: int, ahead: float) -> float | None:
        """When task `seq` has `ahead` tasks before it on the newest sighting's line."""
        ref = self._ref
        if ref is None:
            return None
        return ref.at + (ref.ahead + (seq - ref.seq) - ahead) / self.drain

    @property
    def head_unsure(self) -> float | None:
        """Tasks ahead at which to look whether a task still waits, while the start
        threshold is uncertain: halfway between its bounds (None once they meet)."""
        if self.slots is None or self.slots - self.floor <= self.SURE:
            return None
        return (self.floor + self.slots) / 2

    def wait_for(self, seq: int, now: float) -> float:
        """Seconds until task `seq` starts, from the newest sighting of the queue."""
        return self.wait(self.ahead(seq, now))

    def typical_run(self, seconds: float) -> None:
        """Until a drain is measured, take it as `slots` runs of `seconds` at a time."""
        if seconds > 0:
            self._typical_run = seconds
        if not self._drain_learned and self.slots is not None and self._typical_run:
            self.drain = max(self.slots, 1.0) / self._typical_run

    def seen_queued(self, seq: int, ahead: int, now: float) -> None:
        """A poll found task `seq` queued with `ahead` tasks before it."""
        if self.slots is None or self.slots > ahead:
            # Queued with `ahead` before it: a task starts with fewer ahead than that.
            self.slots = float(ahead)
            self.floor = min(self.floor, self.slots - 1)
            self.typical_run(0.0)
        ref = self._ref
        if ref is not None and now - ref.at >= self.MIN_BASELINE:
            # Both counts are of one FIFO: what left it in between is the drain.
            left = ref.ahead + (seq - ref.seq) - ahead
            self._learn_drain(max(left, 0) / (now - ref.at))
        if ref is None or now >= ref.at:
            self._ref = Sighting(seq, ahead, now)

    def seen_running(self, seq: int, now: float) -> None:
        """A poll found task `seq` started: fewer than `slots` are ahead of it now."""
        if self._ref is None or self.slots is None:
            return
        most = self.slots - 1
        self.floor = max(self.floor, min(self.ahead(seq, now), most))
        if self.ahead(seq, now) > most:  # the queue drained faster than modelled
            self._ref = Sighting(seq, max(0, round(most)), now)

    def _learn_drain(self, rate: float) -> None:
        # A queue that stopped draining is learned too (a floor keeps waits finite).
        self._drain_learned = True
        self.drain = max(self.MIN_DRAIN, self.drain + self.learning_rate * (rate - self.drain))

    def summary(self) -> str:
        """What has been learned, for the log."""
        slots = "unknown" if self.slots is None else f"{self.slots:.0f}"
        return f"queue drains {self.drain:.2f} tasks/s, tasks start with under {slots} ahead"
