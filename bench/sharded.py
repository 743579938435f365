"""The bot under benchmark as one process, or as several sharded ones (`--processes N`).

With N processes the fake Discord recommends N shards and each bot child runs with
`discord.shard_count = N` and `discord.shard_ids = [k]`: it gets the gateway events of its
shard's servers only and serves their tasks alone, all of them sharing one database. The
benchmark's guild ids put server i on shard i % N (see `bench.run.guild_id`), so each process
gets its share. CPU is summed over the processes; peak RSS is kept per process.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass
from pathlib import Path

from bench.processes import Child, cpu_seconds, peak_rss_mb
from fakediscord import FakeDiscord

LOOP_P99 = re.compile(r"p99 ([\d.]+) ms")
# What each bot logs once ready (bot/app.py's on_ready, bot/runner.py's freeze).
READY_LINES = (r"ready: logged in as", r"objects of start-up frozen")


@dataclass
class Bots:
    """The bot's processes: one per shard, or a single unsharded one."""

    children: list[Child]

    def cpu_seconds(self) -> float:
        """User + system CPU of every process, summed."""
        return sum(cpu_seconds(c.proc.pid) for c in self.children)

    def peak_rss_mb(self) -> list[float]:
        """Each process's peak resident set size (MiB)."""
        return [peak_rss_mb(c.proc.pid) for c in self.children]

    def send_signal(self, sig: int) -> None:
        for child in self.children:
            child.proc.send_signal(sig)

    async def stop(self) -> None:
        await asyncio.gather(*(c.stop() for c in self.children))

    def save_output(self, directory: Path) -> list[Path]:
        """Write each process's output to DIRECTORY/NAME.log; the paths."""
        paths = [directory / f"{c.name}.log" for c in self.children]
        for child, path in zip(self.children, paths, strict=True):
            path.write_text("\n".join(child.lines) + "\n")
        return paths

    def first_line(self, marker: str) -> list[str]:
        """Each process's first output line containing `marker` (if it printed one)."""
        found = (next((ln for ln in c.lines if marker in ln), "") for c in self.children)
        return [line for line in found if line]

    def lines_with(self, marker: str) -> list[str]:
        """Every output line of every process containing `marker`."""
        return [ln for c in self.children for ln in c.lines if marker in ln]

    def loop_lag_p99_ms(self) -> float | None:
        """The worst event-loop lag p99 any process reported at shutdown."""
        values = [
            float(m.group(1))
            for line in self.first_line("event loop lag")
            if (m := LOOP_P99.search(line))
        ]
        return max(values) if values else None


async def start_bots(
    configs: list[Path],
    modules: list[list[str]],
    fake: FakeDiscord,
    serving: list[int],
    env: dict[str, str],
) -> Bots:
    """Start `python -m MODULE run --config CONFIG` for each config, in its directory, and
    wait until the commands are registered, a session serves each guild of `serving` (one
    guild per shard) and every process has said it is ready."""
    children: list[Child] = []
    for k, (config, module) in enumerate(zip(configs, modules, strict=True)):
        name = "bot" if len(configs) == 1 else f"bot{k}"
        children.append(
            await Child.spawn(
                name, "run", "--config", str(config), env=env, cwd=config.parent, module=module
            )
        )
    bots = Bots(children)
    deadline = time.monotonic() + 60
    while "imagine" not in fake.world.command_names() or not all(
        fake.gateway.serves(g) for g in serving
    ):
        exited = [c for c in children if c.proc.returncode is not None]
        if time.monotonic() > deadline or exited:
            await bots.stop()
            tail = "\n".join(line for c in children for line in c.lines[-20:])
            raise RuntimeError("the bot never became ready on every shard:\n" + tail)
        await asyncio.sleep(0.05)
    # What a start does once, when discord.py is ready (up to its 2 s wait for the servers,
    # then a full collection before start-up's objects are frozen), is not any task's cost:
    # it must not fall in a measured window.
    try:
        for child in children:
            for line in READY_LINES:
                await child.wait_for_line(line, max(1.0, deadline - time.monotonic()))
    except RuntimeError:
        await bots.stop()
        raise
    return bots
