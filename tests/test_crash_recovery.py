"""Black-box crash recovery: `miaohua-bot run` killed mid-flight and started again."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import pytest

from bot.emulator import EmulatorServer, EmulatorSettings
from fakediscord import FakeDiscord
from fakediscord.ratelimits import RateLimits
from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A, MEMBER_A2
from tests.genutil import is_accepted, is_result_of
from tests.helpers import answer_text, png_bytes

pytestmark = pytest.mark.slow  # real bot processes killed and restarted

TOKEN = "crash-test-token.AbC.987654"
EMAIL, PASSWORD = "crash@guild.test", "crash-Pass-1"
GENERATIONS = 20


class BotProcess:
    """`python -m bot run` with settings in its environment; its stderr is read as it comes
    (a full pipe would stall the bot) and kept for assertions and failure messages."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env, self.cwd = env, cwd
        self.proc: asyncio.subprocess.Process | None = None
        self._lines: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._lines = []
        self.proc = await self.spawn()
        self._reader = asyncio.create_task(self._read(self.proc))

    async def spawn(self) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "run",
            env=self.env, cwd=self.cwd,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            self._lines.append(line.decode(errors="replace"))

    @property
    def output(self) -> str:
        """What the process wrote to stderr so far."""
        return "".join(self._lines)

    async def wait(self, timeout: float = 30) -> tuple[int, str]:
        """Wait for the process to end; its exit code and everything it wrote."""
        assert self.proc is not None and self._reader is not None
        await asyncio.wait_for(asyncio.gather(self._reader, self.proc.wait()), timeout)
        assert self.proc.returncode is not None
        return self.proc.returncode, self.output

    async def stop(self, sig: int) -> tuple[int, str]:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await self.wait(30)


def db_rows(database: Path | str, sql: str) -> list[tuple]:
    """The rows `sql` reads from a bot's database (a SQLite file or a PostgreSQL URL),
    read as another process would, without the bot's connection."""
    if str(database).startswith("postgresql://"):
        # Its own event loop in a thread: callable from a coroutine and from a thread alike.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, _postgresql_rows(str(database), sql)).result()
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(sql).fetchall()


async def _postgresql_rows(url: str, sql: str) -> list[tuple]:
    conn = await asyncpg.connect(url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


async def until(check, timeout: float, what: str, *, show: Iterable[BotProcess] = ()):
    """Wait for `check()` to hold; on timeout, fail with the tail of `show`'s output."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await asyncio.to_thread(check)
        if value:
            return value
        if loop.time() >= deadline:
            tails = "".join(f"\n--- bot output ---\n{bot.output[-4000:]}" for bot in show)
            raise AssertionError(f"timed out waiting for {what}{tails}")
        await asyncio.sleep(0.1)


def one_guild_discord(token: str) -> FakeDiscord:
    """A fake Discord with guild A: its channel, an admin and two members."""
    # Discord's limits with windows a tenth as long: the deliveries must come well before the
    # training ends, however many results share the channel's 5 messages per 5 s.
    fake = FakeDiscord(
        application_id=900, bot_user_id=900, bot_token=token, rate_limits=RateLimits(scale=0.1)
    )
    fake.add_guild(GUILD_A, "Guild A", owner_id=ADMIN_A)
    fake.add_channel(GUILD_A, CH_A, "art")
    fake.add_member(GUILD_A, ADMIN_A, "admin", manage_guild=True, manage_messages=True)
    fake.add_member(GUILD_A, MEMBER_A, "member")
    fake.add_member(GUILD_A, MEMBER_A2, "member2")
    return fake


def process_env(
    fake: FakeDiscord,
    emu: EmulatorServer,
    data: Path,
    token: str,
    secret_key: str,
    **settings: str,
) -> dict[str, str]:
    """The environment of a real bot process on these fakes: one task at a time, fast fixed
    polling, its data in `data`; `settings` add MIAOHUA_BOT_<NAME> variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOHUA_BOT_")}
    base = {
        "DISCORD__TOKEN": token,
        "DISCORD__API_BASE_URL": fake.api_base_url,
        "DISCORD__GATEWAY_URL": fake.gateway_url,
        "MIAOHUA__BASE_URL": emu.base_url,
        "MIAOHUA__POLL_STRATEGY": "fixed",
        "MIAOHUA__POLL_INTERVAL": "0.1",
        # One task at a time: a slot that is never freed stalls everything after it.
        "MIAOHUA__ACCOUNT_CONCURRENCY": "1",
        "STORAGE__PATH": str(data / "bot.sqlite3"),
        "STORAGE__STAGING_DIR": str(data / "staging"),
        "SECURITY__SECRET_KEY": secret_key,
    }
    env.update({f"MIAOHUA_BOT_{name}": value for name, value in (base | settings).items()})
    return env


@pytest.fixture
async def world(tmp_path, backend, new_database):
    database = await new_database()
    where = {"STORAGE__URL": str(database)} if backend == "postgresql" else {}
    database = database if backend == "postgresql" else tmp_path / "bot.sqlite3"
    emu = EmulatorServer(
        EmulatorSettings(
            accounts={EMAIL: PASSWORD}, generation_time=0.4, workers=1, training_time=4.0
        )
    )
    fake = one_guild_discord(TOKEN)
    async with emu, fake:
        env = process_env(
            fake,
            emu,
            tmp_path,
            TOKEN,
            "crash-test-key",
            MIAOHUA__TRAINING_POLL_INTERVAL="0.2",
            MIAOHUA__TRAINING_PROGRESS_EDIT_INTERVAL="0.5",
            LIMITS__USER_RUNNING="50",
            LIMITS__DAILY_QUOTA="500",
            **where,
        )
        yield emu, fake, BotProcess(env, tmp_path), database
    fake.verify_contract()  # a request Discord would reject fails the test that made it


async def _boot(fake: FakeDiscord, bot: BotProcess) -> None:
    await bot.start()
    for _ in range(600):
        if "imagine" in fake.world.command_names():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the bot did not register its commands")


async def set_account_by_form(fake: FakeDiscord, email: str, password: str) -> None:
    """Set guild A's Miaohua account through `/account set` and its form, as its admin does."""
    ix = await fake.slash(
        "account", subcommand="set", user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A
    )
    await ix.response(20)
    done = await fake.submit_modal(
        "account:set", {"email": email, "password": password},
        user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A,
    )  # fmt: skip
    assert "saved" in await answer_text(done, 20)


async def _set_account_and_work(emu, fake: FakeDiscord) -> None:
    await set_account_by_form(fake, EMAIL, PASSWORD)
    images = {
        f"image{i + 1}": fake.add_attachment(png_bytes(40, 40, c), f"{c}.png", "image/png")
        for i, c in enumerate(("red", "green", "blue"))
    }
    ix = await fake.slash(
        "train", options={"name": "Crash Style"}, attachments=images,
        user_id=ADMIN_A, guild_id=GUILD_A, channel_id=CH_A,
    )  # fmt: skip
    assert "#1" in await answer_text(ix, 20)
    for i in range(GENERATIONS):
        user = (MEMBER_A, MEMBER_A2)[i % 2]
        ix = await fake.slash(
            "imagine", options={"prompt": f"crash scene {i}", "count": 1},
            user_id=user, guild_id=GUILD_A, channel_id=CH_A,
        )  # fmt: skip
        assert is_accepted(await answer_text(ix, 20))


async def _recover_and_check(emu, fake, bot, db: Path | str, queued_at_stop: list[tuple]) -> None:
    await _boot(fake, bot)

    def finished():
        rows = db_rows(db, "SELECT state FROM tasks")
        done = len(rows) == GENERATIONS and all(r[0] == "delivered" for r in rows)
        trained = db_rows(db, "SELECT state FROM trainings")
        return done and trained and trained[0][0] == "done"

    await until(finished, 90, "every task delivered and the training done")
    code, log = await bot.stop(signal.SIGTERM)
    assert code == 0, log
    results = [m for m in fake.channel_messages(CH_A) if m.get("components")]
    for (task_id,) in db_rows(db, "SELECT id FROM tasks"):
        mine = [m for m in results if is_result_of(m, task_id)]
        assert len(mine) == 1, f"task {task_id} posted {len(mine)} times"
    # Tasks still queued when the bot stopped were submitted in their users' order.
    submitted = emu.state.stats()["tasks"]
    order = {sid: info["submitted"] for sid, info in submitted.items()}
    rows = dict(db_rows(db, "SELECT id, service_task_id FROM tasks"))
    for user in (MEMBER_A, MEMBER_A2):
        ids = [task_id for task_id, uid in queued_at_stop if uid == user]
        times = [order[rows[i]] for i in ids]
        assert times == sorted(times), f"queued tasks of {user} were reordered"
    assert emu.state.calls["train_submit"] == 1
    assert emu.state.calls["dataset"] == 1
    progress = [m for m in fake.channel_messages(CH_A) if "Crash Style" in (m["content"] or "")]
    assert progress and "100%" in progress[0]["content"]


@pytest.mark.backends()
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
async def test_killed_mid_flight_loses_and_duplicates_nothing(world, sig):
    emu, fake, bot, db = world
    await _boot(fake, bot)
    await _set_account_and_work(emu, fake)

    def some_delivered():
        rows = db_rows(db, "SELECT state FROM tasks")
        return sum(r[0] == "delivered" for r in rows) >= 3

    await until(some_delivered, 60, "a few deliveries")
    code, log = await bot.stop(sig)
    if sig == signal.SIGTERM:
        assert code == 0, log
        assert "Traceback" not in log, log
        if isinstance(db, Path):
            assert db_rows(db, "PRAGMA integrity_check") == [("ok",)]
    else:
        assert code == -signal.SIGKILL
    states = dict(db_rows(db, "SELECT state, count(*) FROM tasks GROUP BY state"))
    assert states.get("queued", 0) > 0, f"nothing was left queued to check the order: {states}"
    training_state = db_rows(db, "SELECT state FROM trainings")[0][0]
    assert training_state != "done", "the training finished before the stop"
    queued = db_rows(db, "SELECT id, user_id FROM tasks WHERE state = 'queued' ORDER BY id")
    await _recover_and_check(emu, fake, bot, db, queued)
