"""`/settings show` shows each value in effect and where it comes from, through the real client."""

from __future__ import annotations

from typing import Any

from tests.conftest import ADMIN_A, ADMIN_B, CH_A, CH_B, GUILD_A, GUILD_B
from tests.helpers import answer, is_ephemeral

SERVER, BOT, SERVICE = "set on this server", "bot default", "service default"
UNREADABLE = "service default (cannot be read right now)"


async def _settings(
    harness: Any,
    sub: str = "show",
    *,
    guild: tuple[int, int, int] = (GUILD_A, CH_A, ADMIN_A),
    locale: str = "en-US",
    **options: Any,
) -> dict[str, str]:
    """Run a /settings subcommand; return its embed's fields, name -> value."""
    guild_id, channel_id, user_id = guild
    ix = await harness.fake.slash(
        "settings",
        subcommand=sub,
        options=options,
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        locale=locale,
    )
    body = await answer(ix, timeout=20)
    assert is_ephemeral(ix)
    data = body.get("data", body)
    (embed,) = data["embeds"]
    return {field["name"]: field["value"] for field in embed["fields"]}


def _row(value: object, source: str) -> str:
    return f"{value}\n*{source}*"


async def test_a_fresh_server_shows_the_service_and_bot_defaults_in_effect(harness_factory):
    harness = await harness_factory(limits={"daily_quota": 7, "user_running": 4})
    shown = await _settings(harness)
    # The emulator's generation form: first model, 512x512, 2 images, scale 7.
    assert shown["Model"] == _row("Artist\\_V0.1.3", SERVICE)
    assert shown["Size"] == _row("512x512", SERVICE)
    assert shown["Images"] == _row(2, SERVICE)
    assert shown["Guidance scale"] == _row(7, SERVICE)
    # The bot's configuration file, and what the bot does when nothing is set.
    assert shown["Images per member per day"] == _row(7, BOT)
    assert shown["Tasks per member running at once"] == _row(4, BOT)
    assert shown["Tasks per member waiting in line"] == _row(10, BOT)
    assert shown["Language"] == _row("English", BOT)
    assert shown["Allowed channels"] == _row("all channels", BOT)
    assert shown["Negative prompt"] == _row("none", BOT)
    assert shown["Blocked words"] == _row("none", BOT)
    assert shown["Trainer role"] == _row("none (Manage Server only)", BOT)
    assert "default" not in [value.split("\n")[0] for value in shown.values()]


async def test_values_a_server_sets_are_marked_as_its_own_and_kept_across_a_restart(harness):
    saved = await _settings(harness, "defaults", model="Watercolor_V1")
    assert saved["Model"] == _row("Watercolor\\_V1", SERVER)
    assert saved["Size"] == _row("512x512", SERVICE)
    saved = await _settings(harness, "limits", daily_quota=0, user_running=3)
    assert saved["Images per member per day"] == _row("unlimited", SERVER)
    assert saved["Tasks per member running at once"] == _row(3, SERVER)
    await harness.restart()
    shown = await _settings(harness)
    assert shown["Model"] == _row("Watercolor\\_V1", SERVER)
    assert shown["Images per member per day"] == _row("unlimited", SERVER)
    # Another server is untouched: it still runs on the defaults.
    other = await _settings(harness, guild=(GUILD_B, CH_B, ADMIN_B))
    assert other["Model"] == _row("Artist\\_V0.1.3", SERVICE)
    assert other["Images per member per day"] == _row(50, BOT)


async def test_a_bot_wide_unlimited_quota_shows_as_unlimited(harness_factory):
    harness = await harness_factory(limits={"daily_quota": 0})
    shown = await _settings(harness)
    assert shown["Images per member per day"] == _row("unlimited", BOT)


async def test_without_an_account_the_service_defaults_are_unreadable_but_shown(harness):
    ix = await harness.fake.slash(
        "account", subcommand="remove", user_id=ADMIN_B, guild_id=GUILD_B, channel_id=CH_B
    )
    await answer(ix)
    shown = await _settings(harness, guild=(GUILD_B, CH_B, ADMIN_B))
    for name in ("Model", "Size", "Images", "Guidance scale"):
        assert shown[name] == f"*{UNREADABLE}*"
    assert shown["Images per member per day"] == _row(50, BOT)
    # A value the server set needs no service to be shown.
    await harness.bot.store.settings.update(GUILD_B, count=3)
    shown = await _settings(harness, guild=(GUILD_B, CH_B, ADMIN_B))
    assert shown["Images"] == _row(3, SERVER)


async def test_sources_are_named_in_chinese(harness):
    await _settings(harness, "defaults", model="Watercolor_V1")
    shown = await _settings(harness, locale="zh-CN")
    assert shown["模型"] == _row("Watercolor\\_V1", "本服务器设置")
    assert shown["尺寸"] == _row("512x512", "妙画服务默认值")
    assert shown["每位成员每日图片数"] == _row(50, "机器人默认值")
    assert shown["语言"] == _row("English", "机器人默认值")
