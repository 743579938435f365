"""The end-to-end harness: emulator + fake Discord + the bot as `miaohua-bot run` builds it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import discord
import pytest
from hypothesis import settings as hypothesis_settings

from bot.app import create_bot
from bot.config import Settings, load_settings
from bot.emulator import EmulatorServer, EmulatorSettings
from fakediscord import FakeDiscord
from fakediscord.contract import format_violations
from fakediscord.ratelimits import RateLimits
from tests.databases import BACKENDS, PostgresServer
from tests.logcheck import LogCheck

# CI runs the same property-test examples every time, so a red run can be replayed.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

GUILD_A, GUILD_B = 1001, 1002
CH_A, NSFW_A, CH_B = 2001, 2002, 2003
ADMIN_A, MEMBER_A, MEMBER_A2, ADMIN_B, MEMBER_B = 3001, 3002, 3003, 3004, 3005
TRAINER_ROLE_A = 4001
DISCORD_TOKEN = "fake-discord-token.AbCdEf.0123456789"
ACCOUNTS = {GUILD_A: ("a@guild.test", "pw-a-Secret1"), GUILD_B: ("b@guild.test", "pw-b-Secret2")}
SECRET_KEY = "test-secret-key-for-encryption"
WATCHED = ("discord", "bot", "cogs")
READY_TIMEOUT = 10.0
# discord.Client._schedule_event runs each event listener in a task named "discord.py: <event>".
EVENT_TASK_PREFIX = "discord.py: "
# Entries of `bot.memory_sizes()` that stay filled while the bot is idle (bounded caches).
IDLE_CACHES = frozenset({"forms"})


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class Harness:
    """Runs the bot against loopback fakes; tests drive it through `fake` and inspect `bot`."""

    def __init__(
        self,
        tmp_path: Path,
        settings: dict[str, Any],
        emulator: dict[str, Any],
        check: LogCheck,
        fake_setup: Callable[[FakeDiscord], None] | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self._fake_setup = fake_setup
        self._settings_overrides = settings
        self._emulator_overrides = emulator
        self.check = check
        # Discord's rate limits in their real shape, windows a fifth as long (5 messages a
        # second per channel): tests that post many results in one channel stay quick.
        self.fake = FakeDiscord(
            application_id=900,
            bot_user_id=900,
            bot_token=DISCORD_TOKEN,
            rate_limits=RateLimits(scale=0.2),
        )
        self.emu: EmulatorServer
        self.settings: Settings
        self.bot: Any = None
        self._task: asyncio.Task[None] | None = None

    def _populate(self) -> None:
        fake = self.fake
        fake.add_guild(GUILD_A, "Guild A", owner_id=ADMIN_A)
        fake.add_channel(GUILD_A, CH_A, "art")
        fake.add_channel(GUILD_A, NSFW_A, "after-dark", nsfw=True)
        fake.add_role(GUILD_A, TRAINER_ROLE_A, "trainers")
        fake.add_member(GUILD_A, ADMIN_A, "admin-a", manage_guild=True, manage_messages=True)
        fake.add_member(GUILD_A, MEMBER_A, "member-a")
        fake.add_member(GUILD_A, MEMBER_A2, "member-a2")
        fake.add_guild(GUILD_B, "Guild B", owner_id=ADMIN_B)
        fake.add_channel(GUILD_B, CH_B, "images")
        fake.add_member(GUILD_B, ADMIN_B, "admin-b", manage_guild=True, manage_messages=True)
        fake.add_member(GUILD_B, MEMBER_B, "member-b")

    async def open(self) -> None:
        """Start the fakes and the bot, and give both guilds their accounts."""
        emu_settings = EmulatorSettings(
            **_merge(
                {
                    "accounts": dict(ACCOUNTS.values()),
                    "generation_time": 0.05,
                    "generation_noise": 0.0,
                    "training_time": 0.5,
                },
                self._emulator_overrides,
            )
        )
        self.emu = EmulatorServer(emu_settings)
        await self.emu.start()
        self._populate()
        if self._fake_setup is not None:
            self._fake_setup(self.fake)
        await self.fake.start()
        base = {
            "discord": {
                "token": DISCORD_TOKEN,
                "api_base_url": self.fake.api_base_url,
                "gateway_url": self.fake.gateway_url,
            },
            "miaohua": {
                "base_url": self.emu.base_url,
                "requests_per_second": 50.0,
                "busy_backoff": 0.2,
                "task_timeout": 30.0,
                "training_poll_interval": 0.1,
                "max_retries": 3,
                "retry_budget": 5.0,
            },
            "storage": {
                "path": str(self.tmp_path / "bot.sqlite3"),
                "staging_dir": str(self.tmp_path / "staging"),
            },
            "security": {"secret_key": SECRET_KEY, "key_file": str(self.tmp_path / "key")},
            "limits": {"rerun_cooldown": 0.5},
        }
        self.settings = load_settings(**_merge(base, self._settings_overrides))
        await self.start()
        for guild_id, (email, password) in ACCOUNTS.items():
            await self.bot.accounts.set_account(guild_id, email, password)

    async def start(self) -> None:
        """Build and start a bot on the current settings and wait until it is ready."""
        self.bot = create_bot(self.settings, guild_ready_timeout=0.05)
        self._before = asyncio.all_tasks()
        self._task = asyncio.create_task(self.bot.start(DISCORD_TOKEN), name="bot.start")
        self.check.watch(self._task)
        ready = asyncio.create_task(self.bot.wait_until_ready())
        done, _ = await asyncio.wait(
            {ready, self._task}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if ready not in done:
            ready.cancel()
            if self._task.done():
                self._task.result()  # raises what killed the bot
            raise AssertionError("the bot did not become ready")

    async def settled(self, timeout: float = 5) -> None:
        """Wait until the bot has read every gateway event sent so far and finished handling it.

        Await this before asserting that an event changed nothing: the bot has then had its
        whole chance to act on the event, however slow the machine is.
        """
        await self.fake.gateway.sync(timeout)
        handlers = {t for t in asyncio.all_tasks() if t.get_name().startswith(EVENT_TASK_PREFIX)}
        if handlers:
            _, pending = await asyncio.wait(handlers, timeout=timeout)
            assert not pending, f"event handlers still running after {timeout} s: {pending}"

    async def idle(self, timeout: float = 10) -> None:
        """Wait until the bot holds no work: no event being handled, no task queued, polled,
        being delivered or waiting for a delivery retry, no status message left to edit.

        From then on nothing happens without new input, so what a test counts afterwards is
        final (rather than what happened to have arrived within some sleep).
        """
        await self.settled(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while busy := {
            name: n for name, n in self.bot.memory_sizes().items() if n and name not in IDLE_CACHES
        }:
            assert loop.time() < deadline, f"the bot is still busy after {timeout} s: {busy}"
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        """Shut the bot down cleanly, as on SIGTERM."""
        if self.bot is None:
            return
        await self.bot.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self._task, 10)
        self.bot = None

    async def restart(self) -> None:
        """Clean shutdown, then a new bot on the same database and fakes."""
        await self.stop()
        await self.start()

    async def kill(self) -> None:
        """Stop abruptly: cancel everything the bot runs without its shutdown, then start again."""
        bot = self.bot
        current = asyncio.current_task()
        orphans = [t for t in asyncio.all_tasks() - self._before if t is not current]
        for task in orphans:
            task.cancel()
        await asyncio.gather(*orphans, return_exceptions=True)
        # What the OS would reclaim from a killed process: sockets and the database handle.
        with contextlib.suppress(Exception):
            await bot.store.close()
        with contextlib.suppress(Exception):
            await bot.v1b.close()
        with contextlib.suppress(Exception):
            if bot.ws is not None:
                await bot.ws.close(code=4000)
        with contextlib.suppress(Exception):
            await bot.http.close()
        self.bot = None
        await self.start()

    async def close(self) -> None:
        """Stop the bot and the fakes."""
        try:
            await self.stop()
        finally:
            await self.fake.stop()
            await self.emu.stop()


HarnessFactory = Callable[..., Awaitable[Harness]]
DatabaseFactory = Callable[[], Awaitable[str | Path]]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Tests marked `backends` run once per database backend; others on SQLite only.
    marker = metafunc.definition.get_closest_marker("backends")
    if marker is not None and "backend" in metafunc.fixturenames:
        metafunc.parametrize("backend", marker.args or BACKENDS, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend of this test: those of its `backends` mark, else SQLite (or
    MIAOHUA_TEST_BACKEND, to run every test on PostgreSQL)."""
    return str(getattr(request, "param", os.environ.get("MIAOHUA_TEST_BACKEND", "sqlite")))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One embedded PostgreSQL server for the whole test process, started on first use."""
    server = PostgresServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def new_database(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[DatabaseFactory]:
    """Make empty databases of the test's backend: SQLite paths or PostgreSQL URLs."""
    server: PostgresServer | None = None
    if backend == "postgresql":
        server = request.getfixturevalue("postgres_server")
    made = 0

    async def make() -> str | Path:
        nonlocal made
        made += 1
        if server is None:
            return tmp_path / f"db{made}" / "bot.sqlite3"
        return await server.create()

    try:
        yield make
    finally:
        if server is not None:
            await server.drop_created()


@pytest.fixture
async def harness_factory(
    tmp_path: Path, backend: str, new_database: DatabaseFactory
) -> AsyncIterator[HarnessFactory]:
    """Build harnesses with extra settings; every one is closed and checked at teardown.

    On SQLite each harness keeps its database in its own directory; on PostgreSQL
    (tests marked `backends`) each gets a fresh database on the embedded server.
    """
    check = LogCheck()
    targets = [logging.getLogger(name) for name in WATCHED]
    for target in targets:
        target.addHandler(check)
    made: list[Harness] = []

    async def make(
        emulator: dict[str, Any] | None = None,
        *,
        fake_setup: Callable[[FakeDiscord], None] | None = None,
        **settings: Any,
    ) -> Harness:
        """`fake_setup` adds to the fake Discord (guilds, shard count) before the bot connects."""
        if backend == "postgresql":
            storage = {"url": str(await new_database()), **settings.get("storage", {})}
            settings = {**settings, "storage": storage}
        harness = Harness(tmp_path / f"h{len(made)}", settings, emulator or {}, check, fake_setup)
        harness.tmp_path.mkdir(parents=True, exist_ok=True)
        made.append(harness)
        await harness.open()
        return harness

    try:
        yield make
    finally:
        for harness in made:
            await harness.close()
        for target in targets:
            target.removeHandler(check)
    # A request Discord would reject fails the test that made it, whatever the bot did next.
    violations = [v for harness in made for v in harness.fake.violations]
    if violations:
        others = check.problems()
        extra = "\nand errors during the test:\n" + "\n".join(others) if others else ""
        raise AssertionError(format_violations(violations) + extra)
    check.verify()
    for harness in made:
        assert not harness.fake.unhandled, f"unhandled Discord routes: {harness.fake.unhandled}"


@pytest.fixture
async def harness(harness_factory: HarnessFactory) -> Harness:
    """The default harness: two guilds with their own accounts, fast emulator timings."""
    return await harness_factory()


def locale_names() -> list[discord.Locale]:
    """The locales the catalogs cover."""
    return [discord.Locale.american_english, discord.Locale.chinese]
