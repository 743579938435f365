"""The bench's polling, replayed offline in virtual time against the bot's real strategies.

Usage: `.venv/bin/python -m bench.polling_sim [--tasks 500 --seeds 5 --generation-time 2]`

Seed N plans the commands as the bench does with `--seed N` (the bench's default, 7, is
its own workload; the service's run times are drawn by the simulator's own generator).

What it models (each as bench/run.py and the emulator do it):
- the workload: `--tasks` commands at `--rate` per second over `--guilds` servers, the
  bench's size and image-count mix, each server's account running at most
  `account_concurrency` tasks at the service (the next is submitted when a poll finds one
  done, as the bot's dispatcher does);
- the service: one FIFO for everyone with `--workers` slots, a task's duration
  `generation_time * pixels / 512^2 * (1 + 0.25 (n - 1)) * U(0.8, 1.2)`, and `wait_time`
  the count of unfinished tasks submitted before a queued one (running ones included);
- the account's rate limit: every v1b call of an account (polls and submissions alike)
  waits for a token of its bucket, `requests_per_second` (5) with a burst of 1, as
  bot/v1b/client.py sets it: calls of one account are at least 0.2 s apart, so the
  submission that follows a poll finding a task done waits for the next token, and
  so does a second task's poll falling due just after the first's;
- the slot's turnaround: a poll finding a task done, its result stored, the slot freed and
  the dispatcher's submission sent (`DONE_TO_SUBMIT`), then the token; the bot counts a
  task's time from when it stored the submission (`SUBMIT_STORED` after the answer);
- the poller: a task's next poll when the strategy says, its re-check at fire time (a
  postponed poll calls nothing), a small round trip per call, and with `--batch` the
  ride-along of the account's other tasks and the batch beat, without re-checks; the
  poller wakes for the first timer due and fires every one due within its `coalesce`
  (50 ms) with it, early;
- the oracle: one poll `ORACLE_EPSILON` after each task's finish, as bench/oracle.py.

It drives the real strategy classes on a virtual clock, so a run of the 500-task workload
takes a fraction of a second; it prints polls per task and seen p50/p95 (finish to the poll
that saw it) per strategy, the median over the seeds, and where the polls go: per task of
the first burst (submitted before anything is learned), of later tasks that waited in the
service's queue, and of later ones that started at once.
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

from bench.run import Workload as BenchWorkload
from bot.jobs.polling import AdaptiveInterval, FixedInterval, PollStrategy, parse_size
from bot.store import Task

ROUND_TRIP = 0.01  # seconds from sending a poll to handling its answer, on loopback
ACCOUNT_RATE = 5.0  # v1b calls per second per account (MiaohuaSettings.requests_per_second)
# A poll found a task done -> its result stored, the slot freed, the next submission sent
# (a store write and the dispatcher's turn on a busy event loop).
DONE_TO_SUBMIT = 0.05
SUBMIT_STORED = 0.02  # a submission answered -> stored: the bot's start of the task's time
ORACLE_EPSILON = 0.06  # bench/oracle.py polls this long after the planned finish
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

    def wait_time(self, task: SimTask, now: float, horizon: float) -> int | None:
        """Tasks ahead of a queued task at `now` (0 once it runs); None from a service
        without queue. `horizon` (<= now) is a time no later call asks about."""
        if not self.report_queue:
            return None if task.polls == 0 else 0
        if now >= task.start:
            return 0
        while self.first_unfinished < len(self.fifo) and (
            self.fifo[self.first_unfinished].done <= horizon
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
    # Polls per task (calls, but for `--batch`) by group: where the polls go.
    where: dict[str, float] = field(default_factory=dict)


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
        self.service = Service(work.workers, work.generation_time, random.Random(seed + 1))
        self.service.report_queue = work.report_queue
        # The bench's own plan of commands for this seed (seed 7 is the bench's workload).
        plan = BenchWorkload(work.tasks, work.guilds, 1, work.rate, 0.0, 0, seed=seed)
        plan.plan()
        self.tasks = [
            SimTask(i, cmd["guild"], cmd["size"], cmd["count"], i / work.rate)
            for i, cmd in enumerate(plan.commands)
        ]
        # (time, order, kind, task id, when the call reached the service for "answer")
        self.events: list[tuple[float, int, str, int, float]] = []
        self.version: dict[int, int] = defaultdict(int)  # a task's current timer
        self.lines: dict[int, deque[SimTask]] = defaultdict(deque)
        self.running: dict[int, set[int]] = defaultdict(set)
        self.in_flight: set[int] = set()  # tasks whose poll awaits its answer
        self.token_at: dict[int, float] = defaultdict(float)  # an account's next free token
        self.sent: list[tuple[int, float]] = []  # (account, time) of every call
        self.calls = 0
        self._n = 0

    def push(self, at: float, kind: str, task_id: int, reached: float = 0.0) -> None:
        self._n += 1
        heapq.heappush(self.events, (at, self._n, kind, task_id, reached))

    def run(self) -> list[SimTask]:
        for task in self.tasks:
            self.push(task.command_at, "command", task.id)
        while self.events:
            at, _, kind, task_id, reached = heapq.heappop(self.events)
            self.now = at
            task = self.tasks[task_id]
            if kind == "command":
                self.lines[task.guild].append(task)
                self.dispatch(task.guild)
            elif kind == "submit":
                self.submit(task)
            elif kind == "submitted":
                self.submitted(task)
            elif kind == "answer":
                self.answer(task, reached)
            elif self.live(kind, task):  # a poll: those due within COALESCE fire with it
                for other in [task, *self.coalesced()]:
                    self.fire(other)
        return self.tasks

    def live(self, kind: str, task: SimTask) -> bool:
        return int(kind[5:]) == self.version[task.id] and task.seen is None

    def coalesced(self) -> list[SimTask]:
        """The other polls due within `COALESCE`, taken off the queue: the poller wakes
        for the first timer due and fires every one due by then + its `coalesce`."""
        fired, kept = [], []
        while self.events and self.events[0][0] <= self.now + COALESCE:
            event = heapq.heappop(self.events)
            task = self.tasks[event[3]]
            if event[2].startswith("poll:"):
                if self.live(event[2], task):
                    fired.append(task)
            else:
                kept.append(event)
        for event in kept:
            heapq.heappush(self.events, event)
        return fired

    def call_at(self, guild: int, wanted: float) -> float:
        """When a call of the account wanted at `wanted` is sent: its bucket holds one
        token, refilled at `ACCOUNT_RATE` (first come, first served)."""
        at = max(wanted, self.token_at[guild])
        self.token_at[guild] = at + 1 / ACCOUNT_RATE
        self.sent.append((guild, at))
        return at

    def dispatch(self, guild: int, delay: float = 0.0) -> None:
        line, running = self.lines[guild], self.running[guild]
        while line and len(running) < self.work.account_concurrency:
            task = line.popleft()
            running.add(task.id)
            self.push(self.now + delay, "submit", task.id)

    def submit(self, task: SimTask) -> None:
        at = self.call_at(task.guild, self.now)
        self.service.submit(task, at + ROUND_TRIP / 2)
        self.push(at + ROUND_TRIP + SUBMIT_STORED, "submitted", task.id)

    def submitted(self, task: SimTask) -> None:
        task.submitted_at = self.now
        if self.strategy is None:  # the oracle: told the finish
            self.schedule(task, task.done + ORACLE_EPSILON - self.now)
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
        polled = [task]
        if self.work.batch:  # the account's other tasks ride along in the same call
            polled += [
                self.tasks[other]
                for other in self.running[task.guild]
                if other != task.id
                and self.tasks[other].submitted_at is not None
                and other not in self.in_flight
            ]
        self.calls += 1 if self.work.batch else len(polled)
        at = self.call_at(task.guild, self.now)
        for each in polled:
            self.version[each.id] += 1  # its timer is spent
            self.in_flight.add(each.id)
            self.push(at + ROUND_TRIP, "answer", each.id, at + ROUND_TRIP / 2)

    def answer(self, task: SimTask, reached: float) -> None:
        self.in_flight.discard(task.id)
        if task.done <= reached:
            task.seen = reached
            if self.strategy is not None:
                self.strategy.completed(self.as_task(task), self.elapsed(task))
            self.running[task.guild].discard(task.id)
            self.dispatch(task.guild, DONE_TO_SUBMIT)
            return
        wait = self.service.wait_time(task, reached, self.now - ROUND_TRIP)
        task.polls += 1
        if self.strategy is None:
            self.schedule(task, task.done + ORACLE_EPSILON - self.now)
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
        where(tasks, work.guilds * work.account_concurrency),
    )


def where(tasks: list[SimTask], burst: int) -> dict[str, float]:
    """Polls per task of the first `burst` submitted (before anything is learned), of
    later ones that waited in the service's queue, and of later ones that started at once."""
    first = sorted(tasks, key=lambda t: t.submitted_at or 0.0)[:burst]
    ids = {t.id for t in first}
    groups = {
        "first burst": first,
        "queued": [t for t in tasks if t.id not in ids and t.start - (t.submitted_at or 0) > 0.05],
        "not queued": [
            t for t in tasks if t.id not in ids and t.start - (t.submitted_at or 0) <= 0.05
        ],
    }
    return {
        name: sum(t.polls + 1 for t in group) / len(group)
        for name, group in groups.items()
        if group
    }


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
        {
            name: statistics.median(o.where[name] for o in runs if name in o.where)
            for name in runs[0].where
        },
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
    parser.add_argument(
        "--first-seed", type=int, default=7, help="seeds run from here (7: the bench's workload)"
    )
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
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
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
        groups = ", ".join(f"{name} {polls:.2f}" for name, polls in median.where.items())
        print(f"{'':<10} polls per task: {groups}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
