"""`miaohua-bot storage backup PATH`: a consistent, checked copy of the database."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import pytest

from bot.__main__ import main
from bot.crypto import SecretBox
from bot.emulator import EmulatorServer, EmulatorSettings
from bot.store.store import Store
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

TOKEN = "backup-test-token.XyZ.123456"
SECRET = "backup-test-key"
EMAIL, PASSWORD = "backup@guild.test", "backup-Pass-1"
GENERATIONS = 12


async def _make_database(path: Path) -> None:
    store = await Store.open(path)
    try:
        await store.tasks.create(
            guild_id=GUILD_A, channel_id=CH_A, user_id=MEMBER_A, kind="t2i",
            model="m", prompt="p", count=1, scale=7, size="512x512",
        )  # fmt: skip
    finally:
        await store.close()


def _backup_in_process(monkeypatch: pytest.MonkeyPatch, db: Path, *args: str) -> int:
    """Run `main` as the console script would, with storage.path pointing at `db`."""
    for name in list(os.environ):
        if name.startswith("MIAOHUA_BOT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MIAOHUA_BOT_STORAGE__PATH", str(db))
    monkeypatch.setenv("MIAOHUA_BOT_SECURITY__KEY_FILE", str(db.parent / "secret.key"))
    return main(["storage", "backup", *args])


def _siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


async def test_backup_refuses_an_existing_target_unless_forced(tmp_path, monkeypatch, capsys):
    db = tmp_path / "bot.sqlite3"
    await _make_database(db)
    target = tmp_path / "copy.sqlite3"
    target.write_bytes(b"an older backup")

    code = _backup_in_process(monkeypatch, db, str(target))
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [
        f"miaohua-bot: backup failed: {target} already exists (use --force to replace it)"
    ]
    assert target.read_bytes() == b"an older backup"
    assert not [n for n in _siblings(target) if n.endswith(".tmp")], "a temp file was left"

    code = _backup_in_process(monkeypatch, db, "--force", str(target))
    out = capsys.readouterr().out
    assert code == 0
    assert "integrity ok" in out and "tasks: 1 rows" in out
    # The key is not in the copy: the output says which file to keep with it.
    assert str(tmp_path / "secret.key") in out
    assert target.stat().st_mode & 0o077 == 0, "the copy holds credentials: owner only"
    with sqlite3.connect(target) as copy:
        assert copy.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert _siblings(target) == ["bot.sqlite3", "copy.sqlite3"], "files left behind"
    store = await Store.open(target)
    try:
        assert [t.prompt for t in await store.tasks.list_by_state("queued")] == ["p"]
    finally:
        await store.close()


async def test_backup_never_overwrites_the_database_itself(tmp_path, monkeypatch, capsys):
    db = tmp_path / "bot.sqlite3"
    await _make_database(db)
    before = db.read_bytes()
    (tmp_path / "link.sqlite3").symlink_to(db)
    for target in (db, tmp_path / "bot.sqlite3-wal", tmp_path / "link.sqlite3"):
        code = _backup_in_process(monkeypatch, db, "--force", str(target))
        err = capsys.readouterr().err
        assert code == 1
        assert err.strip() == (
            f"miaohua-bot: backup failed: {target} is the database itself; "
            "back it up to another file"
        )
    assert db.read_bytes() == before
    assert _siblings(db) == ["bot.sqlite3", "link.sqlite3"]


async def test_backup_of_a_missing_database_says_so_and_creates_nothing(
    tmp_path, monkeypatch, capsys
):
    missing = tmp_path / "nowhere" / "bot.sqlite3"
    target = tmp_path / "copy.sqlite3"
    code = _backup_in_process(monkeypatch, missing, str(target))
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip().splitlines() == [
        f"miaohua-bot: backup failed: no database at {missing} (check storage.path)"
    ]
    assert not missing.parent.exists() and not target.exists()


async def test_backup_of_a_file_that_is_not_the_database_says_so(tmp_path, monkeypatch, capsys):
    db = tmp_path / "notes.txt"
    db.write_text("not a database at all, " * 100)
    target = tmp_path / "copy.sqlite3"
    code = _backup_in_process(monkeypatch, db, str(target))
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith(f"miaohua-bot: backup failed: {db} is not a readable SQLite database")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not target.exists() and _siblings(target) == ["notes.txt"]


async def _backup_process(env: dict[str, str], cwd: Path, target: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "storage", "backup", str(target),
        env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.slow  # a real bot process
async def test_backup_of_a_running_bot_is_consistent_and_does_not_stop_it(tmp_path):
    emu = EmulatorServer(
        EmulatorSettings(accounts={EMAIL: PASSWORD}, generation_time=0.3, workers=1)
    )
    fake = one_guild_discord(TOKEN)
    data = tmp_path / "data"
    db = data / "bot.sqlite3"
    async with emu, fake:
        env = process_env(fake, emu, data, TOKEN, SECRET, LIMITS__USER_RUNNING="50")
        bot = BotProcess(env, tmp_path)
        await bot.start()
        try:
            await until(lambda: "imagine" in fake.world.command_names(), 30, "commands")
            await set_account_by_form(fake, EMAIL, PASSWORD)
            for i in range(GENERATIONS):
                ix = await fake.slash(
                    "imagine", options={"prompt": f"backup scene {i}", "count": 1},
                    user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A,
                )  # fmt: skip
                assert is_accepted(await answer_text(ix, 20))

            # Back up again and again while the bot submits, polls and delivers (each
            # delivery is a write), until one copy caught it mid-way.
            copies: list[tuple[Path, set[int], list[tuple[int, str]]]] = []
            for n in range(50):
                accepted = {row[0] for row in db_rows(db, "SELECT id FROM tasks")}
                target = tmp_path / f"backup-{n}.sqlite3"
                code, out = await _backup_process(env, tmp_path, target)
                assert code == 0, out
                assert "integrity ok" in out and f"tasks: {GENERATIONS} rows" in out
                assert "security.secret_key" in out  # the passphrase is needed to restore
                with sqlite3.connect(target) as copy:
                    rows = copy.execute("SELECT id, state FROM tasks ORDER BY id").fetchall()
                copies.append((target, accepted, rows))
                if any(state != "delivered" for _, state in rows) and any(
                    state == "delivered" for _, state in rows
                ):
                    break
            else:
                raise AssertionError("no backup was taken while tasks were being delivered")

            # The bot was not held up: it delivers everything after the backups.
            def all_delivered() -> bool:
                states = db_rows(db, "SELECT state FROM tasks")
                return len(states) == GENERATIONS and all(s == "delivered" for (s,) in states)

            await until(all_delivered, 60, "every task delivered")
            code, log = await bot.stop(signal.SIGTERM)
            assert code == 0, log
        finally:
            if bot.proc is not None and bot.proc.returncode is None:
                bot.proc.kill()
                await bot.proc.wait()

    target, accepted, rows = copies[-1]
    assert accepted <= {task_id for task_id, _ in rows}, "a task accepted before is missing"
    # The copy is a database the bot can open, with the same tasks and a readable account.
    store = await Store.open(target)
    try:
        for task_id, state in rows:
            task = await store.tasks.get(task_id)
            assert task is not None and task.state == state
            assert task.prompt == f"backup scene {task_id - 1}"
        account = await store.accounts.get(GUILD_A)
        assert account is not None
        assert SecretBox.from_passphrase(SECRET).decrypt(account.email_encrypted) == EMAIL
    finally:
        await store.close()
    fake.verify_contract()
