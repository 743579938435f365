"""deploy/miaohua-bot.service: what it runs, when it restarts, and that the bot runs under it."""

from __future__ import annotations

import asyncio
import mmap
import shlex
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.__main__ import EXIT_CONFIG, build_parser
from bot.emulator import EmulatorServer, EmulatorSettings
from tests.conftest import CH_A, GUILD_A, MEMBER_A
from tests.genutil import is_accepted
from tests.helpers import answer_text
from tests.test_crash_recovery import (
    BotProcess,
    db_rows,
    one_guild_discord,
    process_env,
    set_account_by_form,
    until,
)

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "miaohua-bot.service"

PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file: each key with every value it was given, in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line}"
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def service() -> dict[str, list[str]]:
    return parse_unit(UNIT.read_text())["Service"]


def test_unit_runs_the_installed_console_script_with_the_config_file():
    argv = shlex.split(service()["ExecStart"][0])
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert Path(argv[0]).name in scripts
    assert argv[0] == "/opt/miaohua-bot/.venv/bin/miaohua-bot"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config == "/etc/miaohua-bot/config.toml"
    assert not args.emulator


def test_unit_restarts_on_failure_but_not_on_a_config_error():
    unit = service()
    assert unit["Restart"] == ["on-failure"]
    assert unit["RestartSec"] and unit["TimeoutStopSec"]
    # `run` exits 2 on settings it refuses: restarting would only loop.
    assert unit["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]


def test_unit_runs_as_its_own_user_with_its_state_directory_and_hardening():
    unit = service()
    expected = {
        "Type": "simple",
        "User": "miaohua-bot",
        "Group": "miaohua-bot",
        "StateDirectory": "miaohua-bot",
        "WorkingDirectory": "/var/lib/miaohua-bot",
        "EnvironmentFile": "/etc/miaohua-bot/env",
        "UMask": "0077",
        "NoNewPrivileges": "yes",
        "CapabilityBoundingSet": "",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes",
        "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces": "yes",
        "LockPersonality": "yes",
        "MemoryDenyWriteExecute": "yes",
        "SystemCallArchitectures": "native",
        "SystemCallFilter": "@system-service",
    }
    assert {key: unit.get(key, [None])[0] for key in expected} == expected
    assert parse_unit(UNIT.read_text())["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify checks that ExecStart's program exists: point it at this checkout's script.
    script = Path(sys.executable).parent / "miaohua-bot"
    assert script.is_file()
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/miaohua-bot/.venv/bin/miaohua-bot", str(script)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    # Unknown or misplaced keys are only warnings (exit 0): any output is a failure here.
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def _mdwe_works() -> bool:
    """Whether this kernel enforces prctl(PR_SET_MDWE), checked in a throwaway process."""
    probe = (
        "import ctypes, mmap, sys\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"if libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0: sys.exit(3)\n"
        f"mmap.mmap(-1, 4096, prot={mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC})\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, check=False)
    return done.returncode == 1 and b"PermissionError" in done.stderr


class MdweBotProcess(BotProcess):
    """`python -m bot run` with writable+executable memory refused, as MemoryDenyWriteExecute=
    does (the kernel keeps the refusal across exec)."""

    async def spawn(self) -> asyncio.subprocess.Process:
        launcher = (
            "import ctypes, os, sys\n"
            "libc = ctypes.CDLL(None, use_errno=True)\n"
            f"assert libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) == 0\n"
            "os.execv(sys.executable, [sys.executable, '-m', 'bot', 'run'])\n"
        )
        return await asyncio.create_subprocess_exec(
            sys.executable, "-c", launcher,
            env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip


@pytest.mark.slow  # a real bot process
async def test_bot_works_with_memory_deny_write_execute_and_stops_cleanly_on_sigterm(tmp_path):
    if not _mdwe_works():
        pytest.skip("this kernel cannot refuse writable+executable memory (PR_SET_MDWE)")
    email, password, token = "mdwe@guild.test", "mdwe-Pass-1", "mdwe-test-token.AbC.555"
    emu = EmulatorServer(EmulatorSettings(accounts={email: password}, generation_time=0.2))
    fake = one_guild_discord(token)
    db = tmp_path / "bot.sqlite3"
    async with emu, fake:
        # No secret_key: the bot creates and uses its Fernet key file, as in the service.
        env = process_env(fake, emu, tmp_path, token, "")
        env.pop("MIAOHUA_BOT_SECURITY__SECRET_KEY")
        env["MIAOHUA_BOT_SECURITY__KEY_FILE"] = str(tmp_path / "secret.key")
        bot = MdweBotProcess(env, tmp_path)
        await bot.start()
        try:
            await until(lambda: "imagine" in fake.world.command_names(), 30, "commands")
            await set_account_by_form(fake, email, password)
            ix = await fake.slash(
                "imagine", options={"prompt": "a locked-down lighthouse", "count": 2},
                user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A,
            )  # fmt: skip
            assert is_accepted(await answer_text(ix, 20))
            await until(
                lambda: db_rows(db, "SELECT state FROM tasks") == [("delivered",)],
                60,
                "the task delivered",
            )
            code, log = await bot.stop(signal.SIGTERM)
        finally:
            if bot.proc is not None and bot.proc.returncode is None:
                bot.proc.kill()
                await bot.proc.wait()
    assert code == 0, log
    assert "Traceback" not in log
    results = [m for m in fake.channel_messages(CH_A) if m.get("attachments")]
    assert results, "no result image was posted"
    assert (tmp_path / "secret.key").is_file()
    fake.verify_contract()
