"""Settings sources and precedence, and the `miaohua-bot check-config` command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in list(__import__("os").environ):
        if name.startswith("MIAOHUA_BOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults():
    s = load_settings()
    assert s.miaohua.base_url == "https://miaohua.sensetime.com/api/v1b"
    assert s.storage.path == Path("data/miaohua-bot.sqlite3")
    assert s.discord.token is None
    assert s.miaohua.requests_per_second == 5.0


def test_file_then_environment_later_wins(tmp_path, monkeypatch):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[limits]\ndaily_quota = 7\nprompt_length = 300\n[discord]\ntoken = "from-file"\n'
    )
    assert load_settings(cfg).limits.daily_quota == 7
    monkeypatch.setenv("MIAOHUA_BOT_LIMITS__DAILY_QUOTA", "9")
    monkeypatch.setenv("MIAOHUA_BOT_DISCORD__TOKEN", "from-env")
    monkeypatch.setenv("MIAOHUA_BOT_MIAOHUA__BASE_URL", "http://127.0.0.1:9/api/v1b/")
    monkeypatch.setenv("MIAOHUA_BOT_STORAGE__PATH", "/tmp/x.sqlite3")
    monkeypatch.setenv("MIAOHUA_BOT_SECURITY__SECRET_KEY", "k")
    s = load_settings(cfg)
    assert s.limits.daily_quota == 9 and s.limits.prompt_length == 300
    assert s.discord.token.get_secret_value() == "from-env"
    assert s.miaohua.base_url == "http://127.0.0.1:9/api/v1b"
    assert s.storage.path == Path("/tmp/x.sqlite3")
    assert s.security.secret_key.get_secret_value() == "k"


def test_config_file_discovery(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text("[limits]\ndaily_quota = 3\n")
    assert load_settings().limits.daily_quota == 3
    other = tmp_path / "other.toml"
    other.write_text("[limits]\ndaily_quota = 4\n")
    monkeypatch.setenv("MIAOHUA_BOT_CONFIG", str(other))
    assert load_settings().limits.daily_quota == 4
    assert load_settings(tmp_path / "config.toml").limits.daily_quota == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[limits]\ndaily_quota = -1\n", "limits.daily_quota"),
        ("[limits]\nunknown_key = 1\n", "limits.unknown_key: unknown setting"),
        ('[miaohua]\nbase_url = "ftp://x"\n', "miaohua.base_url"),
        ('[logging]\nformat = "xml"\n', "logging.format"),
        ("[limits\n", "config file"),
    ],
)
def test_invalid_values_name_the_key(tmp_path, text, expected):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_example_config_is_valid_and_complete():
    example = load_settings(ROOT / "config.example.toml")
    defaults = load_settings()
    assert example.model_dump() == defaults.model_dump()
    text = (ROOT / "config.example.toml").read_text()
    for section, model in defaults:
        assert f"[{section}]" in text
        for key in type(model).model_fields:
            assert key in text, f"{section}.{key} is not documented in config.example.toml"


def _cli(*args: str, env: dict | None = None, cwd: Path | None = None):
    base = {k: v for k, v in __import__("os").environ.items() if not k.startswith("MIAOHUA_BOT_")}
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        cwd=cwd or ROOT,
        timeout=60,
    )


@pytest.mark.slow
def test_check_config_masks_every_secret(tmp_path):
    result = _cli(
        "check-config",
        env={
            "MIAOHUA_BOT_DISCORD__TOKEN": "tok-123456",
            "MIAOHUA_BOT_SECURITY__SECRET_KEY": "k-98765",
        },
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["discord"]["token"] == "********"
    assert shown["security"]["secret_key"] == "********"
    assert "tok-123456" not in result.stdout + result.stderr
    assert "k-98765" not in result.stdout + result.stderr


@pytest.mark.slow
def test_check_config_invalid_value_is_one_line_and_exit_2(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[limits]\nprompt_length = 0\n")
    result = _cli("check-config", "--config", str(cfg), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "limits.prompt_length" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_missing_config_file_is_reported(tmp_path):
    result = _cli("check-config", "--config", str(tmp_path / "nope.toml"), cwd=tmp_path)
    assert result.returncode == 2 and "not found" in result.stderr


def test_shard_ids_need_a_shard_count(monkeypatch):
    monkeypatch.setenv("MIAOHUA_BOT_DISCORD__SHARD_IDS", "[0, 1]")
    with pytest.raises(ConfigError, match="shard_ids needs shard_count"):
        load_settings()
    monkeypatch.setenv("MIAOHUA_BOT_DISCORD__SHARD_COUNT", "1")
    with pytest.raises(ConfigError, match="between 0 and shard_count"):
        load_settings()
    monkeypatch.setenv("MIAOHUA_BOT_DISCORD__SHARD_COUNT", "2")
    assert load_settings().discord.shard_ids == [0, 1]


def test_an_unparsable_environment_value_is_named(monkeypatch):
    monkeypatch.setenv("MIAOHUA_BOT_DISCORD", "notjson")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "MIAOHUA_BOT_* environment" in str(err.value) and '"discord"' in str(err.value)


@pytest.mark.parametrize(
    ("env", "files", "expected"),
    [
        ({}, {}, "no Discord bot token"),
        ({"MIAOHUA_BOT_DISCORD__TOKEN": "   "}, {}, "no Discord bot token"),
        ({"MIAOHUA_BOT_DISCORD__TOKEN": "t"}, {"secret.key": b"not a key\n"}, "security.key_file"),
        ({"MIAOHUA_BOT_DISCORD__TOKEN": "t"}, {"secret.key": None}, "cannot be read"),
        (
            {"MIAOHUA_BOT_DISCORD__TOKEN": "t", "MIAOHUA_BOT_DISCORD__API_BASE_URL": "ftp://x"},
            {},
            "discord.api_base_url",
        ),
        (
            {"MIAOHUA_BOT_DISCORD__TOKEN": "t", "MIAOHUA_BOT_DISCORD__GATEWAY_URL": "http://x"},
            {},
            "discord.gateway_url",
        ),
        (
            {"MIAOHUA_BOT_DISCORD__TOKEN": "t", "MIAOHUA_BOT_MIAOHUA__EMULATOR": "true"},
            {"demo-accounts.key": b"damaged"},
            "demo secret file",
        ),
    ],
    ids=[
        "no-token",
        "blank-token",
        "bad-key",
        "unreadable-key",
        "api-url",
        "gateway-url",
        "damaged-demo-secret",
    ],
)
@pytest.mark.slow
def test_check_config_refuses_what_run_refuses_in_the_same_line(tmp_path, env, files, expected):
    for name, content in files.items():
        if content is None:  # a directory where the file should be: exists, cannot be read
            (tmp_path / name).mkdir()
        else:
            (tmp_path / name).write_bytes(content)
    env = {
        **env,
        "MIAOHUA_BOT_SECURITY__KEY_FILE": str(tmp_path / "secret.key"),
        "MIAOHUA_BOT_STORAGE__PATH": str(tmp_path / "bot.sqlite3"),
        # Should `run` get past its checks, it must not go anywhere: a closed loopback port.
        "MIAOHUA_BOT_DISCORD__API_BASE_URL": env.get(
            "MIAOHUA_BOT_DISCORD__API_BASE_URL", "http://127.0.0.1:9/api/v10"
        ),
        "MIAOHUA_BOT_DISCORD__CONNECT_RETRY": "0",
    }
    check = _cli("check-config", env=env, cwd=tmp_path)
    run = _cli("run", env=env, cwd=tmp_path)
    assert (check.returncode, run.returncode) == (2, 2), run.stderr
    assert check.stdout == ""
    check_lines = check.stderr.strip().splitlines()
    assert len(check_lines) == 1 and expected in check_lines[0]
    assert run.stderr.strip().splitlines() == check_lines
