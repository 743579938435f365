"""A protocol-level fake Discord over loopback for the real discord.py client (tests, bench).

async with FakeDiscord(application_id=900, bot_user_id=900, bot_token="fake-token") as fake:
    fake.add_guild(1); fake.add_channel(1, 2); fake.add_member(1, 3, "alice")
    discord.http.Route.BASE = fake.api_base_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    ...start the bot, wait_until_ready()...
    ix = await fake.slash("draw", user_id=3, guild_id=1, channel_id=2, options={"prompt": "cat"})
    body = await ix.response()
"""

from fakediscord.discord_server import FakeDiscord
from fakediscord.interactions import FakeInteraction
from fakediscord.recording import RecordedRequest

Interaction = FakeInteraction

__all__ = ["FakeDiscord", "FakeInteraction", "Interaction", "RecordedRequest"]
