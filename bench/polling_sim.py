"""The bench's polling, replayed offline in virtual time against the bot's real strategies.

Usage: `.venv/bin/python -m bench.polling_sim [--tasks 500 --seeds 5 --generation-time 2]`

What it models (each as bench/run.py and the emulator do it):
- the workload: `--tasks` commands at `--rate` per second over `--guilds` servers, the
  bench's size and image-count mix, each server's account running at most
  `account_concurrency` tasks at the service (the next is submitted when a poll finds one
  done, as the bot's dispatcher does);
- the service: one FIFO for everyone with `--workers` slots, a task's duration
  `generation_time * pixels / 512^2 * (1 + 0.25 (n - 1)) * U(0.8, 1.2)`, and `wait_time`
  the count of unfinished tasks submitted before a queued one (running ones included);
- the poller: a task's next poll when the strategy says, its re-check at fire time (a
  postponed poll calls nothing), a small round trip per call, and with `--batch` the
  ride-along of the account's other tasks and the batch beat, without re-checks (the
  poller's 50 ms coalescing of timers is left out);
- the oracle: one poll at each task's finish.

It drives the real strategy classes on a virtual clock, so a run of the 500-task workload
takes a fraction of a second; it prints polls per task and seen p50/p95 (finish to the poll
that saw it) per strategy, the median over the seeds.
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import sys
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from bench.run import COUNTS, SIZES
from bot.jobs.polling import AdaptiveInterval, FixedInterval, PollStrategy, parse_size
from bot.store import Task

ROUND_TRIP = 0.01  # seconds from sending a poll to handling its answer, on loopback
SUBMIT_DELAY = 0.02  # a slot freed to the next task's submission answered (store + HTTP)
COALESCE = 0.05  # the poller fires timers due this soon together (Poller.coalesce)
BATCH_INTERVAL = 0.5  # Poller.batch_interval


@dataclass(slots=True)
class SimTask:
    """A command of the workload and its life at the service."""

    id: int
    guild: int
    size: str
    count: int
    command_at: float
    submitted_at: float | None = None
    order: int = -1  # place in the service's FIFO
    start: float = 0.0
    done: float = 0.0
    seen: float | None = None
    polls: int = 0


@dataclass
class Service:
    """The emulator's plan: FIFO over `workers` slots, durations drawn at submission."""

    workers: int
    generation_time: float
    rng: random.Random
    report_queue: bool = True
    free_at: list[float] = field(default_factory=list)
    fifo: list[SimTask] = field(default_factory=list)
    first_unfinished: int = 0

    def __post_init__(self) -> None:
        self.free_at = [0.0] * self.workers

    def submit(self, task: SimTask, now: float) -> None:
        width, height = parse_size(task.size)
        duration = (
            self.generation_time
            * (width * height / 512**2)
            * (1 + 0.25 * (task.count - 1))
            * self.rng.uniform(0.8, 1.2)
        )
        task.start = max(now, heapq.heappop(self.free_at))
        task.done = task.start + duration
        heapq.heappush(self.free_at, task.done)
        task.order = len(self.fifo)
        self.fifo.append(task)

    def wait_time(self, task: SimTask, now: float) -> int | None:
        """Tasks ahead of a queued task (0 once it runs); None from a service without queue."""
        if not self.report_queue:
            return None if task.polls == 0 else 0
        if now >= task.start:
            return 0
        while self.first_unfinished < len(self.fifo) and (
            self.fifo[self.first_unfinished].done <= now
        ):
            self.first_unfinished += 1
        return sum(1 for ahead in self.fifo[self.first_unfinished : task.order] if ahead.done > now)


@dataclass
class Workload:
    """The bench's workload (bench/run.py defaults)."""

    tasks: int = 500
    guilds: int = 50
    rate: float = 50.0
    generation_time: float = 2.0
    workers: int = 48
    prior: float = 3.0  # the bot's expected_generation_time
    account_concurrency: int = 2
    batch: bool = False
    report_queue: bool = True


@dataclass
class Outcome:
    """One strategy's run of the workload."""

    strategy: str
    polls_per_task: float
    seen_p50: float
    seen_p95: float
    queued_p50: float
    learned: str = ""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Simulation:
    """One run of the workload under one strategy, in virtual time."""

    def __init__(
        self, work: Workload, seed: int, make: Callable[[Callable[[], float]], PollStrategy] | None
    ) -> None:
        self.work = work
        self.now = 0.0
        self.strategy = None if make is None else make(lambda: self.now)
        rng = random.Random(seed)
        self.service = Service(work.workers, work.generation_time, random.Random(seed + 1))
        self.service.report_queue = work.report_queue
        self.tasks = [
            SimTask(i, i % work.guilds, rng.choice(SIZES), rng.choice(COUNTS), i / work.rate)
            for i in range(work.tasks)
        ]
        self.events: list[tuple[float, int, str, int]] = []
        self.version: dict[int, int] = defaultdict(int)  # a task's current timer
        self.lines: dict[int, deque[SimTask]] = defaultdict(deque)
        self.running: dict[int, set[int]] = defaultdict(set)
        self.calls = 0
        self._n = 0

    def push(self, at: float, kind: str, task_id: int) -> None:
        self._n += 1
        heapq.heappush(self.events, (at, self._n, kind, task_id))

    def run(self) -> list[SimTask]:
        for task in self.tasks:
            self.push(task.command_at, "command", task.id)
        while self.events:
            at, _, kind, task_id = heapq.heappop(self.events)
            self.now = at
            task = self.tasks[task_id]
            if kind == "command":
                self.lines[task.guild].append(task)
                self.dispatch(task.guild)
            elif kind == "submit":
                self.submitted(task)
            elif int(kind[5:]) == self.version[task_id] and task.seen is None:  # a poll
                self.fire(task)
        return self.tasks

    def dispatch(self, guild: int) -> None:
        line, running = self.lines[guild], self.running[guild]
        while line and len(running) < self.work.account_concurrency:
            task = line.popleft()
            running.add(task.id)
            self.push(self.now + SUBMIT_DELAY, "submit", task.id)

    def submitted(self, task: SimTask) -> None:
        self.service.submit(task, self.now - SUBMIT_DELAY / 2)
        task.submitted_at = self.now
        if self.strategy is None:  # the oracle: told the finish
            self.schedule(task, task.done + ROUND_TRIP / 2 - self.now)
        else:
            self.schedule(task, self.strategy.next_interval(self.as_task(task), None, 0, 0.0))

    def schedule(self, task: SimTask, delay: float) -> None:
        if self.work.batch:
            delay = min(delay, BATCH_INTERVAL)
        self.version[task.id] += 1
        self.push(self.now + max(0.0, delay), f"poll:{self.version[task.id]}", task.id)

    def fire(self, task: SimTask) -> None:
        recheck = getattr(self.strategy, "recheck", None)
        if recheck is not None and not self.work.batch:  # the poller's batch beat: no re-check
            later = recheck(self.as_task(task), self.elapsed(task))
            if later is not None and later > COALESCE:
                self.schedule(task, later)  # postponed: no call
                return
        # A timer due within `coalesce` fires with this one: firing early is what it costs.
        polled = [task]
        if self.work.batch:  # the account's other tasks ride along in the same call
            polled += [
                self.tasks[other]
                for other in self.running[task.guild]
                if other != task.id and self.tasks[other].submitted_at is not None
            ]
        self.calls += 1 if self.work.batch else len(polled)
        at_service = self.now + ROUND_TRIP / 2
        self.now += ROUND_TRIP
        for each in polled:
            self.version[each.id] += 1
            self.answer(each, at_service)

    def answer(self, task: SimTask, at_service: float) -> None:
        if task.done <= at_service:
            task.seen = at_service
            if self.strategy is not None:
                self.strategy.completed(self.as_task(task), self.elapsed(task))
            self.running[task.guild].discard(task.id)
            self.dispatch(task.guild)
            return
        wait = self.service.wait_time(task, at_service)
        task.polls += 1
        if self.strategy is None:
            self.schedule(task, task.done + ROUND_TRIP / 2 - self.now)
            return
        view = self.as_task(task)
        self.schedule(task, self.strategy.next_interval(view, wait, task.polls, self.elapsed(task)))

    def elapsed(self, task: SimTask) -> float:
        return self.now - (task.submitted_at or self.now)

    @staticmethod
    def as_task(task: SimTask) -> Task:
        # The strategies read a task's id, size and count only.
        return cast(Task, task)


def strategies(work: Workload) -> dict[str, Callable[[Callable[[], float]], PollStrategy] | None]:
    return {
        "adaptive": lambda clock: AdaptiveInterval(base_seconds=work.prior, clock=clock),
        "fixed-1s": lambda clock: FixedInterval(1.0),
        "fixed-5s": lambda clock: FixedInterval(5.0),
        "oracle": None,
    }


def simulate(work: Workload, name: str, seed: int) -> Outcome:
    """Run the workload once under strategy `name`."""
    sim = Simulation(work, seed, strategies(work)[name])
    tasks = sim.run()
    seen = [t.seen - t.done for t in tasks if t.seen is not None]
    queued = [t.start - (t.submitted_at or 0.0) for t in tasks]
    learned = getattr(sim.strategy, "summary", lambda: "")()
    return Outcome(
        name,
        sim.calls / len(tasks),
        percentile(seen, 0.5),
        percentile(seen, 0.95),
        percentile(queued, 0.5),
        learned,
    )


def median_outcome(work: Workload, name: str, seeds: list[int]) -> tuple[Outcome, Outcome]:
    """The median and the worst (highest seen p95) of the runs over `seeds`."""
    runs = [simulate(work, name, seed) for seed in seeds]
    worst = max(runs, key=lambda o: o.seen_p95)
    median = Outcome(
        name,
        statistics.median(o.polls_per_task for o in runs),
        statistics.median(o.seen_p50 for o in runs),
        statistics.median(o.seen_p95 for o in runs),
        statistics.median(o.queued_p50 for o in runs),
        runs[0].learned,
    )
    return median, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.polling_sim", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--guilds", type=int, default=50)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--generation-time", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=48)
    parser.add_argument("--expected-generation-time", type=float, default=3.0)
    parser.add_argument("--account-concurrency", type=int, default=2)
    parser.add_argument("--batch", action="store_true", help="batch polls with ride-along")
    parser.add_argument("--no-queue", action="store_true", help="the service reports no queue")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--strategies", default="adaptive,fixed-1s,fixed-5s,oracle")
    args = parser.parse_args(argv)
    work = Workload(
        args.tasks,
        args.guilds,
        args.rate,
        args.generation_time,
        args.workers,
        args.expected_generation_time,
        args.account_concurrency,
        args.batch,
        not args.no_queue,
    )
    seeds = list(range(1, args.seeds + 1))
    print(
        f"{work.tasks} tasks at {work.rate:g}/s over {work.guilds} servers, "
        f"generation_time {work.generation_time:g} s (prior {work.prior:g} s), "
        f"{work.workers} workers, median of {len(seeds)} seeds"
    )
    print(f"{'strategy':<10} {'polls/task':>10} {'seen p50':>9} {'seen p95':>9} "
          f"{'worst p95':>9} {'queued p50':>10}")  # fmt: skip
    for name in args.strategies.split(","):
        median, worst = median_outcome(work, name, seeds)
        print(
            f"{name:<10} {median.polls_per_task:>10.2f} {median.seen_p50:>9.2f} "
            f"{median.seen_p95:>9.2f} {worst.seen_p95:>9.2f} {median.queued_p50:>10.2f}"
        )
        if median.learned:
            print(f"{'':<10} learned: {median.learned}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
