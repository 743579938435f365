"""Readiness of a bot running several shards: each shard counts on its own.

discord.py says READY for the whole bot once, when all shards are ready; a shard that later
has to identify afresh (its session expired) only says `shard_ready`. /readyz and the
gateway gauge must follow every shard through that, and name the one that is down.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import ADMIN_A, CH_A, GUILD_A, HarnessFactory
from tests.helpers import answer_text
from tests.test_fake_discord_shards import guild_on_shard_1
from tests.test_metrics import get, scrape, until_answer, value


async def test_readyz_follows_a_shard_that_identifies_afresh(
    harness_factory: HarnessFactory,
) -> None:
    h = await harness_factory(
        discord={"shard_count": 2}, metrics={"port": 0}, fake_setup=guild_on_shard_1
    )
    port = h.bot.metrics_server.port
    await until_answer(port, "/readyz", lambda s, _t: s == 200)

    # Shard 1's session expires and its connection drops; its new IDENTIFY is held back.
    gateway = h.fake.gateway
    release = asyncio.Event()
    identify = gateway._identify

    async def held_identify(session: Any, data: dict[str, Any]) -> None:
        if data.get("shard") == [1, 2]:
            await release.wait()
        await identify(session, data)

    gateway._identify = held_identify  # type: ignore[method-assign]
    gateway.forget_sessions()
    await gateway.close(code=4000, shard_id=1)
    status, text = await until_answer(port, "/readyz", lambda s, _t: s != 200)
    assert (status, text) == (503, "not ready: gateway disconnected: shard 1\n")
    assert value(await scrape(port), "miaohua_gateway_connected") == 0
    # Shard 0 kept its session and still serves its guilds meanwhile.
    ix = await h.fake.slash(
        "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "a***@guild.test" in await answer_text(ix)

    release.set()
    await until_answer(port, "/readyz", lambda s, _t: s == 200)
    assert value(await scrape(port), "miaohua_gateway_connected") == 1
    assert gateway.identifies == 3 and gateway.resumes == 0
    assert (await get(port, "/readyz")) == (200, "ready\n")
