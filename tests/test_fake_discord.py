"""Self-test: the real discord.py client runs against FakeDiscord over loopback."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord import app_commands
from discord.ext import commands
from PIL import Image

from fakediscord import FakeDiscord
from tests.logcheck import LogCheck, logcheck  # noqa: F401

APP_ID = 900
TOKEN = "fake-token"
GUILD = 10
CHANNEL = 20
OTHER_CHANNEL = 21
OWNER = 30
USER = 31
MOD = 32
CLOSED = 33
ROLE = 40


def png(width: int = 3, height: int = 2) -> bytes:
    """Return a tiny PNG."""
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "red").save(buf, "PNG")
    return buf.getvalue()


class TaskButton(discord.ui.DynamicItem[discord.ui.Button], template=r"task:(?P<id>\d+)"):
    """A persistent button carrying a task id."""

    def __init__(self, task_id: int) -> None:
        super().__init__(discord.ui.Button(label="Open", custom_id=f"task:{task_id}"))
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str]
    ) -> TaskButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        content = f"opened {self.task_id} by {interaction.user.id}"
        await interaction.response.edit_message(content=content)


class Feedback(discord.ui.Modal, title="Feedback"):
    """A one-field modal."""

    text: discord.ui.TextInput = discord.ui.TextInput(label="Text", custom_id="feedback:text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"thanks: {self.text.value}", ephemeral=True)


def make_bot() -> commands.Bot:
    """Build a small bot exercising every interaction kind."""
    intents = discord.Intents.none()
    intents.guilds = intents.guild_messages = intents.guild_reactions = True
    intents.dm_messages = True
    bot = commands.Bot(command_prefix="!", intents=intents, guild_ready_timeout=0.01)
    bot.raw_reactions = asyncio.Queue()  # type: ignore[attr-defined]

    async def setup_hook() -> None:
        bot.add_dynamic_items(TaskButton)
        await bot.tree.sync()

    bot.setup_hook = setup_hook  # type: ignore[method-assign]

    @bot.listen("on_raw_reaction_add")
    async def on_raw_reaction_add(payload: discord.RawReactionActionEvent) -> None:
        await bot.raw_reactions.put(payload)  # type: ignore[attr-defined]

    @bot.tree.command(description="Echo text")
    async def echo(
        interaction: discord.Interaction,
        text: str,
        count: int,
        image: discord.Attachment | None = None,
    ) -> None:
        extra = ""
        if image is not None:
            data = await image.read()
            extra = f" {image.filename}:{len(data)}:{image.width}x{image.height}"
        where = "dm" if interaction.guild_id is None else interaction.channel.name  # type: ignore[union-attr]
        await interaction.response.send_message(
            f"{text}*{count}{extra} [{interaction.locale}] in {where}"
        )

    @echo.autocomplete("text")
    async def echo_text(interaction: discord.Interaction, current: str) -> list[Any]:
        return [app_commands.Choice(name=f"{current}-{i}", value=f"{current}{i}") for i in (1, 2)]

    task = app_commands.Group(name="task", description="Tasks")

    @task.command(name="show", description="Show a task")
    async def show(interaction: discord.Interaction, task_id: int) -> None:
        await interaction.response.send_message(f"task {task_id}", ephemeral=True)

    admin = app_commands.Group(name="admin", description="Admin")
    quota = app_commands.Group(name="quota", description="Quota", parent=admin)

    @quota.command(name="set", description="Set a quota")
    async def quota_set(
        interaction: discord.Interaction,
        user: discord.User,
        amount: float,
        role: discord.Role,
        channel: discord.TextChannel,
        flag: bool,
    ) -> None:
        perms = interaction.permissions
        await interaction.response.send_message(
            f"{user.id} {amount} {role.name} {channel.name} {flag} "
            f"guild={perms.manage_guild} msgs={perms.manage_messages}"
        )

    bot.tree.add_command(task)
    bot.tree.add_command(admin)

    @bot.tree.command(description="Open a modal")
    async def feedback(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(Feedback(custom_id="feedback"))

    @bot.tree.command(description="A persistent button")
    async def button(interaction: discord.Interaction) -> None:
        view = discord.ui.View(timeout=None)
        view.add_item(TaskButton(42))
        await interaction.response.send_message("task 42", view=view)

    @bot.tree.command(description="Defer then edit")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="done")
        await interaction.followup.send("extra", ephemeral=True)

    @bot.tree.command(description="Defer then follow up")
    async def later(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("later")

    @bot.tree.command(description="Post a file to the channel")
    async def post(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True)
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel)
        view = discord.ui.View(timeout=None)
        view.add_item(TaskButton(7))
        try:
            msg = await channel.send(
                "file", file=discord.File(io.BytesIO(png()), "a.png"), view=view
            )
            await msg.add_reaction("✅")
            await msg.add_reaction("❌")
            await msg.clear_reaction("❌")
            temp = await channel.send("temp")
            await temp.delete()
            await msg.edit(content="file edited")
        except discord.HTTPException as exc:
            await interaction.followup.send(f"error {exc.status} {exc.code}")
            return
        await interaction.followup.send(f"posted {msg.id}")

    @bot.tree.command(description="Answer publicly and privately, then edit both by id")
    async def answers(interaction: discord.Interaction) -> None:
        public = await interaction.response.send_message("public")
        private = await interaction.followup.send("private", ephemeral=True, wait=True)
        channel = interaction.channel
        assert isinstance(channel, discord.TextChannel) and public.message_id is not None
        await channel.get_partial_message(public.message_id).edit(content="edited")
        try:
            await channel.get_partial_message(private.id).edit(content="edited")
        except discord.NotFound as exc:
            await interaction.followup.send(f"private not found {exc.code}", ephemeral=True)

    @bot.tree.command(description="DM the caller")
    async def dm(interaction: discord.Interaction) -> None:
        try:
            await interaction.user.send("psst")
        except discord.Forbidden as exc:
            await interaction.response.send_message(f"closed {exc.code}", ephemeral=True)
            return
        await interaction.response.send_message("sent", ephemeral=True)

    @bot.tree.command(description="Reply with a file, then replace it")
    async def render(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(
            "v1", file=discord.File(io.BytesIO(b"one"), "1.txt")
        )
        await interaction.edit_original_response(
            content="v2", attachments=[discord.File(io.BytesIO(png(5, 5)), "2.png")]
        )
        await interaction.followup.send("more", file=discord.File(io.BytesIO(b"3"), "3.bin"))

    @bot.tree.command(description="Fail loudly")
    async def boom(interaction: discord.Interaction) -> None:
        raise RuntimeError("kaboom")

    @app_commands.context_menu(name="Quote")
    async def quote(interaction: discord.Interaction, message: discord.Message) -> None:
        await interaction.response.send_message(f"quoted {message.id}: {message.content}")

    bot.tree.add_command(quote)
    return bot


@pytest.fixture
async def env(
    logcheck: LogCheck,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[FakeDiscord, commands.Bot]]:
    """A connected bot and the fake it talks to."""
    async with FakeDiscord(application_id=APP_ID, bot_user_id=APP_ID, bot_token=TOKEN) as fake:
        fake.add_guild(GUILD, "Guild", owner_id=OWNER)
        fake.add_channel(GUILD, CHANNEL, "general")
        fake.add_channel(GUILD, OTHER_CHANNEL, "lewd", nsfw=True)
        fake.add_role(GUILD, ROLE, "Artists", permissions=0)
        fake.add_member(GUILD, OWNER, "owner")
        fake.add_member(GUILD, USER, "alice", roles=[ROLE])
        fake.add_member(GUILD, MOD, "mod", manage_guild=True, manage_messages=True)
        fake.add_member(GUILD, CLOSED, "shy", dm_closed=True)
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base_url)
        monkeypatch.setattr(
            discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url)
        )
        bot = make_bot()
        task = logcheck.watch(asyncio.create_task(bot.start(TOKEN)))
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        try:
            yield fake, bot
        finally:
            await bot.close()
            await asyncio.wait_for(task, 5)
            fake.verify_contract()
            assert fake.unhandled == []


async def next_reaction(bot: commands.Bot, user_id: int) -> discord.RawReactionActionEvent:
    """The next reaction the bot's listener saw from this user."""
    while True:
        payload = await asyncio.wait_for(bot.raw_reactions.get(), 5)  # type: ignore[attr-defined]
        if payload.user_id == user_id:
            return payload


def paths(fake: FakeDiscord, method: str, pattern: str) -> list[int]:
    """Statuses of recorded requests matching method and path regex."""
    rx = re.compile(pattern)
    return [r.status for r in fake.requests if r.method == method and rx.fullmatch(r.path)]


async def test_login_ready_and_sync(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, bot = env
    assert bot.user is not None and bot.user.id == APP_ID
    assert bot.application_id == APP_ID
    guild = bot.get_guild(GUILD)
    assert guild is not None and guild.name == "Guild"
    assert {c.name for c in guild.text_channels} == {"general", "lewd"}
    assert guild.get_channel(OTHER_CHANNEL).is_nsfw()  # type: ignore[union-attr]
    assert guild.me is not None and guild.default_role.id == GUILD
    assert paths(fake, "GET", "/users/@me") == [200]
    assert paths(fake, "PUT", rf"/applications/{APP_ID}/commands") == [200]
    me = next(r for r in fake.requests if r.path == "/users/@me")
    assert me.headers["Authorization"] == f"Bot {TOKEN}"
    put = next(r for r in fake.requests if r.method == "PUT")
    assert {c["name"] for c in put.json} >= {"echo", "task", "admin", "Quote"}


async def test_rest_shapes_auth_and_unhandled(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    auth = {"Authorization": f"Bot {TOKEN}"}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{fake.api_base_url}/users/@me", headers=auth) as resp:
            assert resp.headers["Content-Type"] == "application/json"
            assert (await resp.json())["id"] == str(APP_ID)
        async with session.get(f"{fake.api_base_url}/users/@me") as resp:
            assert resp.status == 401
        url = f"{fake.api_base_url}/guilds/{GUILD}/members/{MOD}"
        async with session.get(url, headers=auth) as resp:
            assert (await resp.json())["user"]["username"] == "mod"
        async with session.get(f"{fake.api_base_url}/guilds/{GUILD}/bans", headers=auth) as resp:
            assert resp.status == 404
    assert fake.unhandled == [f"GET /guilds/{GUILD}/bans"]
    fake.unhandled.clear()
    commands_ = await env[1].tree.fetch_commands()
    assert "echo" in {c.name for c in commands_}


async def test_slash_with_options_attachment_and_locale(
    env: tuple[FakeDiscord, commands.Bot],
) -> None:
    fake, _ = env
    att = fake.add_attachment(png(4, 5), "in.png", "image/png")
    ix = await fake.slash(
        "echo",
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
        options={"text": "hi", "count": 3},
        attachments={"image": att},
        locale="zh-CN",
    )
    body = await ix.response()
    assert body["type"] == 4
    size = len(png(4, 5))
    assert body["data"]["content"] == f"hi*3 in.png:{size}:4x5 [zh-CN] in general"
    original = ix.original()
    assert original is not None and original["content"].startswith("hi*3")
    assert fake.interaction_log(ix.id)[0] == ("callback", body)
    with pytest.raises(LookupError, match="no option 'nope'"):
        await fake.slash(
            "echo", user_id=USER, guild_id=GUILD, channel_id=CHANNEL, options={"nope": 1}
        )


async def test_a_callback_after_discords_window_finds_no_interaction(
    env: tuple[FakeDiscord, commands.Bot],
    logcheck: LogCheck,  # noqa: F811
) -> None:
    fake, _ = env
    fake.interaction_window = 0.0  # every callback comes too late
    ix = await fake.slash(
        "echo",
        options={"text": "late", "count": 1},
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    await fake.changes.wait(lambda: ix.expired or None, 5, "the late callback")
    assert ix.callback is None and ix.original() is None

    # The test bot's command fails with Discord's own error for it.
    def unknown_interaction(record: logging.LogRecord) -> bool:
        return "10062" in str(record.exc_info and record.exc_info[1])

    logged = asyncio.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if unknown_interaction(record):
                logged.set()

    handler = Seen(logging.ERROR)
    logging.getLogger().addHandler(handler)
    try:
        if not any(map(unknown_interaction, logcheck.records)):
            await asyncio.wait_for(logged.wait(), 5)
    finally:
        logging.getLogger().removeHandler(handler)
    logcheck.ignore(unknown_interaction)
    fake.interaction_window = 3.0
    ix = await fake.slash(
        "echo",
        options={"text": "on time", "count": 1},
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    assert (await ix.response())["data"]["content"].startswith("on time")
    assert not ix.expired


async def test_unregistered_command_fails_clearly(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    fake.wait_timeout = 0.05
    with pytest.raises(LookupError, match=r"'missing'.*never registered"):
        await fake.slash("missing", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)


async def test_slash_in_dm(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    ix = await fake.slash(
        "echo", user_id=USER, guild_id=None, channel_id=555, options={"text": "a", "count": 1}
    )
    assert (await ix.response())["data"]["content"] == "a*1 [en-US] in dm"
    assert ix.payload["context"] == 1 and "member" not in ix.payload


async def test_autocomplete(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    choices = await fake.autocomplete(
        "echo",
        focused="text",
        options={"text": "ca", "count": 2},
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    assert choices == [{"name": "ca-1", "value": "ca1"}, {"name": "ca-2", "value": "ca2"}]


async def test_subcommand_and_group_with_resolved_options(
    env: tuple[FakeDiscord, commands.Bot],
) -> None:
    fake, _ = env
    ix = await fake.slash(
        "task",
        subcommand="show",
        options={"task_id": 9},
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    body = await ix.response()
    assert body["data"]["content"] == "task 9" and body["data"]["flags"] == 64
    options = {"user": USER, "amount": 2.5, "role": ROLE, "channel": CHANNEL, "flag": True}
    ix = await fake.slash(
        "admin",
        group="quota",
        subcommand="set",
        options=options,
        user_id=MOD,
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    content = (await ix.response())["data"]["content"]
    assert content == f"{USER} 2.5 Artists general True guild=True msgs=True"
    ix = await fake.slash(
        "admin",
        group="quota",
        subcommand="set",
        options=options,
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    assert (await ix.response())["data"]["content"].endswith("guild=False msgs=False")


async def test_modal_roundtrip(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    ix = await fake.slash("feedback", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    assert (await ix.response())["type"] == 9
    assert ix.modal is not None and ix.modal["custom_id"] == "feedback"
    submit = await fake.submit_modal(
        "feedback", {"feedback:text": "lovely"}, user_id=USER, guild_id=GUILD, channel_id=CHANNEL
    )
    body = await submit.response()
    assert body["data"]["content"] == "thanks: lovely"
    with pytest.raises(LookupError, match="no inputs"):
        await fake.submit_modal(
            "feedback", {"bogus": "x"}, user_id=USER, guild_id=GUILD, channel_id=CHANNEL
        )


async def test_persistent_button_on_interaction_message(
    env: tuple[FakeDiscord, commands.Bot],
) -> None:
    fake, _ = env
    ix = await fake.slash("button", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    await ix.response()
    message = ix.original()
    assert message is not None
    click = await fake.click(message, "task:42", user_id=MOD, guild_id=GUILD, channel_id=CHANNEL)
    body = await click.response()
    assert body == {"type": 7, "data": body["data"]}
    assert body["data"]["content"] == f"opened 42 by {MOD}"
    assert fake.message(int(message["id"]))["content"] == f"opened 42 by {MOD}"  # type: ignore[index]
    with pytest.raises(LookupError, match="no component"):
        await fake.click(message, "task:1", user_id=MOD, guild_id=GUILD, channel_id=CHANNEL)


async def test_defer_edit_and_followups(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    ix = await fake.slash("slow", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    assert (await ix.response())["type"] == 5
    followup = await ix.wait_for(lambda kind, body: kind == "followup")
    assert followup["content"] == "extra"
    original = ix.original()
    assert original is not None and original["content"] == "done" and original["flags"] == 0
    assert [m["content"] for m in ix.followups] == ["extra"]
    assert ix.followups[0]["flags"] == 64
    assert [k for k, _ in fake.interaction_log(ix.id)] == ["callback", "edit_original", "followup"]

    ix = await fake.slash("later", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    await ix.wait_for(lambda body: body.get("content") == "later")
    original = ix.original()
    assert original is not None and original["content"] == "later" and original["flags"] == 64


async def test_a_public_answer_is_a_message_of_its_channel_and_a_private_one_is_not(
    env: tuple[FakeDiscord, commands.Bot],
) -> None:
    fake, _ = env
    ix = await fake.slash("answers", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    note = await ix.wait_for(lambda kind, body: body.get("content", "").startswith("private "))
    # As on Discord: the bot edits its public answer through the channel's routes; an
    # ephemeral message exists only for its interaction, so the channel knows nothing of it.
    assert note["content"] == "private not found 10008"
    (public,) = fake.channel_messages(CHANNEL)
    assert int(public["id"]) == ix.original_id and public["content"] == "edited"
    assert all(m["content"] != "edited" for m in ix.followups)


async def test_channel_message_file_reaction_edit_delete(
    env: tuple[FakeDiscord, commands.Bot],
) -> None:
    fake, bot = env
    ix = await fake.slash("post", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    posted = await ix.wait_for(lambda body: body.get("content", "").startswith("posted"))
    msg = await fake.wait_for_message(CHANNEL, lambda m: m["content"] == "file edited")
    assert posted["content"] == f"posted {msg['id']}"
    assert [m["content"] for m in fake.channel_messages(CHANNEL)] == ["file edited"]
    (att,) = msg["attachments"]
    assert (att["filename"], att["content_type"], att["width"], att["height"]) == (
        "a.png",
        "image/png",
        3,
        2,
    )
    create = next(r for r in fake.requests if r.method == "POST" and r.files)
    assert create.files[0][0] == "a.png" and create.json["content"] == "file"
    async with aiohttp.ClientSession() as session, session.get(att["url"]) as resp:
        assert await resp.read() == png()
    assert fake.reactions(CHANNEL, int(msg["id"])) == {"✅": {APP_ID}}
    # The bot's own reaction comes back over the gateway, as on Discord.
    payload = await next_reaction(bot, APP_ID)
    assert str(payload.emoji) == "✅"
    await fake.gateway.sync()  # the bot has read the MESSAGE_DELETE of the temp message
    cached = {m.id for m in bot.cached_messages}
    assert int(msg["id"]) in cached and len(cached) == 1  # the temp message was deleted

    click = await fake.click(msg, "task:7", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    await click.response()
    edited = await fake.wait_for_message(CHANNEL, lambda m: m["content"].startswith("opened"))
    assert edited["id"] == msg["id"] and edited["content"] == f"opened 7 by {USER}"


async def test_sync_returns_once_the_bot_has_read_every_event(
    env: tuple[FakeDiscord, commands.Bot],
) -> None:
    fake, bot = env
    ix = await fake.slash("post", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    await ix.wait_for(lambda body: body.get("content", "").startswith("posted"))
    msg = await fake.wait_for_message(CHANNEL, lambda m: m["content"] == "file edited")
    await fake.gateway.sync()
    assert int(msg["id"]) in {m.id for m in bot.cached_messages}
    # discord.py drops a message from its cache while reading MESSAGE_DELETE, so the cache
    # shows whether the bot has read the event by the time sync returns.
    assert await fake.delete_message(int(msg["id"]))
    await fake.gateway.sync()
    assert int(msg["id"]) not in {m.id for m in bot.cached_messages}


async def test_user_reactions_and_context_menu(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, bot = env
    ix = await fake.slash("post", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    await ix.wait_for(lambda body: body.get("content", "").startswith("posted"))
    msg = fake.channel_messages(CHANNEL)[0]
    await fake.react(msg, "🎨", user_id=USER, guild_id=GUILD)
    payload = await next_reaction(bot, USER)
    assert (payload.user_id, payload.message_id, str(payload.emoji)) == (USER, int(msg["id"]), "🎨")
    assert payload.member is not None and payload.member.name == "alice"
    assert fake.reactions(CHANNEL, int(msg["id"]))["🎨"] == {USER}
    await fake.unreact((CHANNEL, int(msg["id"])), "🎨", user_id=USER, guild_id=GUILD)
    assert "🎨" not in fake.reactions(CHANNEL, int(msg["id"]))

    ix = await fake.context_menu(
        "Quote", user_id=USER, guild_id=GUILD, channel_id=CHANNEL, target_message=msg
    )
    body = await ix.response()
    assert body["data"]["content"] == f"quoted {msg['id']}: file edited"


async def test_dm_open_and_closed(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    ix = await fake.slash("dm", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    assert (await ix.response())["data"]["content"] == "sent"
    assert [m["content"] for m in fake.dm_messages(USER)] == ["psst"]
    ix = await fake.slash("dm", user_id=CLOSED, guild_id=GUILD, channel_id=CHANNEL)
    assert (await ix.response())["data"]["content"] == "closed 50007"
    assert fake.dm_messages(CLOSED) == []


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (429, "posted"),
        (500, "posted"),
        (403, "error 403 50013"),
        (404, "error 404 10003"),
        (413, "error 413 40005"),
    ],
)
async def test_fail_injection(
    env: tuple[FakeDiscord, commands.Bot], status: int, expected: str
) -> None:
    fake, _ = env
    if status == 413:
        fake.attachment_size_limit = 10
    else:
        fake.fail("POST", rf"/channels/{CHANNEL}/messages", status, retry_after=0.05)
    ix = await fake.slash("post", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    body = await ix.wait_for(lambda body: "content" in body, timeout=5)
    assert body["content"].startswith(expected)
    statuses = paths(fake, "POST", rf"/channels/{CHANNEL}/messages")
    if status in (429, 500):
        assert statuses[:2] == [status, 200]
    else:
        assert statuses == [status]


async def test_files_in_interaction_responses(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    ix = await fake.slash("render", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    callback = await ix.response()
    assert callback["type"] == 4 and callback["data"]["content"] == "v1"
    await ix.wait_for(lambda kind, body: kind == "followup")
    original = ix.original()
    assert original is not None and original["content"] == "v2"
    assert [(a["filename"], a.get("width")) for a in original["attachments"]] == [("2.png", 5)]
    (followup,) = ix.followups
    assert followup["attachments"][0]["filename"] == "3.bin"
    url = followup["attachments"][0]["url"]
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert await resp.read() == b"3"


async def test_logcheck_sees_command_errors_and_crashed_tasks(
    env: tuple[FakeDiscord, commands.Bot],
    logcheck: LogCheck,  # noqa: F811
) -> None:
    fake, _ = env
    await fake.slash("boom", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    for _ in range(100):
        if logcheck.problems():
            break
        await asyncio.sleep(0.01)
    assert any("kaboom" in problem for problem in logcheck.problems())
    logcheck.ignore(lambda record: True)

    async def crash() -> None:
        raise KeyError("attachment_size_limit")

    task = logcheck.watch(asyncio.create_task(crash(), name="crasher"))
    await asyncio.gather(task, return_exceptions=True)
    assert logcheck.problems() == ["task crasher crashed: KeyError('attachment_size_limit')"]
    with pytest.raises(AssertionError, match="crasher"):
        logcheck.verify()
    logcheck.tasks.remove(task)


async def test_heartbeats_are_acknowledged(
    logcheck: LogCheck,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with FakeDiscord(APP_ID, APP_ID, TOKEN, heartbeat_interval=0.02) as fake:
        fake.add_guild(GUILD)
        monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base_url)
        gateway_url = yarl.URL(fake.gateway_url)
        monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY", gateway_url)
        bot = make_bot()
        task = logcheck.watch(asyncio.create_task(bot.start(TOKEN)))
        await asyncio.wait_for(bot.wait_until_ready(), 5)
        await fake.changes.wait(lambda: fake.gateway.heartbeats >= 10 or None, 5, "heartbeats")
        await fake.gateway.sync()  # the bot has read the acknowledgements sent so far
        assert bot.latency < 1 and fake.gateway.identifies == 1
        await bot.close()
        await asyncio.wait_for(task, 5)


async def test_gateway_resume_after_server_close(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, _ = env
    await fake.gateway.close(code=4000)
    await fake.changes.wait(lambda: fake.gateway.resumes or None, 5, "a RESUME")
    assert fake.gateway.identifies == 1
    ix = await fake.slash(
        "task",
        subcommand="show",
        options={"task_id": 1},
        user_id=USER,
        guild_id=GUILD,
        channel_id=CHANNEL,
    )
    assert (await ix.response())["data"]["content"] == "task 1"


async def test_rest_reads_through_the_client(env: tuple[FakeDiscord, commands.Bot]) -> None:
    fake, bot = env
    guild = await bot.fetch_guild(GUILD)
    assert guild.name == "Guild" and guild.owner_id == OWNER
    assert {c.id for c in await guild.fetch_channels()} == {CHANNEL, OTHER_CHANNEL}
    member = await guild.fetch_member(USER)
    assert member.name == "alice" and [r.id for r in member.roles if r.id != GUILD] == [ROLE]
    user = await bot.fetch_user(MOD)
    assert user.name == "mod"
    channel = await bot.fetch_channel(CHANNEL)
    assert isinstance(channel, discord.TextChannel)
    sent = await channel.send("hello", nonce="n-1")
    again = await channel.send("hello", nonce="n-1")
    assert again.id == sent.id and len(fake.channel_messages(CHANNEL)) == 1
    assert (await channel.fetch_message(sent.id)).content == "hello"
    assert [m.id async for m in channel.history(limit=5)] == [sent.id]
    shards, url, _ = await bot.http.get_bot_gateway()
    assert (shards, url) == (1, fake.gateway_url.rstrip("/"))
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(1)
