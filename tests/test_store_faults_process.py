"""Black box: `miaohua-bot run` while another process holds its database's write lock.

The fault is real and comes from outside the bot: a second SQLite connection (a maintenance
script, a backup tool that locks the file) holds the write lock past the bot's busy_timeout,
so every write of the bot fails with SQLITE_BUSY while its reads go on (WAL). This is the
one way to make writes really fail for a process running as root, which ignores file
permissions: a `chmod` of the database file changes nothing for it (nor, for anyone, for a
file already open). Releasing the lock is the database recovering.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.emulator import EmulatorServer, EmulatorSettings
from fakediscord import FakeDiscord
from tests.conftest import CH_A, GUILD_A, MEMBER_A, MEMBER_A2
from tests.genutil import is_accepted, is_result_of, task_id_of
from tests.helpers import answer_text
from tests.test_crash_recovery import (
    BotProcess,
    db_rows,
    one_guild_discord,
    process_env,
    set_account_by_form,
    until,
)

pytestmark = pytest.mark.slow  # real bot processes

TOKEN = "store-fault-token.AbC.987654"
EMAIL, PASSWORD = "locked@guild.test", "locked-Pass-1"
CANNOT_SAVE = "cannot save new tasks or changes right now"


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[EmulatorServer, FakeDiscord, BotProcess]]:
    emu = EmulatorServer(EmulatorSettings(accounts={EMAIL: PASSWORD}, generation_time=1.5))
    fake = one_guild_discord(TOKEN)
    async with emu, fake:
        env = process_env(
            fake,
            emu,
            tmp_path,
            TOKEN,
            "store-fault-key",
            LIMITS__USER_RUNNING="10",
            LOGGING__LEVEL="WARNING",
        )
        yield emu, fake, BotProcess(env, tmp_path)


class WriteLock:
    """Another process's connection holding the database's write lock."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)

    async def take(self) -> None:
        await asyncio.to_thread(self._conn.execute, "BEGIN IMMEDIATE")

    async def release(self) -> None:
        await asyncio.to_thread(self._conn.execute, "ROLLBACK")
        self._conn.close()


async def slash(fake: FakeDiscord, name: str, user: int, **kwargs: Any) -> str:
    ix = await fake.slash(name, user_id=user, guild_id=GUILD_A, channel_id=CH_A, **kwargs)
    return await answer_text(ix, 40)


async def boot_with_account(fake: FakeDiscord, bot: BotProcess) -> None:
    await bot.start()
    for _ in range(600):
        if "imagine" in fake.world.command_names():
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("the bot did not register its commands")
    await set_account_by_form(fake, EMAIL, PASSWORD)


async def test_database_locked_past_busy_timeout_while_a_task_finishes(world, tmp_path):
    emu, fake, bot = world
    db = tmp_path / "bot.sqlite3"
    await boot_with_account(fake, bot)
    for user, prompt in ((MEMBER_A, "before the lock"), (MEMBER_A2, "queued behind it")):
        text = await slash(fake, "imagine", user, options={"prompt": prompt})
        assert is_accepted(text), text

    def first_submitted() -> str | None:
        rows = db_rows(db, "SELECT service_task_id FROM tasks WHERE id = 1 AND state = 'submitted'")
        return rows[0][0] if rows else None

    service_id = await until(first_submitted, 30, "task 1 submitted")
    lock = WriteLock(db)
    await lock.take()
    try:
        # The service finishes task 1 while the bot cannot store that.
        await until(lambda: emu.state.stats()["tasks"][service_id]["done"], 30, "task 1 done")
        text = await slash(fake, "imagine", MEMBER_A, options={"prompt": "during the lock"})
        assert CANNOT_SAVE in text and "error id" not in text, text
        assert db_rows(db, "SELECT state FROM tasks WHERE id = 1") == [("submitted",)]
    finally:
        await lock.release()

    def all_delivered() -> bool:
        rows = db_rows(db, "SELECT state FROM tasks")
        return len(rows) == 2 and all(state == "delivered" for (state,) in rows)

    await until(all_delivered, 60, "both tasks delivered without a restart")
    text = await slash(fake, "imagine", MEMBER_A, options={"prompt": "after the lock"})
    assert is_accepted(text) and task_id_of(text) == 3, text
    await until(
        lambda: db_rows(db, "SELECT state FROM tasks WHERE id = 3") == [("delivered",)],
        60,
        "a new task delivered after the lock",
    )
    code, log = await bot.stop(signal.SIGTERM)
    assert code == 0, log
    assert "Traceback" not in log, log
    results = [m for m in fake.channel_messages(CH_A) if m.get("components")]
    for task_id in (1, 2, 3):
        assert len([m for m in results if is_result_of(m, task_id)]) == 1


class BotOnSmallDisk(BotProcess):
    """The bot in its own mount namespace, its data directory a tmpfs of `size` bytes."""

    def __init__(self, env: dict[str, str], cwd: Path, data: Path, size: int) -> None:
        super().__init__(env, cwd)
        self.data, self.size = data, size

    async def spawn(self) -> asyncio.subprocess.Process:
        script = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
        return await asyncio.create_subprocess_exec(
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(self.size), str(self.data), sys.executable, "-m", "bot", "run",
            env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    def inside(self, path: Path) -> Path:
        """`path` as the bot sees it, on its tmpfs."""
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/root") / path.relative_to("/")


def can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


def data_dir(plain: BotProcess, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A fresh `data` folder and the bot's environment with its database and staging there."""
    data = tmp_path / "data"
    data.mkdir()
    env = {
        **plain.env,
        "MIAOHUA_BOT_STORAGE__PATH": str(data / "bot.sqlite3"),
        "MIAOHUA_BOT_STORAGE__STAGING_DIR": str(data / "staging"),
    }
    return data, env


def fill(path: Path) -> int:
    """Write to `path` until the disk is full; return the bytes written."""
    written = 0
    with path.open("wb", buffering=0) as out:
        try:
            while True:
                written += out.write(b"\0" * 65536)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return written


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs a private mount namespace for a tmpfs")
async def test_full_disk_while_a_task_finishes(world, tmp_path):
    # SQLite resolves /proc/<pid>/root, so the database is watched through Discord and the
    # emulator here, not read directly.
    emu, fake, plain = world
    data, env = data_dir(plain, tmp_path)
    bot = BotOnSmallDisk(env, tmp_path, data, 4 * 1024 * 1024)
    await boot_with_account(fake, bot)
    text = await slash(fake, "imagine", MEMBER_A, options={"prompt": "before the disk fills"})
    assert is_accepted(text) and task_id_of(text) == 1, text
    (service_id,) = await until(lambda: list(emu.state.stats()["tasks"]), 30, "a submission")

    filler = bot.inside(data / "filler")
    assert await asyncio.to_thread(fill, filler) > 0
    try:
        await until(lambda: emu.state.stats()["tasks"][service_id]["done"], 30, "task 1 done")
        text = await slash(fake, "imagine", MEMBER_A2, options={"prompt": "on a full disk"})
        assert CANNOT_SAVE in text and "error id" not in text, text
        assert not any(is_result_of(m, 1) for m in fake.channel_messages(CH_A))
    finally:
        filler.unlink()

    await fake.wait_for_message(CH_A, lambda m: is_result_of(m, 1), 60)
    text = await slash(fake, "imagine", MEMBER_A2, options={"prompt": "room again"})
    assert is_accepted(text) and task_id_of(text) == 2, text
    await fake.wait_for_message(CH_A, lambda m: is_result_of(m, 2), 60)
    code, log = await bot.stop(signal.SIGTERM)
    assert code == 0, log
    assert "Traceback" not in log, log
    results = [m for m in fake.channel_messages(CH_A) if m.get("components")]
    for task_id in (1, 2):
        assert len([m for m in results if is_result_of(m, task_id)]) == 1


class DataMount:
    """A tmpfs in a mount namespace of its own, outliving the bot processes started in it."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.holder: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> DataMount:
        script = 'mount -t tmpfs -o size=16m tmpfs "$1" && echo mounted && exec sleep infinity'
        self.holder = await asyncio.create_subprocess_exec(
            "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
            str(self.data), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self.holder.stdout is not None
        assert await asyncio.wait_for(self.holder.stdout.readline(), 10) == b"mounted\n"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.holder is not None
        self.holder.kill()
        await self.holder.wait()

    @property
    def namespace(self) -> str:
        assert self.holder is not None
        return f"/proc/{self.holder.pid}/ns/mnt"

    async def remount(self, mode: str) -> tuple[int, str]:
        """`mount -o remount,<mode>` of the tmpfs inside its namespace: (exit code, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            "nsenter", f"--mount={self.namespace}", "mount", "-o", f"remount,{mode}",
            str(self.data), stderr=asyncio.subprocess.PIPE, env={**os.environ, "LC_ALL": "C"},
        )  # fmt: skip
        _, err = await proc.communicate()
        assert proc.returncode is not None
        return proc.returncode, err.decode()


class BotInMount(BotProcess):
    """The bot run inside a DataMount's namespace."""

    def __init__(self, env: dict[str, str], cwd: Path, mount: DataMount) -> None:
        super().__init__(env, cwd)
        self.mount = mount

    async def spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            "nsenter", f"--mount={self.mount.namespace}", sys.executable, "-m", "bot", "run",
            env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def logged(self, text: str, timeout: float) -> None:
        """Wait until the bot logs `text`; fail at once if it exits first."""

        def seen() -> bool:
            assert self.proc is not None
            if text in self.output:
                return True
            assert self.proc.returncode is None, f"the bot exited: {self.output}"
            return False

        await until(seen, timeout, repr(text))


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs a private mount namespace for a tmpfs")
async def test_read_only_database_while_a_task_finishes(world, tmp_path):
    # Linux refuses to make a filesystem read-only while a process has a file on it open for
    # writing (the bot always has its database open), so a read-only database is one the bot
    # meets when it starts: here, restarted with a task still running at the service.
    emu, fake, plain = world
    # Task 1 must still be running when the bot stops, however busy the machine is.
    emu.state.settings.generation_time = 10.0
    data, env = data_dir(plain, tmp_path)
    async with DataMount(data) as mount:
        bot = BotInMount(env, tmp_path, mount)
        await boot_with_account(fake, bot)
        text = await slash(fake, "imagine", MEMBER_A, options={"prompt": "before read-only"})
        assert is_accepted(text) and task_id_of(text) == 1, text
        (service_id,) = await until(lambda: list(emu.state.stats()["tasks"]), 30, "a submission")
        code, err = await mount.remount("ro")
        assert code != 0 and "busy" in err, "read-only under a running bot: test another way"
        code, log = await bot.stop(signal.SIGTERM)
        assert code == 0, log
        assert not emu.state.stats()["tasks"][service_id]["done"], "task 1 ended too soon"

        code, err = await mount.remount("ro")
        assert code == 0, err
        await bot.start()
        await bot.logged("cannot write the database", 60)
        # The service finishes task 1 while the bot cannot store that.
        await until(lambda: emu.state.stats()["tasks"][service_id]["done"], 30, "task 1 done")
        assert bot.proc is not None and bot.proc.returncode is None
        assert not any(is_result_of(m, 1) for m in fake.channel_messages(CH_A))

        code, err = await mount.remount("rw")
        assert code == 0, err
        # No restart: the waiting bot opens the database, connects and finishes task 1.
        await fake.wait_for_message(CH_A, lambda m: is_result_of(m, 1), 60)
        text = await slash(fake, "imagine", MEMBER_A2, options={"prompt": "writable again"})
        assert is_accepted(text) and task_id_of(text) == 2, text
        await fake.wait_for_message(CH_A, lambda m: is_result_of(m, 2), 60)
        code, log = await bot.stop(signal.SIGTERM)
    assert code == 0, log
    assert "Traceback" not in log, log
    results = [m for m in fake.channel_messages(CH_A) if m.get("components")]
    for task_id in (1, 2):
        assert len([m for m in results if is_result_of(m, task_id)]) == 1


# Inside a private mount namespace: a WAL database as a killed bot leaves it (with its -wal
# and -shm files) on a tmpfs then remounted read-only, opened by the Store. SQLite opens it
# read-only without a word and even grants BEGIN IMMEDIATE; only a write shows the truth.
LEFT_BY_A_CRASH = """
import asyncio, shutil, sqlite3, subprocess, sys
from bot.store import Store, StoreUnavailable

data = sys.argv[1]
async def main() -> None:
    store = await Store.open(f"{data}/live.sqlite3")
    for suffix in ("", "-wal", "-shm"):  # a copy as the killed process left it
        shutil.copy(f"{data}/live.sqlite3{suffix}", f"{data}/bot.sqlite3{suffix}")
    await store.close()
    subprocess.run(["mount", "-o", "remount,ro", data], check=True)
    try:
        opened = await Store.open(f"{data}/bot.sqlite3")
    except StoreUnavailable as exc:
        print("unavailable", exc.cause)
    else:
        print("opened")
        await opened.close()
asyncio.run(main())
"""


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs a private mount namespace for a tmpfs")
def test_a_read_only_database_left_by_a_crash_is_not_opened_as_if_writable(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    script = 'mount -t tmpfs -o size=4m tmpfs "$1" && exec "$2" -c "$3" "$1"'
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
         str(data), sys.executable, LEFT_BY_A_CRASH],
        capture_output=True, text=True, check=False, cwd=Path(__file__).parent.parent,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("unavailable SQLITE_READONLY"), done.stdout


@pytest.mark.skipif(not can_mount_tmpfs(), reason="needs a private mount namespace for a tmpfs")
async def test_stopped_while_waiting_for_a_read_only_database(world, tmp_path):
    _, _, plain = world
    data, env = data_dir(plain, tmp_path)
    async with DataMount(data) as mount:
        assert (await mount.remount("ro"))[0] == 0
        bot = BotInMount(env, tmp_path, mount)
        await bot.start()
        await bot.logged("cannot write the database", 60)
        code, log = await bot.stop(signal.SIGTERM)
    assert code == 0, log
    assert "Traceback" not in log, log
    assert len(log.strip().splitlines()) == 1, log
