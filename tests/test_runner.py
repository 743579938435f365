"""`miaohua-bot run` as a real process: emulator, bad tokens, no network, clean shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import signal
import socket
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.demo_accounts import DEMO_KEY_FILE, DemoAccounts, load_or_create_secret
from fakediscord import FakeDiscord
from tests.conftest import ADMIN_A, ADMIN_B, CH_A, CH_B, GUILD_A, GUILD_B
from tests.helpers import answer_text

pytestmark = pytest.mark.slow  # real bot processes

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "runner-test-token.XyZ.123456"


def _env(fake: FakeDiscord, tmp_path: Path, token: str | None, **extra: str) -> dict[str, str]:
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
    env.update({f"MIAOHUA_BOT_{key.upper()}": value for key, value in extra.items()})
    if token is not None:
        env["MIAOHUA_BOT_DISCORD__TOKEN"] = token
    return env


async def _spawn(fake, tmp_path, token, *args, **env):
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        *args,
        env=_env(fake, tmp_path, token, **env),
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


FROZEN = "objects of start-up frozen out of garbage collection"


async def _read_until(proc: asyncio.subprocess.Process, text: str) -> str:
    """The process's stderr up to and including the first line containing `text`."""
    assert proc.stderr is not None
    lines = []
    while line := (await proc.stderr.readline()).decode():
        lines.append(line)
        if text in line:
            break
    return "".join(lines)


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
        # Once ready (commands are served before), start-up's objects leave the collector.
        early = await asyncio.wait_for(_read_until(proc, FROZEN), 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = early + err.decode()
    assert proc.returncode == 0, log
    assert "shutting down" in log and "Traceback" not in log
    assert "event loop: uvloop" in log  # the whole run, commands included, was on uvloop
    assert FROZEN in log
    assert TOKEN not in log
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    key_file = tmp_path / "secret.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


# Starting while Discord cannot be reached


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port that refuses connections for the whole test: bound but never listening,
    so no other test's server can take it meanwhile (a port merely found free could be)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def _operator_lines(stderr: str) -> list[str]:
    """What the operator is told: the bot's own lines, and errors."""
    return [
        line for line in stderr.splitlines() if line.startswith("miaohua-bot:") or " ERROR " in line
    ]


class _Unreachable:
    """A Discord address that fails in a given way, without traffic beyond loopback."""

    def __init__(self, api_base_url: str, cause: str) -> None:
        self.api_base_url, self.gateway_url, self.cause = api_base_url, "ws://127.0.0.1:9/", cause


@pytest.mark.parametrize("fault", ["refused", "dns", "tls"])
async def test_unreachable_discord_is_one_clear_line_then_bounded_retries(
    fake, tmp_path, fault, refused_port
):
    if fault == "refused":
        port = refused_port
        target = _Unreachable(f"http://127.0.0.1:{port}/api/v10", f"127.0.0.1:{port} refused")
    elif fault == "dns":  # the reserved .invalid name never resolves
        target = _Unreachable("http://nonexistent.invalid/api/v10", "DNS lookup")
    else:  # TLS spoken to a plain-HTTP server: the handshake fails
        https = fake.api_base_url.replace("http://", "https://")
        target = _Unreachable(https, "TLS handshake failed")
    proc = await _spawn(target, tmp_path, TOKEN, DISCORD__CONNECT_RETRY="2")
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Traceback" not in text and TOKEN not in text
    lines = _operator_lines(text)
    assert len(lines) == 2, text
    first, last = lines
    assert first.startswith(f"miaohua-bot: cannot reach Discord at {target.api_base_url}: ")
    assert target.cause in first and "retrying for up to 2 s" in first
    attempts = re.match(r"miaohua-bot: giving up after (\d+) attempts in \d+ s: ", last)
    assert attempts and int(attempts.group(1)) >= 2, last
    assert last.endswith(
        f"Discord at {target.api_base_url} is still unreachable: "
        + (first.split(": ", 2)[2].removesuffix("; retrying for up to 2 s"))
    )
    assert fake.requests == [] or fault == "tls"


async def test_the_bot_connects_when_discord_comes_up_within_the_retry_window(tmp_path):
    port = _free_port()
    server = FakeDiscord(application_id=900, bot_user_id=900, bot_token=TOKEN, port=port)
    server.add_guild(GUILD_A, "Guild A", owner_id=ADMIN_A)
    server.add_channel(GUILD_A, CH_A, "art")
    server.add_member(GUILD_A, ADMIN_A, "admin", manage_guild=True)
    proc = await _spawn(server, tmp_path, TOKEN, "--emulator", DISCORD__CONNECT_RETRY="120")
    assert proc.stderr is not None
    seen: list[str] = []
    try:
        # Discord is down: the bot says so once and keeps trying.
        while not any("cannot reach Discord" in line for line in seen):
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, f"the bot exited: {seen}"
            seen.append(line.decode())
        async with server:
            for _ in range(600):
                if "account" in server.world.command_names() or proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert "account" in server.world.command_names(), "the bot never came up"
            ix = await server.slash(
                "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
            )
            assert "demo account" in await answer_text(ix, timeout=20)
            proc.send_signal(signal.SIGTERM)
            rest, _ = await asyncio.gather(proc.stderr.read(), proc.wait())
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = "".join(seen) + rest.decode()
    assert proc.returncode == 0, text
    assert "Traceback" not in text
    assert _operator_lines(text) == [
        f"miaohua-bot: cannot reach Discord at {server.api_base_url}: "
        f"connection to 127.0.0.1:{port} refused; retrying for up to 120 s"
    ]
    assert "reached Discord" in text


async def test_sigterm_while_waiting_for_discord_exits_cleanly(fake, tmp_path, refused_port):
    target = _Unreachable(f"http://127.0.0.1:{refused_port}/api/v10", "refused")
    proc = await _spawn(target, tmp_path, TOKEN, DISCORD__CONNECT_RETRY="600")
    assert proc.stderr is not None
    line = b"-"
    while b"cannot reach Discord" not in line:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, "the bot exited instead of waiting for Discord"
    proc.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(asyncio.gather(proc.stderr.read(), proc.wait()), 30)
    assert proc.returncode == 0
    assert "Traceback" not in rest.decode()


# Demo accounts of the built-in emulator


async def test_a_guild_cannot_log_in_to_another_guilds_demo_account(tmp_path):
    server = FakeDiscord(application_id=900, bot_user_id=900, bot_token=TOKEN)
    for guild, channel, admin in ((GUILD_A, CH_A, ADMIN_A), (GUILD_B, CH_B, ADMIN_B)):
        server.add_guild(guild, f"Guild {guild}", owner_id=admin)
        server.add_channel(guild, channel, "art")
        server.add_member(guild, admin, "admin", manage_guild=True)
    async with server:
        proc = await _spawn(server, tmp_path, TOKEN, "--emulator")
        try:
            for _ in range(300):
                if "account" in server.world.command_names() or proc.returncode is not None:
                    break
                await asyncio.sleep(0.05)
            assert "account" in server.world.command_names(), "commands were never synced"
            # Guild A uses its demo account, so it exists on the emulator.
            ix = await server.slash(
                "account", subcommand="status", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
            )
            assert "demo account" in await answer_text(ix, timeout=20)
            # Guild B's admin tries A's demo email with the password the source used to derive.
            guessed = hmac.new(b"miaohua-bot-demo", str(GUILD_A).encode(), hashlib.sha256)
            ix = await server.slash(
                "account", subcommand="set", user_id=ADMIN_B, guild_id=GUILD_B, channel_id=CH_B
            )
            await ix.response()
            submitted = await server.submit_modal(
                "account:set",
                {"email": DemoAccounts.email(GUILD_A), "password": guessed.hexdigest()},
                user_id=ADMIN_B,
                guild_id=GUILD_B,
                channel_id=CH_B,
            )
            text = await answer_text(submitted, timeout=20)
            assert "rejected the password" in text and "saved" not in text
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    log = err.decode()
    assert proc.returncode == 0, log
    with sqlite3.connect(tmp_path / "bot.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM accounts").fetchone()[0] == 0
    # The demo secret lives beside the database, private, and no demo password is logged.
    secret_file = tmp_path / DEMO_KEY_FILE
    assert secret_file.stat().st_mode & 0o777 == 0o600
    demo = DemoAccounts(load_or_create_secret(secret_file), lambda email, password: None)
    for guild in (GUILD_A, GUILD_B):
        assert demo.credentials(guild)[1] not in log
    assert secret_file.read_text().strip() not in log


async def test_an_unreachable_gateway_is_one_clear_line_too(fake, tmp_path, refused_port):
    # REST answers; the gateway's port is closed. discord.py itself would crash with a traceback.
    port = refused_port
    target = _Unreachable(fake.api_base_url, f"127.0.0.1:{port} refused")
    target.gateway_url = f"ws://127.0.0.1:{port}/"
    proc = await _spawn(target, tmp_path, TOKEN, DISCORD__CONNECT_RETRY="1")
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    text = err.decode()
    assert proc.returncode == 1, text
    assert "Traceback" not in text
    lines = _operator_lines(text)
    assert len(lines) == 2, text
    first, last = lines
    assert first == (
        f"miaohua-bot: cannot reach Discord at ws://127.0.0.1:{port}/: "
        f"connection to 127.0.0.1:{port} refused; retrying for up to 1 s"
    )
    assert last.startswith("miaohua-bot: giving up after ")
