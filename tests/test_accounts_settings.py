"""`/account` and `/settings` through the fake Discord and the emulator."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from tests.conftest import (
    ACCOUNTS,
    ADMIN_A,
    ADMIN_B,
    CH_A,
    CH_B,
    DISCORD_TOKEN,
    GUILD_A,
    GUILD_B,
    MEMBER_A,
    MEMBER_A2,
)
from tests.genutil import eventually, imagine, is_accepted, task_id_of
from tests.helpers import answer_text, is_ephemeral


async def _set_account(harness, email: str, password: str, *, locale: str = "en-US") -> str:
    fake = harness.fake
    ix = await fake.slash(
        "account",
        subcommand="set",
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        locale=locale,
    )
    await ix.response()
    assert ix.modal is not None, "expected /account set to open a modal"
    submitted = await fake.submit_modal(
        "account:set",
        {"email": email, "password": password},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        locale=locale,
    )
    text = await answer_text(submitted)
    assert is_ephemeral(submitted)
    return text


async def test_member_without_manage_guild_is_refused(harness):
    for command, sub in [
        ("account", "status"),
        ("account", "set"),
        ("account", "remove"),
        ("settings", "show"),
        ("settings", "limits"),
    ]:
        ix = await harness.fake.slash(
            command, subcommand=sub, user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
        )
        assert "Manage Server" in await answer_text(ix)
        assert is_ephemeral(ix)
    assert await harness.bot.store.accounts.get(GUILD_A) is not None  # nothing removed


async def test_wrong_password_stores_nothing(harness):
    await harness.bot.accounts.remove(GUILD_A)
    text = await _set_account(harness, "a@guild.test", "not-the-password")
    assert "rejected the password" in text
    assert await harness.bot.store.accounts.get(GUILD_A) is None


async def test_unknown_user_and_non_business_account_get_their_own_messages(harness):
    harness.emu.add_account("shop@guild.test", "shop-pass")
    harness.emu.state.settings.non_business.add("shop@guild.test")
    await harness.bot.accounts.remove(GUILD_A)
    unknown = await _set_account(harness, "nobody@guild.test", "whatever")
    assert "does not know that account" in unknown
    business = await _set_account(harness, "shop@guild.test", "shop-pass")
    assert "not a business" in business
    assert await harness.bot.store.accounts.get(GUILD_A) is None


async def test_set_account_stores_it_encrypted_and_never_logs_the_password(harness, caplog):
    caplog.set_level(logging.DEBUG)
    password = "Corr3ct-Horse-Battery"
    harness.emu.add_account("new@guild.test", password)
    text = await _set_account(harness, "new@guild.test", password)
    assert "saved" in text
    row = await harness.bot.store.accounts.get(GUILD_A)
    assert row is not None and row.email_hint.startswith("n***@")
    await harness.stop()  # checkpoint the WAL so every byte is in the files
    for path in Path(harness.settings.storage.path).parent.glob("bot.sqlite3*"):
        data = path.read_bytes()
        assert password.encode() not in data
        assert b"new@guild.test" not in data
    assert password not in caplog.text
    assert DISCORD_TOKEN not in caplog.text
    await harness.start()


async def test_status_and_remove(harness):
    fake = harness.fake
    ix = await fake.slash(
        "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    text = await answer_text(ix)
    assert "a***@guild.test" in text and "working" in text
    assert ACCOUNTS[GUILD_A][0] not in text
    assert is_ephemeral(ix)
    ix = await fake.slash(
        "account", subcommand="remove", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "removed" in await answer_text(ix)
    assert await harness.bot.store.accounts.get(GUILD_A) is None
    ix = await fake.slash(
        "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "no Miaohua account" in await answer_text(ix)


async def test_expired_token_shows_as_relogged_in_status(harness):
    harness.emu.expire_tokens()
    ix = await harness.fake.slash(
        "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "working" in await answer_text(ix)  # the bot logged in again by itself


async def test_two_guilds_use_their_own_accounts(harness):
    bot = harness.bot
    a = await bot.accounts.session_for(GUILD_A)
    b = await bot.accounts.session_for(GUILD_B)
    assert a is not b
    for guild, user in ((GUILD_A, ADMIN_A), (GUILD_B, ADMIN_B)):
        channel = CH_A if guild == GUILD_A else CH_B
        ix = await harness.fake.slash(
            "account", subcommand="status", user_id=user, guild_id=guild, channel_id=channel
        )
        text = await answer_text(ix)
        expected = ACCOUNTS[guild][0][0] + "***@guild.test"
        assert expected in text


async def test_wrong_secret_key_asks_admins_to_set_the_account_again(harness):
    await harness.stop()
    harness.settings = harness.settings.model_copy(
        update={"security": harness.settings.security.model_copy(update={"secret_key": None})}
    )
    await harness.start()
    ix = await harness.fake.slash(
        "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "run `/account set` again" in await answer_text(ix)


async def test_chinese_user_gets_chinese_text(harness):
    ix = await harness.fake.slash(
        "account",
        subcommand="status",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        locale="zh-CN",
    )
    assert "管理服务器" in await answer_text(ix)
    ix = await harness.fake.slash(
        "settings",
        subcommand="show",
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        locale="zh-CN",
    )
    assert "的设置" in await answer_text(ix)


async def test_guild_language_is_the_fallback_for_unsupported_locales(harness):
    fake = harness.fake
    ix = await fake.slash(
        "settings",
        subcommand="limits",
        options={"language": "zh-CN"},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    await answer_text(ix)

    async def status_in_french() -> str:
        ix = await fake.slash(
            "account",
            subcommand="status",
            user_id=MEMBER_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
            locale="fr",
        )
        return await answer_text(ix)

    assert "管理服务器" in await status_in_french()
    await harness.restart()  # the guild's language is remembered
    assert "管理服务器" in await status_in_french()


async def test_commands_in_dms_say_they_work_in_servers_only(harness):
    ix = await harness.fake.slash(
        "settings", subcommand="show", user_id=MEMBER_A, guild_id=None, channel_id=9999
    )
    assert "servers only" in await answer_text(ix)


async def test_settings_defaults_are_validated_against_the_form(harness):
    fake = harness.fake
    ix = await fake.slash(
        "settings",
        subcommand="defaults",
        options={"size": "123x456"},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    text = await answer_text(ix)
    assert "Unknown size `123x456`" in text and "512x768" in text
    ix = await fake.slash(
        "settings",
        subcommand="defaults",
        options={"count": 9},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert "between 1 and 8" in await answer_text(ix)
    ix = await fake.slash(
        "settings",
        subcommand="defaults",
        options={"model": "Nope"},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert "Unknown model `Nope`" in await answer_text(ix)
    ix = await fake.slash(
        "settings",
        subcommand="defaults",
        options={
            "size": "2:3 512x768",
            "count": 4,
            "scale": 9,
            "model": "Watercolor_V1",
            "negative_prompt": "blurry",
        },
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert "saved" in await answer_text(ix)
    saved = await harness.bot.store.settings.get(GUILD_A)
    assert (saved.size, saved.count, saved.scale, saved.model, saved.negative_prompt) == (
        "512x768",
        4,
        9,
        "Watercolor_V1",
        "blurry",
    )
    assert (await harness.bot.store.settings.get(GUILD_B)).size is None


async def test_settings_channels_words_and_limits(harness):
    fake = harness.fake

    async def run(sub: str, **options):
        ix = await fake.slash(
            "settings",
            subcommand=sub,
            options=options,
            user_id=ADMIN_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
        )
        return await answer_text(ix)

    await run("channels", action="allow", channel=CH_A)
    await run("blocked-words", action="add", word="Forbidden")
    await run("blocked-words", action="add", word="other")
    await run("blocked-words", action="remove", word="other")
    text = await run("limits", user_running=3, user_queued=0, daily_quota=0)
    assert "unlimited" in text
    saved = await harness.bot.store.settings.get(GUILD_A)
    assert saved.allowed_channels == (CH_A,)
    assert saved.blocked_words == ("forbidden",)
    assert (saved.user_running, saved.user_queued, saved.daily_quota) == (3, 0, 0)
    await run("channels", action="clear")
    assert (await harness.bot.store.settings.get(GUILD_A)).allowed_channels == ()


async def test_model_and_size_autocomplete(harness):
    choices = await harness.fake.autocomplete(
        "settings",
        subcommand="defaults",
        focused="size",
        options={"size": "2:3"},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert [c["value"] for c in choices] == ["512x768", "640x960", "768x1152", "1024x1536"]
    assert choices[0]["name"] == "2:3 512x768"
    choices = await harness.fake.autocomplete(
        "settings",
        subcommand="defaults",
        focused="model",
        options={"model": "artist"},
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    assert {c["value"] for c in choices} == {"Artist_V0.1.3", "Artist v0.3.0 Beta"}


async def test_two_admins_filling_the_account_form_at_once_keep_their_own(harness):
    fake = harness.fake
    opened = []
    for guild, user, channel in ((GUILD_A, ADMIN_A, CH_A), (GUILD_B, ADMIN_B, CH_B)):
        ix = await fake.slash(
            "account", subcommand="set", user_id=user, guild_id=guild, channel_id=channel
        )
        await ix.response()
        opened.append((guild, user, channel))
    for guild, user, channel in reversed(opened):  # submitted in the other order
        email, password = ACCOUNTS[guild]
        done = await fake.submit_modal(
            "account:set",
            {"email": email, "password": password},
            user_id=user,
            guild_id=guild,
            channel_id=channel,
        )
        assert "saved" in await answer_text(done)
    for guild in (GUILD_A, GUILD_B):
        row = await harness.bot.store.accounts.get(guild)
        assert row.email_hint == ACCOUNTS[guild][0][0] + "***@guild.test"


async def test_sharded_bot_runs_with_shard_settings(harness_factory):
    h = await harness_factory(discord={"shard_count": 1, "shard_ids": [0]})
    assert type(h.bot).__name__ == "ShardedMiaohuaBot" and h.bot.shard_count == 1
    ix = await h.fake.slash(
        "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    assert "a***@guild.test" in await answer_text(ix)


async def test_a_changed_account_drops_the_guilds_cached_forms_whoever_changes_it(harness):
    bot, calls = harness.bot, harness.emu.state.calls
    await bot.forms.generation_form(GUILD_A)
    await bot.forms.generation_form(GUILD_B)
    fetched = calls["get_generation_form"]
    await bot.forms.generation_form(GUILD_A)
    assert calls["get_generation_form"] == fetched  # served from the cache
    # The account service publishes the change; no command has to clear the cache.
    harness.emu.add_account("forms@guild.test", "forms-Secret-7")
    await bot.accounts.set_account(GUILD_A, "forms@guild.test", "forms-Secret-7")
    await bot.forms.generation_form(GUILD_A)
    assert calls["get_generation_form"] == fetched + 1
    await bot.forms.generation_form(GUILD_B)  # another guild keeps its copy
    assert calls["get_generation_form"] == fetched + 1
    await bot.accounts.remove(GUILD_B)
    assert len(bot.forms) == 1  # only guild A's fresh copy is left


async def test_commands_arriving_while_the_form_is_fetched_share_one_fetch(harness, monkeypatch):
    # A burst of commands on a guild whose form is not cached (after a start, or a change of
    # account) asked the service once per command; under load those calls queued behind each
    # other until they timed out and the members were told Miaohua was not answering.
    bot, calls = harness.bot, harness.emu.state.calls
    session = await bot.accounts.session_for(GUILD_A)
    fetch, gate = session.generation_form, asyncio.Event()

    async def held_fetch():
        await gate.wait()
        return await fetch()

    monkeypatch.setattr(session, "generation_form", held_fetch)
    waiting = []
    asked = bot.forms.generation_form

    async def counted(guild_id):
        waiting.append(guild_id)
        return await asked(guild_id)

    monkeypatch.setattr(bot.forms, "generation_form", counted)
    before = calls["get_generation_form"]
    first = await imagine(harness, prompt="a burst, first", user_id=MEMBER_A)
    second = await imagine(harness, prompt="a burst, second", user_id=MEMBER_A2)
    await eventually(lambda: len(waiting) == 2)  # both commands wait for the form
    gate.set()
    for ix in (first, second):
        assert is_accepted(await answer_text(ix))
    assert calls["get_generation_form"] == before + 1


async def test_commands_read_the_guild_settings_and_models_from_memory_until_they_change(
    harness, monkeypatch
):
    # Every /imagine read the guild's settings from the database three times (its defaults,
    # its limits, its moderation log's channel) and its trained models once: four of the
    # ten statements a command cost, under a burst of commands.
    store = harness.bot.store
    reads = []

    def counting(repo, table):
        fetch_one, fetch_all = repo._fetch_one, repo._fetch_all

        async def one(sql, params=()):
            if sql.startswith(f"SELECT * FROM {table}"):
                reads.append(table)
            return await fetch_one(sql, params)

        async def all_(sql, params=()):
            if sql.startswith(f"SELECT * FROM {table}"):
                reads.append(table)
            return await fetch_all(sql, params)

        monkeypatch.setattr(repo, "_fetch_one", one)
        monkeypatch.setattr(repo, "_fetch_all", all_)

    counting(store.settings, "guild_settings")
    counting(store.models, "trained_models")
    for prompt in ("read once", "read from memory", "and again"):
        assert is_accepted(await answer_text(await imagine(harness, prompt=prompt)))
    assert sorted(reads) == ["guild_settings", "trained_models"]
    # A change is what the next command sees.
    await store.settings.update(GUILD_A, scale=3)
    text = await answer_text(await imagine(harness, prompt="after the change"))
    assert (await store.tasks.get(task_id_of(text))).scale == 3
    await store.settings.reset(GUILD_A)
    text = await answer_text(await imagine(harness, prompt="after the reset"))
    assert (await store.tasks.get(task_id_of(text))).scale != 3
    await store.models.add(guild_id=GUILD_A, model_name="trained_after_reads")
    assert "trained_after_reads" in [m.model_name for m in await store.models.for_guild(GUILD_A)]
    await store.models.rename(GUILD_A, "trained_after_reads", "Renamed")
    assert [m.display_name for m in await store.models.for_guild(GUILD_A)] == ["Renamed"]
    await store.models.delete(GUILD_A, "trained_after_reads")
    assert await store.models.for_guild(GUILD_A) == []


async def test_a_stored_language_change_reaches_replies_without_the_settings_command(harness):
    async def status_in_french() -> str:
        ix = await harness.fake.slash(
            "account", subcommand="status", user_id=MEMBER_A, guild_id=GUILD_A,
            channel_id=CH_A, locale="fr",
        )  # fmt: skip
        return await answer_text(ix)

    assert "Manage Server" in await status_in_french()
    await harness.bot.store.settings.update(GUILD_A, language="zh-CN")
    assert "管理服务器" in await status_in_french()
