"""The fake Discord shards its gateway as Discord does, for bots run as several processes.

A session identifying with `shard: [id, count]` gets READY and GUILD_CREATE for the guilds
with `(guild_id >> 22) % count == id` only, and only their events; shard 0 also gets the
events outside guilds (DMs). The real discord.py client (AutoShardedBot, plain Client) runs
against it over loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord.ext import commands

from fakediscord import FakeDiscord
from tests.conftest import (
    ADMIN_A,
    CH_A,
    EVENT_TASK_PREFIX,
    GUILD_A,
    HarnessFactory,
)
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text
from tests.logcheck import LogCheck, logcheck  # noqa: F401

APP_ID = 900
TOKEN = "fake-token"
USER = 31
SNOWFLAKE_STEP = 1 << 22  # a guild id's shard comes from the bits above the low 22
# Two guilds on each of two shards (shard = (id >> 22) % 2), with one text channel each.
GUILDS = {
    SNOWFLAKE_STEP * 2 + 11: 0,
    SNOWFLAKE_STEP * 3 + 12: 1,
    SNOWFLAKE_STEP * 4 + 13: 0,
    SNOWFLAKE_STEP * 5 + 14: 1,
}
CHANNEL_OF = {guild: 500 + n for n, guild in enumerate(GUILDS)}
ON_SHARD = {shard: [g for g, s in GUILDS.items() if s == shard] for shard in (0, 1)}


class Client(commands.AutoShardedBot):
    """A small sharded bot answering /where with its own name; it records what it receives."""

    def __init__(self, name: str, *, answer: bool = True, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = intents.guild_messages = intents.dm_messages = True
        super().__init__(command_prefix="!", intents=intents, guild_ready_timeout=0.01, **options)
        self.name = name
        self.answer = answer
        self.interactions: list[int | None] = []  # guild id of each interaction received
        self.messages: list[int | None] = []  # guild id of each MESSAGE_CREATE received

        @self.tree.command(description="Say which client answers")
        async def where(interaction: discord.Interaction) -> None:
            if self.answer:
                await interaction.response.send_message(self.name)

        @self.tree.command(description="Post a message in this channel")
        async def post(interaction: discord.Interaction) -> None:
            await interaction.response.send_message("posting", ephemeral=True)
            assert isinstance(interaction.channel, discord.TextChannel)
            await interaction.channel.send(f"posted by {self.name}")

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        self.interactions.append(interaction.guild_id)

    async def on_message(self, message: discord.Message) -> None:
        self.messages.append(message.guild.id if message.guild else None)


StartClient = Callable[..., Awaitable[Client]]


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """A fake Discord recommending two shards, with the four guilds of GUILDS."""
    async with FakeDiscord(APP_ID, APP_ID, TOKEN, shard_count=2) as fake:
        for guild, channel in CHANNEL_OF.items():
            fake.add_guild(guild, f"guild {guild}", owner_id=USER)
            fake.add_channel(guild, channel, "general")
            fake.add_member(guild, USER, "alice")
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base_url)
        gateway = yarl.URL(fake.gateway_url)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", gateway)
        yield fake
        fake.verify_contract()
        assert fake.unhandled == []


@pytest.fixture
async def start_client(
    fake: FakeDiscord,
    logcheck: LogCheck,  # noqa: F811
) -> AsyncIterator[StartClient]:
    """Start sharded clients against the fake; each is closed at teardown."""
    started: list[tuple[Client, asyncio.Task[None]]] = []

    async def start(name: str, **options: Any) -> Client:
        client = Client(name, **options)
        task = logcheck.watch(asyncio.create_task(client.start(TOKEN), name=f"{name}.start"))
        started.append((client, task))
        await asyncio.wait_for(client.wait_until_ready(), 10)
        return client

    yield start
    for client, task in started:
        await client.close()
        await asyncio.wait_for(task, 5)


async def settled(fake: FakeDiscord) -> None:
    """Every client has read every event sent so far and finished handling it."""
    await fake.gateway.sync()
    handlers = {t for t in asyncio.all_tasks() if t.get_name().startswith(EVENT_TASK_PREFIX)}
    if handlers:
        await asyncio.wait(handlers, timeout=5)


def guilds_by_shard(client: Client) -> dict[int, int]:
    return {guild.id: guild.shard_id for guild in client.guilds}


async def where(fake: FakeDiscord, guild_id: int | None) -> str:
    """Who answers /where in a guild's channel (None: in a DM)."""
    channel = CHANNEL_OF[guild_id] if guild_id is not None else fake.world.open_dm(USER)["id"]
    ix = await fake.slash("where", user_id=USER, guild_id=guild_id, channel_id=int(channel))
    return await answer_text(ix)


async def test_gateway_bot_recommends_the_fake_shard_count(
    fake: FakeDiscord, start_client: StartClient
) -> None:
    # Without a shard count, AutoShardedBot asks GET /gateway/bot and connects there.
    client = await start_client("auto")
    assert client.shard_count == 2 and sorted(client.shards) == [0, 1]
    assert guilds_by_shard(client) == GUILDS
    shards, url, limit = await client.http.get_bot_gateway()
    assert (shards, url) == (2, fake.gateway_url.rstrip("/"))
    assert limit["max_concurrency"] == 1
    for guild in GUILDS:
        assert await where(fake, guild) == "auto"


async def test_one_process_with_both_shards_sees_every_guild_on_its_shard(
    fake: FakeDiscord, start_client: StartClient
) -> None:
    client = await start_client("both", shard_count=2)
    assert guilds_by_shard(client) == GUILDS
    identified = sorted(s.shard for s in fake.gateway.sessions)
    assert identified == [(0, 2), (1, 2)]


async def test_each_process_gets_only_its_shards_guilds_and_events(
    fake: FakeDiscord, start_client: StartClient
) -> None:
    first = await start_client("first", shard_count=2, shard_ids=[0])
    second = await start_client("second", shard_count=2, shard_ids=[1])
    assert guilds_by_shard(first) == {g: 0 for g in ON_SHARD[0]}
    assert guilds_by_shard(second) == {g: 1 for g in ON_SHARD[1]}

    for guild, shard in GUILDS.items():
        assert await where(fake, guild) == ("first", "second")[shard]
    assert await where(fake, None) == "first"  # outside guilds: shard 0, as on Discord
    await settled(fake)
    assert first.interactions == [*ON_SHARD[0], None]
    assert second.interactions == ON_SHARD[1]

    # The messages the bot posts come back as MESSAGE_CREATE on the owning shard only.
    guild_on_1 = ON_SHARD[1][0]
    ix = await fake.slash(
        "post", user_id=USER, guild_id=guild_on_1, channel_id=CHANNEL_OF[guild_on_1]
    )
    await ix.response()
    await fake.wait_for_message(
        CHANNEL_OF[guild_on_1], lambda m: m["content"] == "posted by second"
    )
    await settled(fake)
    assert (first.messages, second.messages) == ([], [guild_on_1])


async def test_a_resumed_session_keeps_its_shard(
    fake: FakeDiscord, start_client: StartClient
) -> None:
    first = await start_client("first", shard_count=2, shard_ids=[0])
    second = await start_client("second", shard_count=2, shard_ids=[1])
    await fake.gateway.close(code=4000)  # both reconnect and RESUME their sessions
    await fake.changes.wait(lambda: fake.gateway.resumes >= 2 or None, 10, "two RESUMEs")
    assert fake.gateway.identifies == 2
    for guild, shard in GUILDS.items():
        assert await where(fake, guild) == ("first", "second")[shard]
    # The intents are kept too: the bot's own message comes back as MESSAGE_CREATE.
    guild, channel = ON_SHARD[1][0], CHANNEL_OF[ON_SHARD[1][0]]
    await (await fake.slash("post", user_id=USER, guild_id=guild, channel_id=channel)).response()
    await fake.wait_for_message(channel, lambda m: m["content"] == "posted by second")
    await settled(fake)
    assert (first.interactions, second.interactions) == (ON_SHARD[0], [*ON_SHARD[1], guild])
    assert (first.messages, second.messages) == ([], [guild])


async def test_an_expired_session_identifies_again_on_its_shard_alone(
    fake: FakeDiscord, start_client: StartClient
) -> None:
    first = await start_client("first", shard_count=2, shard_ids=[0])
    second = await start_client("second", shard_count=2, shard_ids=[1])
    kept = next(s for s in fake.gateway.sessions if s.shard == (0, 2))
    fake.gateway.forget_sessions()
    await fake.gateway.close(code=4000, shard_id=1)  # its RESUME is answered INVALID_SESSION
    await fake.changes.wait(lambda: fake.gateway.identifies >= 3 or None, 10, "a new IDENTIFY")
    assert fake.gateway.resumes == 0 and not kept.ws.closed  # shard 0 kept its session
    assert sorted(s.shard for s in fake.gateway.sessions if s.identified) == [(0, 2), (1, 2)]
    for guild, shard in GUILDS.items():
        assert await where(fake, guild) == ("first", "second")[shard]
    await settled(fake)
    assert (first.interactions, second.interactions) == (ON_SHARD[0], ON_SHARD[1])


async def test_two_sessions_of_one_shard_both_get_its_events(
    fake: FakeDiscord, start_client: StartClient
) -> None:
    # A process restarted before its old connection closed: both sessions own shard 1.
    old = await start_client("old", shard_count=2, shard_ids=[1], answer=False)
    new = await start_client("new", shard_count=2, shard_ids=[1])
    guild = ON_SHARD[1][0]
    assert await where(fake, guild) == "new"
    await settled(fake)
    assert (old.interactions, new.interactions) == ([guild], [guild])


async def test_discord_py_gets_4010_for_a_shard_id_out_of_range(fake: FakeDiscord) -> None:
    client = discord.Client(intents=discord.Intents.none(), shard_id=2, shard_count=2)
    with pytest.raises(discord.ConnectionClosed) as closed:
        await asyncio.wait_for(client.start(TOKEN), 10)
    assert closed.value.code == 4010
    assert fake.gateway.identifies == 0 and not fake.gateway.connected()


async def identify_close_code(fake: FakeDiscord, identify: dict[str, Any]) -> int | None:
    """Identify over a raw websocket; the close code, or None if the gateway sent READY."""
    payload = {"token": TOKEN, "intents": 0, "properties": {}, **identify}
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url) as ws:
        hello = await ws.receive_json(timeout=5)
        assert hello["op"] == 10
        await ws.send_json({"op": 2, "d": payload})
        msg = await ws.receive(timeout=5)
        if msg.type is aiohttp.WSMsgType.TEXT:
            assert json.loads(msg.data)["t"] == "READY"
            return None
        assert msg.type is aiohttp.WSMsgType.CLOSE, msg
        return ws.close_code


@pytest.mark.parametrize(
    "shard", [[2, 2], [-1, 2], [0, 0], [1], [0, 1, 2], "0,2", [0.0, 2], [True, 2]]
)
async def test_an_invalid_shard_is_closed_with_4010(fake: FakeDiscord, shard: Any) -> None:
    assert await identify_close_code(fake, {"shard": shard}) == 4010
    assert fake.gateway.identifies == 0


async def test_sharding_required_only_when_the_fake_demands_it(fake: FakeDiscord) -> None:
    assert await identify_close_code(fake, {}) is None  # a count of 2 is a recommendation
    fake.require_sharding = True
    assert await identify_close_code(fake, {}) == 4011
    assert await identify_close_code(fake, {"shard": [0, 1]}) == 4011
    assert await identify_close_code(fake, {"shard": [1, 2]}) is None
    assert await identify_close_code(fake, {"shard": [0, 3]}) is None  # more shards are fine
    assert fake.gateway.identifies == 3


# The full bot, both shards in one process, on the harness's fakes.

GUILD_ON_1, CH_ON_1, MEMBER_ON_1 = SNOWFLAKE_STEP * 3 + 1003, 2004, 3006
ACCOUNT_ON_1 = ("c@guild.test", "pw-c-Secret3")


def guild_on_shard_1(fake: FakeDiscord) -> None:
    """The harness's guilds (ids below 1 << 22) are on shard 0: add one on shard 1."""
    fake.shard_count = 2
    fake.add_guild(GUILD_ON_1, "Guild C", owner_id=MEMBER_ON_1)
    fake.add_channel(GUILD_ON_1, CH_ON_1, "sharded")
    fake.add_member(GUILD_ON_1, MEMBER_ON_1, "member-c", manage_guild=True)


async def test_the_sharded_bot_serves_imagine_on_both_shards(
    harness_factory: HarnessFactory,
) -> None:
    h = await harness_factory(
        discord={"shard_count": 2}, miaohua=FAST_POLLING, fake_setup=guild_on_shard_1
    )
    assert type(h.bot).__name__ == "ShardedMiaohuaBot" and h.bot.shard_count == 2
    assert {g: h.bot.get_guild(g).shard_id for g in (GUILD_A, GUILD_ON_1)} == {
        GUILD_A: 0,
        GUILD_ON_1: 1,
    }
    assert sorted(s.shard for s in h.fake.gateway.sessions) == [(0, 2), (1, 2)]
    h.emu.add_account(*ACCOUNT_ON_1)
    await h.bot.accounts.set_account(GUILD_ON_1, *ACCOUNT_ON_1)

    on_0 = task_id_of(await answer_text(await imagine(h, user_id=ADMIN_A)))
    on_1 = task_id_of(
        await answer_text(
            await imagine(h, user_id=MEMBER_ON_1, guild_id=GUILD_ON_1, channel_id=CH_ON_1)
        )
    )
    await wait_result(h, on_0, CH_A)
    await wait_result(h, on_1, CH_ON_1)
