"""Discord's rate limits in the fake, and the bot living with them end to end."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest

from bot.discord_jobs.status import CLOSE_GRACE
from bot.store import TaskState
from fakediscord import FakeDiscord
from fakediscord.ratelimits import ROUTE_LIMITS, RateLimits, RouteLimit
from tests.conftest import CH_A
from tests.genutil import FAST_POLLING, eventually, imagine, result_of, task_id_of, wait_result
from tests.helpers import answer_text

TOKEN = "rate-token"
GUILD, CHANNEL, OTHER = 10, 20, 21
_MESSAGE = r"/channels/\d+/messages/\d+"
AUTH = {"Authorization": f"Bot {TOKEN}", "Content-Type": "application/json"}


class Clock:
    """Epoch seconds that move only when told."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def limited() -> AsyncIterator[tuple[FakeDiscord, Clock, aiohttp.ClientSession]]:
    clock = Clock()
    fake = FakeDiscord(bot_token=TOKEN, rate_limits=RateLimits(clock=clock))
    fake.add_guild(GUILD)
    fake.add_channel(GUILD, CHANNEL)
    fake.add_channel(GUILD, OTHER, "other")
    async with fake, aiohttp.ClientSession() as http:
        yield fake, clock, http


async def post(
    fake: FakeDiscord, http: aiohttp.ClientSession, channel: int
) -> tuple[int, Any, dict[str, str]]:
    url = f"{fake.api_base_url}/channels/{channel}/messages"
    async with http.post(url, json={"content": "hi"}, headers=AUTH) as resp:
        return resp.status, await resp.json(), dict(resp.headers)


async def test_a_sixth_message_in_five_seconds_gets_429_with_discords_body_and_headers(
    limited: tuple[FakeDiscord, Clock, aiohttp.ClientSession],
) -> None:
    fake, clock, http = limited
    remaining = []
    for _ in range(5):
        status, _, headers = await post(fake, http, CHANNEL)
        assert status == 200
        assert headers["X-RateLimit-Limit"] == "5"
        assert float(headers["X-RateLimit-Reset-After"]) == 5.0
        assert float(headers["X-RateLimit-Reset"]) == clock.now + 5
        remaining.append(headers["X-RateLimit-Remaining"])
    assert remaining == ["4", "3", "2", "1", "0"]
    bucket = headers["X-RateLimit-Bucket"]

    clock.now += 2
    status, body, headers = await post(fake, http, CHANNEL)
    assert status == 429
    assert body == {"message": "You are being rate limited.", "retry_after": 3.0, "global": False}
    assert headers["Retry-After"] == "3"
    assert headers["X-RateLimit-Scope"] == "user"
    assert headers["X-RateLimit-Remaining"] == "0"
    assert headers["X-RateLimit-Bucket"] == bucket
    assert "Via" in headers  # without it discord.py takes a 429 for a Cloudflare ban
    assert "X-RateLimit-Global" not in headers
    assert len(fake.channel_messages(CHANNEL)) == 5  # the refused message was not created

    # The limit is per channel: another one has its own bucket.
    status, _, headers = await post(fake, http, OTHER)
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "4")

    clock.now += 3  # the window has passed
    status, _, headers = await post(fake, http, CHANNEL)
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "4")

    stats = fake.rate_limits.stats
    assert [(r.bucket, r.scope, r.retry_after) for r in stats.limited] == [
        ("message-create", "user", 3.0)
    ]
    key = fake.rate_limits.bucket_key("POST", f"/channels/{CHANNEL}/messages")
    start = clock.now - 5
    assert stats.exhausted[key] == [(start, start + 5)]
    # Of the seconds 1..4 after the first post, 1..5 were blocked: 3 seconds.
    assert stats.blocked(key, start + 1, start + 4) == 3.0


async def test_a_reset_is_never_announced_before_the_window_ends(
    limited: tuple[FakeDiscord, Clock, aiohttp.ClientSession],
) -> None:
    # A client sleeping exactly Reset-After over loopback arrives within a millisecond of it:
    # the headers round up, so that sleep always ends in the next window.
    fake, clock, http = limited
    status, _, headers = await post(fake, http, CHANNEL)
    reset = clock.now + 5
    for elapsed in (0.0004, 1.2345, 3.3337, 4.9991):
        clock.now = reset - 5 + elapsed
        status, _, headers = await post(fake, http, CHANNEL)
        assert status == 200
        assert float(headers["X-RateLimit-Reset-After"]) >= reset - clock.now
        assert float(headers["X-RateLimit-Reset-After"]) - (reset - clock.now) < 0.001
        assert float(headers["X-RateLimit-Reset"]) >= reset
    clock.now = reset - 0.0004
    status, body, headers = await post(fake, http, CHANNEL)
    assert (status, body["retry_after"]) == (429, 0.001)
    clock.now = reset
    status, _, headers = await post(fake, http, CHANNEL)
    assert (status, headers["X-RateLimit-Remaining"]) == (200, "4")


async def test_every_response_carries_rate_limit_headers(
    limited: tuple[FakeDiscord, Clock, aiohttp.ClientSession],
) -> None:
    fake, _, http = limited
    for path in ("/users/@me", f"/channels/{CHANNEL}", f"/guilds/{GUILD}"):
        async with http.get(fake.api_base_url + path, headers=AUTH) as resp:
            assert resp.status == 200
            for name in ("Limit", "Remaining", "Reset", "Reset-After", "Bucket"):
                assert f"X-RateLimit-{name}" in resp.headers, (path, name)


async def test_the_global_limit_spares_interaction_endpoints(
    limited: tuple[FakeDiscord, Clock, aiohttp.ClientSession],
) -> None:
    fake, clock, http = limited
    statuses = []
    for i in range(51):  # 51 different routes, so only the global limit is reached
        async with http.get(f"{fake.api_base_url}/channels/{i}", headers=AUTH) as resp:
            statuses.append(resp.status)
            body, headers = await resp.json(), resp.headers
    assert 429 not in statuses[:50]
    assert statuses[50] == 429
    assert body["global"] is True
    assert headers["X-RateLimit-Global"] == "true"
    assert headers["X-RateLimit-Scope"] == "global"
    # Interaction callbacks are not bound to it: an unknown one is refused for what it is.
    url = f"{fake.api_base_url}/interactions/1/token/callback"
    async with http.post(url, json={"type": 1}) as resp:
        assert resp.status == 404
    clock.now += 1
    async with http.get(f"{fake.api_base_url}/users/@me", headers=AUTH) as resp:
        assert resp.status == 200
    assert [r.scope for r in fake.rate_limits.stats.limited] == ["global"]


async def test_limits_can_be_switched_off(
    limited: tuple[FakeDiscord, Clock, aiohttp.ClientSession],
) -> None:
    fake, _, http = limited
    fake.rate_limits.enabled = False
    statuses = [(await post(fake, http, CHANNEL))[0] for _ in range(8)]
    assert statuses == [200] * 8
    assert fake.rate_limits.stats.limited == []


# End to end: the real bot under Discord's limits.

RESULTS = 12


@pytest.mark.slow
async def test_twelve_results_in_one_channel_are_each_posted_once_without_a_429(
    harness_factory: Any,
) -> None:
    # All twelve generations run at once at the service and finish together.
    h = await harness_factory(
        miaohua=FAST_POLLING,
        limits={"user_running": RESULTS},
        emulator={"workers": RESULTS, "generation_time": 0.5},
    )
    # Discord's limits, every window half as long: the shape of 5 messages per 5 s per
    # channel without the test waiting that long, still short of the twelve results.
    h.fake.rate_limits = RateLimits(scale=0.5)
    commands = await asyncio.gather(*(imagine(h, f"fox {i}", count=1) for i in range(RESULTS)))
    ids = [task_id_of(await answer_text(ix)) for ix in commands]
    await h.idle(timeout=120)

    for task_id in ids:
        task = await h.bot.store.tasks.get(task_id)
        assert task.state == TaskState.DELIVERED, (task_id, task.state)
        assert len(result_of(h, task_id)) == 1
    posts = [
        r
        for r in h.fake.requests
        if r.method == "POST" and r.path == f"/channels/{CH_A}/messages" and r.status == 200
    ]
    nonces = [r.json.get("nonce") for r in posts if r.files]
    assert len(nonces) == RESULTS and len(set(nonces)) == RESULTS  # each result posted once

    stats = h.fake.rate_limits.stats
    key = h.fake.rate_limits.bucket_key("POST", f"/channels/{CH_A}/messages")
    assert stats.exhausted.get(key), "the channel's message limit was never reached"
    # discord.py reads the headers and waits for the window, and the bot sends one request
    # per bucket at a time (bot/discord_buckets.py), so that count is always Discord's: not
    # one of the 12 posts and the status edits in this channel is refused.
    statuses = [r.status for r in h.fake.requests if re.match(r"/channels/", r.path)]
    assert statuses.count(429) == len(stats.limited) == 0, [
        f"{r.bucket}:{r.major}" for r in stats.limited
    ]
    edits = h.fake.rate_limits.bucket_key("PATCH", f"/channels/{CH_A}/messages/1")
    assert stats.exhausted.get(edits), "the status edits never reached their limit"
    h.fake.verify_contract()


def _edits_per(seconds: float) -> RouteLimit:
    """Discord's message-edit bucket, allowing one edit per `seconds` in a channel."""
    return RouteLimit("message-edit", "PATCH", re.compile(_MESSAGE), 1, seconds)


async def _one_at_a_time_with(
    harness_factory: Any, *limits: RouteLimit, discord: dict[str, Any] | None = None
) -> Any:
    """A bot whose service generates one task at a time and whose every status change is an
    edit sent at once, under the fake's route limits with `limits` in place of theirs."""
    h = await harness_factory(
        miaohua=FAST_POLLING,
        discord=discord or {},
        limits={"user_concurrency": 3},
        emulator={"workers": 1, "generation_time": 0.3},
    )
    h.bot.delivery.status.interval = 0.0
    replaced = {limit.bucket for limit in limits}
    others = (r for r in ROUTE_LIMITS if r.bucket not in replaced)
    h.fake.rate_limits = RateLimits(routes=(*limits, *others))
    return h


@pytest.mark.slow
async def test_a_status_edit_held_by_discord_does_not_hold_back_other_results(
    harness_factory: Any,
) -> None:
    # The channel may edit one message per 15 s: the first status edit passes, the next ones
    # wait for the window. One generation at a time, so the queued tasks' statuses change
    # (their place at the service) while the first one's result comes in.
    creates = RouteLimit("message-create", "POST", re.compile(r"/channels/\d+/messages"), 10, 5)
    h = await _one_at_a_time_with(harness_factory, _edits_per(15), creates)
    ids = [task_id_of(await answer_text(await imagine(h, f"owl {i}", count=1))) for i in range(3)]
    results = [await wait_result(h, task_id, timeout=60) for task_id in ids]

    stats = h.fake.rate_limits.stats
    key = h.fake.rate_limits.bucket_key("PATCH", f"/channels/{CH_A}/messages/1")
    (held_from, held_until), *_ = stats.exhausted[key]
    # Every result was posted while status edits were still held back by Discord: the
    # polling that found them never waited for an edit.
    posted = [datetime.fromisoformat(m["timestamp"]).timestamp() for m in results]
    assert max(posted) < held_until, (posted, held_from, held_until)
    assert stats.limited == []


async def test_a_stop_ends_within_its_grace_while_discord_holds_status_edits(
    harness_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The channel may edit one message a minute: after the first, every status edit waits
    # for Discord, and a stop must still end well within systemd's 30 s.
    h = await _one_at_a_time_with(harness_factory, _edits_per(60))
    ids = [task_id_of(await answer_text(await imagine(h, f"owl {i}", count=1))) for i in range(3)]
    for task_id in ids:
        await wait_result(h, task_id, timeout=60)
    assert len(h.bot.delivery.status) > 0  # edits still wait for the channel's window

    await asyncio.wait_for(h.stop(), timeout=CLOSE_GRACE + 10)
    assert "status edits not sent: Discord held them past the stop's 5 s" in caplog.text


async def test_a_stop_ends_within_its_grace_while_discord_holds_rerun_reactions(
    harness_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # The channel may take one reaction a minute: the first result's 🔁 is added (discord.py
    # then sleeps out the spent bucket), the next ones wait for Discord, and a stop gives up
    # on them after its grace instead of waiting the minute.
    reactions = RouteLimit("reaction", "*", re.compile(_MESSAGE + r"/reactions(/.*)?"), 1, 60)
    h = await _one_at_a_time_with(harness_factory, reactions, discord={"rerun_reaction": True})
    ids = [task_id_of(await answer_text(await imagine(h, f"owl {i}", count=1))) for i in range(3)]
    for task_id in ids:
        await wait_result(h, task_id, timeout=60)
    await eventually(lambda: len(h.bot.delivery._reacting) == 3)

    await asyncio.wait_for(h.stop(), timeout=2 * CLOSE_GRACE + 10)
    assert "3 rerun reactions unconfirmed: Discord held them past the stop's 5 s" in caplog.text
    added = [r.path for r in h.fake.requests if r.method == "PUT" and "/reactions/" in r.path]
    assert len(added) == 1  # the other two never reached Discord
