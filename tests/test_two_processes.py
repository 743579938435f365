"""Two `miaohua-bot run` processes, one shard each, sharing one PostgreSQL database.

Real processes against the test fake Discord (sharded gateway: each process gets only its
shard's servers and their interactions) and one embedded PostgreSQL. Each server's work is
served by the process of its shard alone: killed with SIGKILL, a process leaves its
server's tasks waiting (the other process never touches them, nor that server's Miaohua
account) until it is started again, and then each is delivered exactly once.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from bot.emulator import EmulatorServer, EmulatorSettings
from bot.store.shards import shard_of
from fakediscord import FakeDiscord
from fakediscord.ratelimits import RateLimits
from tests.conftest import DatabaseFactory
from tests.genutil import is_accepted, is_result_of
from tests.helpers import answer_text
from tests.test_crash_recovery import BotProcess, db_rows, process_env, until

pytestmark = [pytest.mark.slow, pytest.mark.backends("postgresql")]

TOKEN = "shards-test-token.AbC.987654"
# A server on each of the two shards (Discord: (guild_id >> 22) % shard_count).
GUILDS = {0: (2 << 22) + 5, 1: (3 << 22) + 5}
CHANNELS = {0: 7001, 1: 7002}
ADMINS = {0: 7101, 1: 7102}
MEMBERS = {0: 7201, 1: 7202}
ACCOUNTS = {0: ("shard0@guild.test", "shard0-Pass-1"), 1: ("shard1@guild.test", "shard1-Pass-1")}
TASKS_PER_GUILD = 8
RESUMED = re.compile(r"generation service started: (\d+) queued, (\d+) submitted, (\d+) to deliver")


def sharded_discord() -> FakeDiscord:
    fake = FakeDiscord(
        application_id=901, bot_user_id=901, bot_token=TOKEN, rate_limits=RateLimits(scale=0.1)
    )
    fake.shard_count = 2
    for shard, guild_id in GUILDS.items():
        assert shard_of(guild_id, 2) == shard
        fake.add_guild(guild_id, f"Guild on shard {shard}", owner_id=ADMINS[shard])
        fake.add_channel(guild_id, CHANNELS[shard], "art")
        fake.add_member(guild_id, ADMINS[shard], "admin", manage_guild=True)
        fake.add_member(guild_id, MEMBERS[shard], "member")
    return fake


async def set_account(fake: FakeDiscord, shard: int) -> None:
    where = {"guild_id": GUILDS[shard], "channel_id": CHANNELS[shard]}
    ix = await fake.slash("account", subcommand="set", user_id=ADMINS[shard], **where)
    await ix.response(20)
    email, password = ACCOUNTS[shard]
    done = await fake.submit_modal(
        "account:set", {"email": email, "password": password}, user_id=ADMINS[shard], **where
    )
    assert "saved" in await answer_text(done, 20)


async def imagine(fake: FakeDiscord, shard: int, n: int) -> None:
    ix = await fake.slash(
        "imagine", options={"prompt": f"shard {shard} scene {n}", "count": 1},
        user_id=MEMBERS[shard], guild_id=GUILDS[shard], channel_id=CHANNELS[shard],
    )  # fmt: skip
    assert is_accepted(await answer_text(ix, 20))


async def test_two_sharded_processes_serve_their_own_servers_and_recover_alone(
    tmp_path, new_database: DatabaseFactory
):
    url = str(await new_database())
    emu = EmulatorServer(
        EmulatorSettings(accounts=dict(ACCOUNTS.values()), generation_time=0.8, workers=1)
    )
    fake = sharded_discord()
    async with emu, fake:

        def process(shard: int) -> BotProcess:
            env = process_env(
                fake, emu, tmp_path / f"p{shard}", TOKEN, "shared-secret-key",
                STORAGE__URL=url,
                DISCORD__SHARD_COUNT="2",
                DISCORD__SHARD_IDS=f"[{shard}]",
                LIMITS__USER_RUNNING="20",
                LIMITS__DAILY_QUOTA="500",
            )  # fmt: skip
            (tmp_path / f"p{shard}").mkdir(exist_ok=True)
            return BotProcess(env, tmp_path / f"p{shard}")

        bots = {shard: process(shard) for shard in GUILDS}
        for bot in bots.values():
            await bot.start()
        running = bots.values()
        await until(lambda: fake.gateway.identifies >= 2, 60, "both shards", show=running)
        await until(lambda: "imagine" in fake.world.command_names(), 60, "commands", show=running)

        # A third process for a shard already served refuses in one line.
        third = process(0)
        await third.start()
        assert third.proc is not None
        code, err = await third.wait(60)
        assert code == 1
        refusal = [line for line in err.splitlines() if line.startswith("miaohua-bot:")]
        assert (
            len(refusal) == 1
            and "shard 0 of 2 is already served by another process" in (refusal[0])
        ), err
        assert "postgresql://postgres:" not in refusal[0] or "***" in refusal[0]

        for shard in GUILDS:
            await set_account(fake, shard)
        for n in range(TASKS_PER_GUILD):
            for shard in GUILDS:
                await imagine(fake, shard, n)

        def delivered(shard: int) -> int:
            rows = db_rows(
                url,
                f"SELECT count(*) FROM tasks WHERE guild_id = {GUILDS[shard]}"
                " AND state = 'delivered'",
            )
            return int(rows[0][0])

        await until(lambda: delivered(1) >= 1, 60, "a first delivery on shard 1", show=running)
        code, _ = await bots[1].stop(signal.SIGKILL)
        assert code == -signal.SIGKILL

        # Shard 1's process is gone: shard 0's work goes on, shard 1's waits untouched.
        killed_at = time.monotonic()  # the emulator stamps calls with the same clock
        delivered_1 = delivered(1)
        await until(
            lambda: delivered(0) >= delivered_1 + 2, 90, "shard 0 delivering on", show=running
        )
        assert delivered(1) == delivered_1 < TASKS_PER_GUILD
        # Started again while shard 0 still has work in flight: each process keeps to its own.
        assert delivered(0) < TASKS_PER_GUILD, "shard 0 finished too soon to tell"
        restarted_at = time.monotonic()
        await bots[1].start()
        await until(
            lambda: delivered(1) == TASKS_PER_GUILD, 90, "shard 1's tasks delivered", show=running
        )
        await until(
            lambda: delivered(0) == TASKS_PER_GUILD, 90, "shard 0's tasks delivered", show=running
        )
        # Not one call on shard 1's server's account while its process was dead.
        calls = emu.state.account_calls[ACCOUNTS[1][0]]
        assert not [t for t in calls if killed_at <= t < restarted_at]
        logs = {}
        for shard, bot in bots.items():
            code, logs[shard] = await bot.stop(signal.SIGTERM)
            assert code == 0, logs[shard]
        # Restarted, shard 1's process resumed its own unfinished tasks and none of shard 0's.
        resumed = RESUMED.search(logs[1])
        assert resumed is not None, logs[1]
        assert sum(map(int, resumed.groups())) == TASKS_PER_GUILD - delivered_1
        for shard, guild_id in GUILDS.items():
            rows = db_rows(url, f"SELECT id FROM tasks WHERE guild_id = {guild_id}")
            ids = [row[0] for row in rows]
            assert len(ids) == TASKS_PER_GUILD
            results = [m for m in fake.channel_messages(CHANNELS[shard]) if m.get("components")]
            for task_id in ids:
                posted = [m for m in results if is_result_of(m, task_id)]
                assert len(posted) == 1, f"task {task_id} posted {len(posted)} times"
    fake.verify_contract()
