"""The bot's CPU per delivered result: `python -m bench.delivery_cost [--results N] [--profile]`.

Delivers N results through the bot's own delivery path (`DiscordJobEvents.deliver`: fit the
images, render the embeds and buttons, post the message; default settings, so no 🔁 reaction)
with the network left out: the image downloads return bytes at once, and discord.py's HTTP
client answers each request at once with what Discord would (the created message, as the
fake Discord builds it). What is timed (`time.process_time`) is then the bot's side of a
delivery alone, without the noise of a fake Discord or an emulator sharing the process.
The tasks have the benchmark's mix of image counts (1, 1, 1, 2, 4).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import itertools
import json
import pstats
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import discord
from PIL import Image

from bot.discord_jobs.events import DiscordJobEvents
from bot.discord_pacing import GlobalPacer
from bot.store import Task, TaskState
from fakediscord import payloads

CHANNEL, GUILD, USER = 2001, 1001, 3002
COUNTS = (1, 1, 1, 2, 4)  # the benchmark's mix of image counts per task


class _Host(discord.Client):
    """A discord.py client as the delivery layer sees the bot (it never connects)."""

    def __init__(self) -> None:
        super().__init__(
            intents=discord.Intents.none(),
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=None,
        )
        self.store: Any = None  # the tasks have no parent to look up
        self.pacer = GlobalPacer(50)
        self.guild_languages: dict[int, str | None] = {}


def _image(seed: int) -> bytes:
    """A 512x512 JPEG like the service's (the bytes are posted as they are)."""
    out = io.BytesIO()
    Image.effect_noise((512, 512), 40 + seed).convert("RGB").save(out, "JPEG", quality=85)
    return out.getvalue()


def _task(task_id: int, count: int) -> Task:
    images = tuple(
        {"large": f"http://127.0.0.1:1/files/{task_id}-{i}.jpg", "middle": ""} for i in range(count)
    )
    now = time.time()
    return Task(
        id=task_id, guild_id=GUILD, channel_id=CHANNEL, user_id=USER, interaction_id=None,
        status_message_id=None, result_message_id=None, parent_id=None, kind="t2i",
        model="Artist v1", prompt="a red fox in the snow, watercolour, soft light",
        negative_prompt="blurry", count=count, scale=7, seed=1234, size="512x512",
        init_image_url=None, state=TaskState.DONE, service_task_id=f"svc-{task_id}",
        seed_used=1234, wait_time=0, images=images, error=None, error_detail=None,
        locale="en-US", created_at=now, queued_at=now, submitted_at=now, done_at=now,
        delivered_at=None, failed_at=None, updated_at=now, next_poll_at=None, poll_count=3,
        attempts=1, account_id=1, origin=None, style=None, member_prompt=None,
        delivery="channel", removed_by=None,
    )  # fmt: skip


class _Discord:
    """Answers discord.py's requests at once, as Discord would; keeps what was posted."""

    def __init__(self) -> None:
        self.ids = itertools.count(10**17)
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []

    async def request(self, route: discord.http.Route, **kwargs: Any) -> Any:
        self.requests[f"{route.method} {route.path}"] += 1
        if route.method != "POST":
            return None  # a reaction (`discord.rerun_reaction`): 204
        form = kwargs.get("form") or []
        body = json.loads(form[0]["value"]) if form else kwargs.get("json") or {}
        self.bodies.append(body)
        files = kwargs.get("files") or []
        attachments = [
            payloads.attachment(
                next(self.ids), f.filename, 50_000, f"https://cdn.test/{f.filename}",
                "image/jpeg", width=512, height=512,
            )
            for f in files
        ]  # fmt: skip
        user = payloads.bot_user(900, "miaohua")
        return payloads.message(
            next(self.ids), CHANNEL, user, body, attachments=attachments, guild_id=GUILD
        )


@dataclass(frozen=True)
class Measured:
    """What delivering the results cost and sent."""

    cpu_ms_per_result: float
    requests: Counter[str]  # "METHOD route" -> how many
    bodies: list[dict[str, Any]]  # the posted messages' bodies


async def measure(results: int, profile: cProfile.Profile | None = None) -> Measured:
    """Deliver `results` results (after one to warm up) and measure the CPU they took."""
    host = _Host()
    data = [_image(i) for i in range(max(COUNTS))]

    async def fetch_many(urls: tuple[str, ...]) -> list[bytes | None]:
        return list(data[: len(urls)])

    async def deliver_all(tasks: list[Task]) -> _Discord:
        discord_api = _Discord()
        host.http.request = discord_api.request  # type: ignore[method-assign]
        events = DiscordJobEvents(host)
        events.fetcher.fetch_many = fetch_many  # type: ignore[method-assign]
        for task in tasks:
            assert await events.deliver(task) is not None
        await events.close()
        return discord_api

    await deliver_all([_task(results + 1, 1)])  # warm up: imports, caches
    tasks = [_task(i + 1, COUNTS[i % len(COUNTS)]) for i in range(results)]
    if profile is not None:
        profile.enable()
    start = time.process_time()
    discord_api = await deliver_all(tasks)
    spent = time.process_time() - start
    if profile is not None:
        profile.disable()
    return Measured(spent * 1000 / results, discord_api.requests, discord_api.bodies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="print the top cumulative costs")
    args = parser.parse_args()
    profile = cProfile.Profile(time.process_time) if args.profile else None
    measured = asyncio.run(measure(args.results, profile))
    print(f"{args.results} results: {measured.cpu_ms_per_result:.3f} ms of CPU per result")
    print("requests:", json.dumps(measured.requests))
    if profile is not None:
        pstats.Stats(profile).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
