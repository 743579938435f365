"""Demo accounts of `run --emulator`: random per data directory, kept across restarts, private."""

from __future__ import annotations

import hashlib
import hmac
import stat
from pathlib import Path

import aiohttp
import pytest

from bot.config import Settings, StorageSettings
from bot.demo_accounts import (
    DEMO_KEY_FILE,
    DemoAccounts,
    DemoSecretUnusable,
    load_or_create_secret,
)
from bot.runner import _embedded_emulator

GUILD = 1001


def _settings(data_dir: Path) -> Settings:
    return Settings(storage=StorageSettings(path=data_dir / "bot.sqlite3"))


async def _get_token(base_url: str, email: str, password: str) -> dict | str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/get_token", json={"email": email, "password": password}) as resp,
    ):
        return await resp.json()


async def _demo_credentials(data_dir: Path) -> tuple[str, str]:
    """Start the embedded emulator as `run --emulator` does; log in to the guild's demo account."""
    async with _embedded_emulator(_settings(data_dir)) as wiring:
        email, password = wiring["demo"].provision(GUILD)
        answer = await _get_token(wiring["emulator_base_url"], email, password)
        assert isinstance(answer, dict) and answer.get("token"), answer
        guessed = hmac.new(b"miaohua-bot-demo", str(GUILD).encode(), hashlib.sha256)
        refused = await _get_token(wiring["emulator_base_url"], email, guessed.hexdigest())
        assert isinstance(refused, dict) and refused.get("code") == 601, refused
        return email, password


async def test_demo_credentials_differ_per_data_directory_and_survive_a_restart(tmp_path):
    first = await _demo_credentials(tmp_path / "one")
    other = await _demo_credentials(tmp_path / "two")
    again = await _demo_credentials(tmp_path / "one")  # a restart on the same data
    assert first[0] == other[0] == DemoAccounts.email(GUILD)
    assert first[1] != other[1]
    assert again == first
    for folder in ("one", "two"):
        secret_file = tmp_path / folder / DEMO_KEY_FILE
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(secret_file.parent.stat().st_mode) == 0o700


def test_demo_passwords_are_per_guild_and_the_secret_never_shows():
    demo = DemoAccounts(bytes(range(32)), lambda email, password: None)
    assert demo.credentials(1)[1] != demo.credentials(2)[1]
    assert bytes(range(32)).hex() not in repr(demo)
    with pytest.raises(ValueError):
        DemoAccounts(b"short", lambda email, password: None)


@pytest.mark.parametrize("content", [b"not hex\n", b"abcd\n", b"\xff\xfe"])
def test_a_damaged_demo_secret_file_is_refused_in_one_line(tmp_path, content):
    secret_file = tmp_path / DEMO_KEY_FILE
    secret_file.write_bytes(content)
    secret_file.chmod(0o600)
    with pytest.raises(DemoSecretUnusable) as err:
        load_or_create_secret(secret_file)
    assert str(secret_file) in str(err.value) and "\n" not in str(err.value)
    assert secret_file.read_bytes() == content  # never silently replaced
