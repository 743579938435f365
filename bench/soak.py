"""`python -m bench --soak`: many tasks through a fast emulator, watching the bot age.

The bot runs as its own process with a short `storage.retention_days`, so its periodic job
prunes while the soak runs. Commands are fired closed-loop (a fixed number of tasks in
flight), so the work in progress is the same at the start and at the end: anything that
grows with the task count is state the bot keeps and should not. Sampled every couple of
seconds: the bot's resident memory (/proc/PID/statm), the database's size (file + WAL) and
the event-loop lag the bot reports in its "housekeeping:" log line.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sqlite3
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.processes import Child, cpu_seconds
from bench.run import (
    SCENARIOS,
    Workload,
    _config,
    _fake,
    _say,
    _set_accounts,
    _start_bot,
    _start_emulator,
    channel_id,
    guild_id,
    user_id,
)
from fakediscord import FakeDiscord
from fakediscord.reading import answer, message_text

PAGE_MB = os.sysconf("SC_PAGE_SIZE") / 2**20
_HOUSEKEEPING = re.compile(
    r"housekeeping: pruned (\d+) task\(s\).*rss ([\d.]+) MB; "
    r"loop lag since last pass p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms"
)
_FAILED = re.compile(r"task \d+ failed:")


@dataclass
class Sample:
    """The bot's figures at one moment."""

    seconds: float
    finished: int
    rss_mb: float
    db_mb: float


@dataclass
class LagReport:
    """One housekeeping line: the loop lag over the pass's window, and what it pruned."""

    seconds: float
    finished: int
    pruned: int
    p99_ms: float
    max_ms: float


def rss_mb(pid: int) -> float:
    """Current resident set size of a process (not its peak)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_MB


def db_mb(db: Path) -> float:
    """Size of the SQLite database with its write-ahead log."""
    paths = (db, db.with_name(db.name + "-wal"))
    return sum(p.stat().st_size for p in paths if p.exists()) / 2**20


def _count_active(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute(
            "SELECT COUNT(*) FROM tasks WHERE state IN ('queued', 'submitted', 'done')"
        ).fetchone()
    return int(row[0])


def _trim(fake: FakeDiscord, keep: int) -> None:
    """Forget what the fake recorded long ago, so the bench itself stays small too."""
    fake.requests.clear()
    world = fake.world
    for table in (
        fake.interactions,
        fake.interactions_by_token,
        world.interaction_messages,
        world.nonces,
        world.files,
    ):
        for key in list(table)[: max(0, len(table) - keep)]:
            del table[key]
    for messages in world.channel_messages.values():
        for key in list(messages)[: max(0, len(messages) - keep)]:
            del messages[key]
    for channel, message in list(world.reactions):
        if message not in world.channel_messages.get(channel, {}):
            del world.reactions[(channel, message)]


class Soak:
    """Fires `tasks` /imagine commands keeping `inflight` unfinished, sampling as it goes."""

    def __init__(self, fake: FakeDiscord, bot: Child, db: Path, work: Workload, inflight: int):
        self.fake, self.bot, self.db, self.work, self.inflight = fake, bot, db, work, inflight
        self.acked = 0
        self.unacked = 0
        self.refusals: list[str] = []
        self.samples: list[Sample] = []
        self.lags: list[LagReport] = []
        self._lines_seen = 0
        self._active = 0
        self._start = time.monotonic()
        self._rng = random.Random(work.seed)

    @property
    def finished(self) -> int:
        return self.acked - self._active

    async def run(self) -> None:
        commands: set[asyncio.Task[None]] = set()
        fired = 0
        next_sample = next_say = 0.0
        while fired < self.work.tasks or self._active or commands:
            self._active = await asyncio.to_thread(_count_active, self.db)
            room = self.inflight - self._active - self.unacked
            while room > 0 and fired < self.work.tasks:
                command = asyncio.create_task(self._one(fired))
                commands.add(command)
                command.add_done_callback(commands.discard)
                fired += 1
                room -= 1
            if time.monotonic() >= next_sample:
                self._sample()
                next_sample = time.monotonic() + 2.0
            if time.monotonic() >= next_say:
                _say(f"soak: {self.finished} of {self.work.tasks} finished")
                next_say = time.monotonic() + 30.0
            if self.refusals:
                raise RuntimeError(f"commands refused, e.g. {self.refusals[0]!r}")
            await asyncio.sleep(0.1)
        self._sample()

    async def _one(self, i: int) -> None:
        g = i % self.work.guilds
        self.unacked += 1
        try:
            ix = await self.fake.slash(
                "imagine",
                options={"prompt": f"soak scene {i} {self._rng.random():.6f}", "count": 1},
                user_id=user_id(i % self.work.users),
                guild_id=guild_id(g),
                channel_id=channel_id(g),
            )
            text = message_text(await answer(ix, 120))
        finally:
            self.unacked -= 1
        if "#" in text:
            self.acked += 1
        else:
            self.refusals.append(text)

    def _sample(self) -> None:
        now = time.monotonic() - self._start
        self.samples.append(Sample(now, self.finished, rss_mb(self.bot.proc.pid), db_mb(self.db)))
        lines = self.bot.lines[self._lines_seen :]
        self._lines_seen += len(lines)
        for line in lines:
            if match := _HOUSEKEEPING.search(line):
                pruned, _, _, p99, top = match.groups()
                self.lags.append(LagReport(now, self.finished, int(pruned), float(p99), float(top)))
        _trim(self.fake, keep=400)


def _window(soak: Soak, low: float, high: float) -> dict[str, Any]:
    """Figures over the tasks finished between fractions `low` and `high` of the run."""
    total = soak.work.tasks
    lo, hi = low * total, high * total
    samples = [s for s in soak.samples if lo <= s.finished <= hi] or soak.samples[:1]
    lags = [r for r in soak.lags if lo <= r.finished <= hi]
    return {
        "tasks": f"{round(lo)}-{round(hi)}",
        "rss_mb_median": statistics.median(s.rss_mb for s in samples),
        "rss_mb_max": max(s.rss_mb for s in samples),
        "db_mb_max": max(s.db_mb for s in samples),
        "loop_lag_p99_ms_median": statistics.median(r.p99_ms for r in lags) if lags else None,
        "loop_lag_max_ms": max((r.max_ms for r in lags), default=None),
        "samples": len(samples),
    }


async def run_soak(work: Workload, inflight: int, retention_seconds: float) -> dict[str, Any]:
    """Run the soak; return its figures."""
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        cwd = Path(tmp)
        emu, emu_root, _ = await _start_emulator(work, True, cwd, ["--generation-noise", "0"])
        fake = _fake(work)
        await fake.start()
        bot = None
        try:
            config = cwd / "config.toml"
            _config(config, fake, f"{emu_root}/api/v1b", SCENARIOS["adaptive-batch"], work)
            text = config.read_text()
            text = text.replace("[miaohua]", "[miaohua]\naccount_concurrency = 8")
            days = retention_seconds / 86_400
            text = text.replace("[storage]", f"[storage]\nretention_days = {days!r}")
            config.write_text(text)
            bot = await _start_bot(config, fake, cwd)
            await _set_accounts(fake, work)
            _say(f"soak: {work.tasks} tasks, {inflight} in flight, {work.guilds} servers")
            soak = Soak(fake, bot, cwd / "bot.sqlite3", work, inflight)
            cpu_before = [cpu_seconds(bot.proc.pid), cpu_seconds(emu.proc.pid), time.process_time()]
            started = time.monotonic()
            await soak.run()
            seconds = time.monotonic() - started
            cpu_after = [cpu_seconds(bot.proc.pid), cpu_seconds(emu.proc.pid), time.process_time()]
            cpu = [after - before for after, before in zip(cpu_after, cpu_before, strict=True)]
        finally:
            if bot is not None:
                await bot.stop()
            await fake.stop()
            await emu.stop()
    failed = sum(bool(_FAILED.search(line)) for line in bot.lines)
    return {
        "tasks": work.tasks,
        "finished": soak.finished,
        "failed": failed,
        "inflight": inflight,
        "retention_seconds": retention_seconds,
        "seconds": seconds,
        "tasks_per_second": work.tasks / seconds,
        "cpu_ms_per_task": cpu[0] / work.tasks * 1000,
        "emulator_cpu_ms_per_task": cpu[1] / work.tasks * 1000,
        "bench_cpu_ms_per_task": cpu[2] / work.tasks * 1000,
        "pruned_tasks": sum(r.pruned for r in soak.lags),
        "start": _window(soak, 0.0, 0.1),
        "middle": _window(soak, 0.45, 0.55),
        "end": _window(soak, 0.9, 1.0),
        "samples": [asdict(s) for s in soak.samples],
        "lag_reports": [asdict(r) for r in soak.lags],
    }


def _rss(window: dict[str, Any]) -> str:
    return f"{window['rss_mb_median']:.0f} / {window['rss_mb_max']:.0f}"


def render_soak(report: dict[str, Any]) -> str:
    """A Markdown table: the start, middle and end of the soak side by side."""
    parts = [report["start"], report["middle"], report["end"]]

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    rows = [
        ("tasks finished", lambda w: w["tasks"]),
        ("bot RSS median / max (MB)", _rss),
        ("database + WAL max (MB)", lambda w: f"{w['db_mb_max']:.1f}"),
        ("loop lag p99, median of passes (ms)", lambda w: ms(w["loop_lag_p99_ms_median"])),
        ("loop lag max (ms)", lambda w: ms(w["loop_lag_max_ms"])),
    ]
    lines = ["| soak | start (first 10 %) | middle | end (last 10 %) |", "|---|---|---|---|"]
    lines += [f"| {label} | " + " | ".join(cell(w) for w in parts) + " |" for label, cell in rows]
    lines.append(
        f"\n{report['finished']} tasks finished ({report['failed']} failed) in "
        f"{report['seconds']:.0f} s ({report['tasks_per_second']:.1f}/s), "
        f"{report['inflight']} in flight; CPU per task: bot {report['cpu_ms_per_task']:.1f} ms, "
        f"emulator {report['emulator_cpu_ms_per_task']:.1f} ms, "
        f"fake Discord and harness {report['bench_cpu_ms_per_task']:.1f} ms; "
        f"{report['pruned_tasks']} finished tasks pruned "
        f"(retention {report['retention_seconds']:g} s)"
    )
    return "\n".join(lines)
