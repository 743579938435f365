"""`miaohua-bot run` as a real process: embedded emulator, bad tokens, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from tests.conftest import ADMIN_A, CH_A, GUILD_A
from tests.fakes import FakeDiscord
from tests.helpers import answer_text

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "runner-test-token.XyZ.123456"


def _env(fake: FakeDiscord, tmp_path: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOHUA_BOT_")}
    env.update(
        {
            "MIAOHUA_BOT_DISCORD__API_BASE_URL": fake.api_base_url,
            "MIAOHUA_BOT_DISCORD__GATEWAY_URL": fake.gateway_url,
            "MIAOHUA_BOT_STORAGE__PATH": str(tmp_path / "bot.sqlite3"),
            "MIAOHUA_BOT_STORAGE__STAGING_DIR": str(tmp_path / "staging"),
            "MIAOHUA_BOT_SECURITY__KEY_FILE": str(tmp_path / "secret.key"),
            "MIAOHUA_BOT_MIAOHUA__EMBEDDED__GENERATION_TIME": "0.05",
        }
    )
    if token is not None:
        env["MIAOHUA_BOT_DISCORD__TOKEN"] = token
    return env


async def _spawn(fake, tmp_path, token, *args):
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        *args,
        env=_env(fake, tmp_path, token),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.fixture
async def fake():
    server = FakeDiscord(application_id=900, bot_user_id=900, bot_token=TOKEN)
    server.add_guild(GUILD_A, "Guild A", owner_id=ADMIN_A)
    server.add_channel(GUILD_A, CH_A, "art")
    server.add_member(GUILD_A, ADMIN_A, "admin", manage_guild=True)
    async with server:
        yield server
    server.verify_contract()  # a request Discord would reject fails the test that made it


async def test_missing_token_is_one_clear_line(fake, tmp_path):
    proc = await _spawn(fake, tmp_path, None)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "MIAOHUA_BOT_DISCORD__TOKEN" in lines[0]


async def test_rejected_token_is_one_clear_line(fake, tmp_path):
    proc = await _spawn(fake, tmp_path, "wrong-token-0000")
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    text = err.decode()
    problems = [line for line in text.splitlines() if "miaohua-bot:" in line or "WARNING" in line]
    assert problems == [
        "miaohua-bot: Discord rejected the bot token (check MIAOHUA_BOT_DISCORD__TOKEN)"
    ]
    assert "Traceback" not in text
    assert "wrong-token-0000" not in text


async def test_embedded_emulator_gives_every_guild_a_demo_account_and_sigterm_is_clean(
    fake, tmp_path
):
    proc = await _spawn(fake, tmp_path, TOKEN, "--emulator")
    try:
        for _ in range(300):
            if "account" in fake.world.command_names():
                break
            if proc.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert "account" in fake.world.command_names(), "commands were never synced"
        ix = await fake.slash(
            "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
        )
        text = await answer_text(ix, timeout=20)
        assert "demo account" in text and "working" in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert proc.returncode == 0, log
    assert "shutting down" in log and "Traceback" not in log
    assert TOKEN not in log
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    key_file = tmp_path / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
