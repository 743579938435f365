"""What a new user or admin meets first: start-up and delivery logs, login time, quotas."""

from __future__ import annotations

import logging
from functools import partial

from bot.app import create_bot
from bot.config import load_settings
from bot.demo_accounts import DemoAccounts
from tests.conftest import ADMIN_A, CH_A, GUILD_A, Harness
from tests.genutil import FAST_POLLING, imagine, is_accepted, task_id_of, wait_result
from tests.helpers import answer_text


async def test_start_up_logs_one_ready_line_and_each_delivery(harness_factory, caplog):
    caplog.set_level(logging.INFO)
    h = await harness_factory(miaohua=FAST_POLLING)
    ready = [r.getMessage() for r in caplog.records if r.getMessage().startswith("ready:")]
    assert ready == [f"ready: logged in as {h.bot.user.name}, 2 servers, commands synced"]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.getMessage() in ready)
    task_id = task_id_of(await answer_text(await imagine(h, count=1)))
    await wait_result(h, task_id)
    await h.idle()
    delivered = [
        r for r in caplog.records if r.getMessage().startswith(f"task {task_id} delivered")
    ]
    assert len(delivered) == 1 and delivered[0].levelno == logging.INFO
    text = delivered[0].getMessage()
    assert f"task {task_id} delivered in guild {GUILD_A}, " in text
    seconds = float(text.split(", ")[1].split(" s ")[0])
    assert seconds >= 0 and text.endswith(" s after acceptance")


async def _account_status(h: Harness) -> str:
    ix = await h.fake.slash(
        "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    return await answer_text(ix)


async def test_account_status_shows_the_last_login_of_the_demo_account(
    harness_factory, monkeypatch
):
    h = await harness_factory(miaohua=FAST_POLLING)
    demo = DemoAccounts(bytes(range(32)), h.emu.add_account)
    monkeypatch.setattr("tests.conftest.create_bot", partial(create_bot, demo=demo))
    await h.restart()
    await h.bot.accounts.remove(GUILD_A)  # the server now runs on its demo account
    task_id = task_id_of(await answer_text(await imagine(h, count=1)))
    await wait_result(h, task_id)
    text = await _account_status(h)
    assert DemoAccounts.email(GUILD_A) in text
    assert "working" in text
    assert "never" not in text
    assert "<t:" in text  # a Discord timestamp of the login


async def test_account_status_shows_the_last_login_of_a_stored_account(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING)
    task_id = task_id_of(await answer_text(await imagine(h, count=1)))
    await wait_result(h, task_id)
    await h.restart()
    text = await _account_status(h)
    assert "never" not in text and "<t:" in text


def test_a_daily_quota_of_zero_in_the_config_file_means_unlimited(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[limits]\ndaily_quota = 0\n")
    assert load_settings(cfg).limits.daily_quota == 0


async def test_a_member_under_a_configured_quota_of_zero_is_not_refused(harness_factory):
    h = await harness_factory(miaohua=FAST_POLLING, limits={"daily_quota": 0})
    for _ in range(3):  # 12 images: more than any quota that counted them against 0
        text = await answer_text(await imagine(h, count=4))
        assert is_accepted(text), text
        await wait_result(h, task_id_of(text))
