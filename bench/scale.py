"""`python -m bench --scale`: what the bot costs as the number of pending tasks grows.

For each level (100, 1,000 and 10,000 pending tasks by default) a fresh emulator (its own
process, one account per server, generating so slowly that no task finishes while
measured), a fake Discord with 1,000 servers and the bot (its own process, exactly as
`miaohua-bot run` builds it) are started. The pending tasks are put in place before the bot
starts, through the bot's own store and v1b client: each is really submitted to the
emulator with its server's account, polled once there (so its `wait_time` is stored as a
running bot would have stored it) and recorded as 'submitted'. The bot reloads them at
start and polls them as it would after a restart. Then, after a warm-up:

- the idle window: nothing but the pending tasks; the bot's CPU seconds per poll and per
  pending task per minute, its resident memory, the event-loop lag;
- the load window: `/imagine` commands arrive at `--rate` per second, spread over the
  servers; acknowledgement latency (interaction sent -> the bot's initial response at the
  fake Discord), loop lag and CPU again. These tasks stay pending too.

The event-loop lag is the bot's own sampler (bot/diagnostics.py, a task sleeping 0.1 s),
each sample written to a file by `bench.lagged`. The hot queries' `EXPLAIN QUERY PLAN` is
read on the level's database afterwards. Writes bench/results/scale-<date>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import signal
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench.harness_pauses import HarnessWatch
from bench.lagged import read_samples
from bench.processes import Child, cpu_seconds, peak_rss_mb
from bench.report import percentile
from bench.run import (
    Scenario,
    Workload,
    _config,
    _env,
    _fake,
    _machine,
    _say,
    _start_emulator,
    account,
    channel_id,
    guild_id,
    user_id,
)
from bot.crypto import SecretBox, mask_email
from bot.jobs.service import task_params
from bot.store import Store
from bot.store.hot_queries import HOT_QUERIES, reads_without_index
from bot.v1b import V1bClient
from fakediscord import FakeDiscord
from fakediscord.reading import answer, message_text

SECRET = "bench-secret"  # the security.secret_key bench.run's configuration sets
GENERATION_TIME = 1_000_000.0  # seconds per image: nothing finishes while measured
MEMBERS_PER_GUILD = 2
POLL_ENDPOINTS = ("task_result", "task_results")
_DIGITS = re.compile(r"\d+")


@dataclass
class ScaleOptions:
    """The run's shape; every level gets the same."""

    levels: list[int]
    rate: float = 200.0
    seconds: float = 30.0  # each window
    warmup: float | None = None  # None: 20 s after the reloaded tasks' first polls
    guilds: int = 1000
    workers: int = 48
    batch: bool = False  # the emulator offers the batch endpoint (the real service does not)
    discord_limits: bool = True
    profile: Path | None = None


@dataclass
class Window:
    """What one measurement window found."""

    seconds: float
    pending_start: int
    pending_end: int
    polls: int
    polls_per_s: float
    cpu_s: float
    cpu_ms_per_poll: float
    cpu_ms_per_pending_task_per_min: float
    loop_lag_p50_ms: float
    loop_lag_p99_ms: float
    loop_lag_max_ms: float
    lag_samples: int
    emulator_cpu_s: float = 0.0
    harness_cpu_s: float = 0.0  # this process: the fake Discord and the commands fired
    # This process's own loop lag: a pause here would be counted in the bot's acks.
    harness_lag_p99_ms: float = 0.0
    harness_lag_max_ms: float = 0.0
    commands: int = 0
    ack_p50_ms: float | None = None
    ack_p99_ms: float | None = None
    refused: int = 0
    too_late: int = 0  # acknowledged after Discord's 3-second window: the member saw nothing
    # What the refused commands were told, numbers masked, and how many were told each.
    refusals: dict[str, int] = field(default_factory=dict)


@dataclass
class Level:
    """One level: the pending tasks put in place, both windows and the memory."""

    pending: int
    guilds: int
    seed_s: float
    start_s: float  # bot process started -> commands registered and tasks reloaded
    warmup_s: float
    # The loop lag from the bot's start to the end of the warm-up: the reload's first polls.
    reload_lag_p99_ms: float
    reload_lag_max_ms: float
    idle: Window
    load: Window
    rss_mb: float
    peak_rss_mb: float
    query_plans: dict[str, list[str]]
    unindexed: dict[str, list[str]]


def _workload(opts: ScaleOptions, pending: int) -> Workload:
    commands = int(opts.rate * opts.seconds)
    work = Workload(
        tasks=pending + commands,  # bench.run's config sizes the member limits from this
        guilds=opts.guilds,
        users=opts.guilds * MEMBERS_PER_GUILD,
        rate=opts.rate,
        generation_time=GENERATION_TIME,
        workers=opts.workers,
        discord_limits=opts.discord_limits,
    )
    return work


def _bot_config(
    path: Path, fake: FakeDiscord, emu_url: str, work: Workload, batch: bool, pending: int
) -> None:
    """bench.run's configuration, with limits that never refuse this load:
    `limits.user_running` above anything fired, `limits.user_queued` 0 beyond those,
    `limits.daily_quota` 10 images per task fired, `miaohua.busy_backoff` 1 s.
    `miaohua.requests_per_second` stays at its default (5 per account): a server's ten
    pending tasks, polled at most every 10 s, ask for one call per second."""
    _config(path, fake, emu_url, Scenario("scale", "adaptive", 1.0, batch=batch), work)
    # A server's slots at the service: its share of the pending tasks (at least the default
    # 2), so commands fired at a server whose slots are full wait in the bot's queue.
    slots = max(2, -(-pending // work.guilds))
    text = path.read_text().replace(
        "[miaohua]", f"[miaohua]\naccount_concurrency = {slots}\nbusy_backoff = 1.0"
    )
    path.write_text(text.replace("[limits]", "[limits]\nuser_queued = 0"))


async def _seed(db: Path, emu_url: str, opts: ScaleOptions, pending: int) -> None:
    """Accounts for every server and `pending` tasks submitted to the emulator, stored as a
    running bot stores them (so the bot, started next, reloads and polls them)."""
    store = await Store.open(db)
    box = SecretBox.from_passphrase(SECRET)
    client = V1bClient(emu_url, requests_per_second=1000.0)
    sessions = {}
    try:

        async def set_account(g: int) -> None:
            email, password = account(g)
            tokens: list[str] = []

            async def keep(token: str) -> None:
                tokens.append(token)

            session = client.account(email, password, on_token=keep)
            await session.login()
            row = await store.accounts.replace(
                guild_id=guild_id(g),
                email_encrypted=box.encrypt(email),
                password_encrypted=box.encrypt(password),
                token_encrypted=box.encrypt(tokens[-1]),
                email_hint=mask_email(email),
                last_login_at=time.time(),
                token_ok=True,
            )
            sessions[g] = (row.id, session)

        await _in_chunks([set_account(g) for g in range(opts.guilds)], 50)
        model = (await sessions[0][1].generation_form()).models[0]

        async def submit(i: int) -> None:
            g = i % opts.guilds
            account_id, session = sessions[g]
            task = await store.tasks.create(
                guild_id=guild_id(g),
                channel_id=channel_id(g),
                user_id=user_id(g + opts.guilds * (i // opts.guilds % MEMBERS_PER_GUILD)),
                kind="t2i",
                model=model,
                prompt=f"pending scene {i}",
                count=1,
                scale=7,
                size="512x512",
            )
            service_id = await session.submit_task(task_params(task))
            await store.tasks.mark_submitted(task.id, service_id, account_id)
            result = await session.task_result(service_id)
            await store.tasks.record_progress(task.id, result.wait_time, None)

        await _in_chunks([submit(i) for i in range(pending)], 100)
    finally:
        await client.close()
        await store.close()


async def _in_chunks(coros: list[Any], size: int) -> None:
    for start in range(0, len(coros), size):
        await asyncio.gather(*coros[start : start + size])


async def _poll_calls(url: str, admin_token: str) -> int:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/admin/stats", headers=headers) as resp,
    ):
        resp.raise_for_status()
        stats = await resp.json()
    return sum(int(stats["calls"].get(name, 0)) for name in POLL_ENDPOINTS)


def _pending_in(db: Path) -> int:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        row = conn.execute("SELECT COUNT(*) FROM tasks WHERE state = 'submitted'").fetchone()
    return int(row[0])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _Meter:
    """The bot's CPU, the emulator's poll count and the pending tasks over one window."""

    def __init__(
        self, bot: Child, emu: Child, db: Path, emu_root: str, emu_admin: str, lags: Path
    ) -> None:
        self.bot, self.emu, self.db, self.lags = bot, emu, db, lags
        self.emu_root, self.emu_admin = emu_root, emu_admin

    async def start(self) -> None:
        self.harness = HarnessWatch()
        self.harness.start()
        self.pending_start = await asyncio.to_thread(_pending_in, self.db)
        self.polls_start = await _poll_calls(self.emu_root, self.emu_admin)
        self.cpu_start = cpu_seconds(self.bot.proc.pid)
        self.emu_cpu_start = cpu_seconds(self.emu.proc.pid)
        self.own_cpu_start = time.process_time()
        self.wall_start = time.time()

    async def stop(
        self,
        acks: list[float] | None = None,
        refusals: Counter[str] | None = None,
        too_late: int = 0,
    ) -> Window:
        cpu = cpu_seconds(self.bot.proc.pid) - self.cpu_start
        emu_cpu = cpu_seconds(self.emu.proc.pid) - self.emu_cpu_start
        own_cpu = time.process_time() - self.own_cpu_start
        wall_end = time.time()
        harness_lag_p99, harness_lag_max = await self.harness.stop()
        seconds = wall_end - self.wall_start
        polls = await _poll_calls(self.emu_root, self.emu_admin) - self.polls_start
        pending_end = await asyncio.to_thread(_pending_in, self.db)
        lags = [
            lag for at, lag in read_samples(str(self.lags)) if self.wall_start <= at <= wall_end
        ]
        mean_pending = max(1.0, (self.pending_start + pending_end) / 2)
        return Window(
            seconds=round(seconds, 2),
            pending_start=self.pending_start,
            pending_end=pending_end,
            polls=polls,
            polls_per_s=polls / seconds,
            cpu_s=cpu,
            cpu_ms_per_poll=cpu / polls * 1000 if polls else 0.0,
            cpu_ms_per_pending_task_per_min=cpu / mean_pending / (seconds / 60) * 1000,
            loop_lag_p50_ms=percentile(lags, 0.5) * 1000,
            loop_lag_p99_ms=percentile(lags, 0.99) * 1000,
            loop_lag_max_ms=max(lags, default=0.0) * 1000,
            lag_samples=len(lags),
            emulator_cpu_s=emu_cpu,
            harness_cpu_s=own_cpu,
            harness_lag_p99_ms=harness_lag_p99,
            harness_lag_max_ms=harness_lag_max,
            commands=len(acks) if acks is not None else 0,
            ack_p50_ms=percentile(acks, 0.5) * 1000 if acks else None,
            ack_p99_ms=percentile(acks, 0.99) * 1000 if acks else None,
            refused=sum((refusals or Counter()).values()),
            refusals=dict((refusals or Counter()).most_common()),
            too_late=too_late,
        )


async def _fire(
    fake: FakeDiscord, opts: ScaleOptions, level: int
) -> tuple[list[float], Counter[str], int]:
    """`/imagine` at the rate for the window, round-robin over servers and their members;
    the acknowledgement latencies, what the refused commands were told, and how many were
    acknowledged too late (the fake Discord, like Discord, drops an interaction not
    acknowledged within 3 s: the member saw no answer)."""
    acks: list[float] = []
    refusals: Counter[str] = Counter()
    too_late = 0

    async def one(i: int) -> None:
        nonlocal too_late
        g = (i * 7 + level) % opts.guilds  # a different order of servers from the pending
        member = g + opts.guilds * (i // opts.guilds % MEMBERS_PER_GUILD)
        ix = await fake.slash(
            "imagine",
            options={"prompt": f"scale scene {i}", "size": "512x512", "count": 1},
            user_id=user_id(member),
            guild_id=guild_id(g),
            channel_id=channel_id(g),
        )
        try:
            answered_at = await fake.changes.wait(lambda: ix.callback_at, 60, "a callback")
            assert ix.sent_at is not None
            acks.append(answered_at - ix.sent_at)
            if ix.expired:
                too_late += 1
                return
            text = message_text(await answer(ix, 60))
        except TimeoutError:
            # Counted, not fatal: one lost answer must not end the run that would show it.
            refusals["(no answer within 60 s)"] += 1
            return
        if "#" not in text:
            if not refusals:
                _say(f"refused: {text!r}")
            refusals[_DIGITS.sub("N", text)[:200]] += 1

    jobs = []
    start = time.perf_counter()
    for i in range(int(opts.rate * opts.seconds)):
        delay = start + i / opts.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.append(asyncio.create_task(one(i)))
    await asyncio.gather(*jobs)
    return acks, refusals, too_late


def _query_plans(db: Path) -> dict[str, list[str]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as conn:
        return {
            name: [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
            for name, (sql, params) in HOT_QUERIES.items()
        }


async def _wait_started(bot: Child, fake: FakeDiscord, timeout: float) -> None:
    await bot.wait_for_line(r"generation service started", timeout)
    deadline = time.monotonic() + timeout
    while "imagine" not in fake.world.command_names():
        if time.monotonic() > deadline or bot.proc.returncode is not None:
            raise RuntimeError(
                "the bot never registered its commands:\n" + "\n".join(bot.lines[-20:])
            )
        await asyncio.sleep(0.05)


async def run_level(opts: ScaleOptions, pending: int) -> Level:
    """One level, from fresh processes to their exit."""
    work = _workload(opts, pending)
    with tempfile.TemporaryDirectory(prefix=f"bench-scale-{pending}-") as tmp:
        cwd = Path(tmp)
        db, lags = cwd / "bot.sqlite3", cwd / "lag.log"
        emu, emu_root, emu_admin = await _start_emulator(work, opts.batch, cwd, [])
        fake = _fake(work)
        await fake.start()
        bot = None
        try:
            began = time.monotonic()
            await _seed(db, f"{emu_root}/api/v1b", opts, pending)
            seed_s = time.monotonic() - began
            _say(f"{pending} pending: seeded in {seed_s:.1f} s, starting the bot")
            config = cwd / "config.toml"
            _bot_config(config, fake, f"{emu_root}/api/v1b", work, opts.batch, pending)
            module = ["bench.lagged", str(lags), "bot"]
            if opts.profile is not None:
                prof = opts.profile.with_name(f"{opts.profile.stem}-{pending}.prof")
                module = ["bench.lagged", str(lags), "bench.profiled", str(prof.resolve())]
            bot = await Child.spawn(
                "bot", "run", "--config", str(config), env=_env(), cwd=cwd, module=module
            )
            started_at = time.time()
            await _wait_started(bot, fake, 120)
            start_s = time.monotonic() - bot.started
            # The bot spreads the reloaded tasks' first polls at 200 a second (bot/jobs/poller.py):
            # the windows begin once all are on their own rhythm.
            warmup = opts.warmup if opts.warmup is not None else 20.0 + pending / 200
            _say(f"{pending} pending: bot up in {start_s:.1f} s; warming up {warmup:g} s")
            await asyncio.sleep(warmup)
            reload_lags = [lag for at, lag in read_samples(str(lags)) if at >= started_at]
            meter = _Meter(bot, emu, db, emu_root, emu_admin, lags)
            if opts.profile is not None:
                bot.proc.send_signal(signal.SIGUSR1)  # the profile's window: both of them
            await meter.start()
            await asyncio.sleep(opts.seconds)
            idle = await meter.stop()
            _say(f"{pending} pending: idle {_brief(idle)}; firing {opts.rate:g}/s")
            await meter.start()
            acks, refusals, too_late = await _fire(fake, opts, pending)
            load = await meter.stop(acks, refusals, too_late)
            _say(f"{pending} pending: load {_brief(load)}")
            rss, peak = _rss_mb(bot.proc.pid), peak_rss_mb(bot.proc.pid)
        finally:
            if bot is not None:
                await bot.stop()
            await fake.stop()
            await emu.stop()
        plans = _query_plans(db)
    return Level(
        pending=pending,
        guilds=opts.guilds,
        seed_s=round(seed_s, 1),
        start_s=round(start_s, 1),
        warmup_s=warmup,
        reload_lag_p99_ms=percentile(reload_lags, 0.99) * 1000,
        reload_lag_max_ms=max(reload_lags, default=0.0) * 1000,
        idle=idle,
        load=load,
        rss_mb=rss,
        peak_rss_mb=peak,
        query_plans=plans,
        unindexed={name: bad for name, plan in plans.items() if (bad := reads_without_index(plan))},
    )


def _brief(w: Window) -> str:
    ack = f", ack p99 {w.ack_p99_ms:.1f} ms" if w.ack_p99_ms is not None else ""
    return (
        f"{w.polls_per_s:.0f} polls/s, {w.cpu_ms_per_poll:.2f} ms CPU/poll, "
        f"lag p99 {w.loop_lag_p99_ms:.1f} ms{ack}"
    )


def render_scale(levels: list[dict[str, Any]]) -> str:
    """The markdown table of a run, then the hot queries' plans."""
    head = "| metric | " + " | ".join(f"{lv['pending']:,} pending" for lv in levels) + " |"
    rows = [
        head,
        "|---" * (len(levels) + 1) + "|",
    ]

    def row(name: str, cell: Any) -> None:
        rows.append(f"| {name} | " + " | ".join(cell(lv) for lv in levels) + " |")

    row("polls/s (idle)", lambda lv: f"{lv['idle']['polls_per_s']:.0f}")
    row("bot CPU per poll, idle (ms)", lambda lv: f"{lv['idle']['cpu_ms_per_poll']:.2f}")
    row(
        "bot CPU per pending task per minute, idle (ms)",
        lambda lv: f"{lv['idle']['cpu_ms_per_pending_task_per_min']:.1f}",
    )
    row("bot CPU share of a core, idle / load", lambda lv: _share(lv))
    row("bot RSS / peak (MB)", lambda lv: f"{lv['rss_mb']:.0f} / {lv['peak_rss_mb']:.0f}")
    row(
        "loop lag p99, idle / load (ms)",
        lambda lv: f"{lv['idle']['loop_lag_p99_ms']:.1f} / {lv['load']['loop_lag_p99_ms']:.1f}",
    )
    row(
        "ack p50 / p99 under load (ms)",
        lambda lv: f"{lv['load']['ack_p50_ms'] or 0:.1f} / {lv['load']['ack_p99_ms'] or 0:.1f}",
    )
    row(
        "the harness's own loop lag under load, p99 / max (ms)",
        lambda lv: (
            f"{lv['load'].get('harness_lag_p99_ms', 0):.1f} / "
            f"{lv['load'].get('harness_lag_max_ms', 0):.1f}"
        ),
    )
    row(
        "commands fired / refused / acknowledged after Discord's 3 s",
        lambda lv: (
            f"{lv['load']['commands']} / {lv['load']['refused']} / {lv['load'].get('too_late', 0)}"
        ),
    )
    row(
        "pending at the end of the load window",
        lambda lv: f"{lv['load']['pending_end']:,}",
    )
    row("bot CPU per poll, load (ms)", lambda lv: f"{lv['load']['cpu_ms_per_poll']:.2f}")
    row(
        "CPU s in the load window: bot / emulator / fake Discord + harness",
        lambda lv: (
            f"{lv['load']['cpu_s']:.1f} / {lv['load']['emulator_cpu_s']:.1f} / "
            f"{lv['load']['harness_cpu_s']:.1f} over {lv['load']['seconds']:.0f} s"
        ),
    )
    row(
        "loop lag from start to the end of the warm-up, p99 / max (ms)",
        lambda lv: f"{lv['reload_lag_p99_ms']:.0f} / {lv['reload_lag_max_ms']:.0f}",
    )
    row("start: bot up and tasks reloaded (s)", lambda lv: f"{lv['start_s']:.1f}")
    out = "\n".join(rows)
    plans = levels[-1]["query_plans"] if levels else {}
    out += "\n\nHot queries, EXPLAIN QUERY PLAN (SQLite):\n"
    for name, plan in plans.items():
        steps = "; ".join(plan) or "no read step (an insert, or an upsert on its primary key)"
        out += f"- {name}: {steps}\n"
    for lv in levels:
        for text, count in lv["load"].get("refusals", {}).items():
            out += f"refused at {lv['pending']:,} pending, {count}x: {text!r}\n"
    bad = {name for lv in levels for name in lv["unindexed"]}
    out += "every hot query uses an index\n" if not bad else f"NOT INDEXED: {sorted(bad)}\n"
    return out


def _share(lv: dict[str, Any]) -> str:
    idle, load = lv["idle"], lv["load"]
    return f"{idle['cpu_s'] / idle['seconds']:.0%} / {load['cpu_s'] / load['seconds']:.0%}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `--scale` (besides `--rate`, `--no-discord-limits`, `--out`)."""
    parser.add_argument(
        "--pending", default="100,1000,10000", help="--scale: pending tasks per level"
    )
    parser.add_argument(
        "--seconds", type=float, default=30.0, help="--scale: length of each window"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="--scale: seconds after start, unmeasured (default 20 + pending / 200)",
    )
    parser.add_argument("--scale-guilds", type=int, default=1000, help="--scale: servers")
    parser.add_argument(
        "--scale-batch",
        action="store_true",
        help="--scale: the emulator answers the batch endpoint (the real service does not)",
    )


def run_scale(args: argparse.Namespace) -> int:
    """Every level in turn; print the table, write the JSON."""
    opts = ScaleOptions(
        levels=[int(n) for n in args.pending.split(",")],
        rate=args.rate,
        seconds=args.seconds,
        warmup=args.warmup,
        guilds=args.scale_guilds,
        workers=args.workers,
        batch=args.scale_batch,
        discord_limits=not args.no_discord_limits,
        profile=Path(args.profile) if args.profile else None,
    )
    levels = []
    for pending in opts.levels:
        levels.append(asdict(asyncio.run(run_level(opts, pending))))
    report = {
        "machine": _machine(),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(opts).items()},
        "levels": levels,
    }
    print(render_scale(levels))
    day = datetime.now(UTC).strftime("%Y-%m-%d")
    out = Path(args.out or f"bench/results/scale-{day}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(f"\nwrote {out}", file=sys.stderr)
    return 0
