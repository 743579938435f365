"""`miaohua-bot run`: start the bot (optionally on an embedded emulator) until a signal stops it."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import TypedDict

import aiohttp
import discord

from bot import event_loop, gc_tuning
from bot.app import create_bot
from bot.config import Settings, deprecation_warnings
from bot.demo_accounts import DemoAccounts, DemoSecretUnusable
from bot.emulator.persistence import StateFileUnusable
from bot.logs import redactor, setup_logging
from bot.preflight import startup_refusal
from bot.reachability import describe_failure, public_address, wait_until_reachable
from bot.store.shards import ShardsTaken

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


class EmulatorWiring(TypedDict, total=False):
    """What `create_bot` needs to run on the embedded emulator (nothing without one)."""

    emulator_base_url: str
    demo: DemoAccounts


def run_bot(settings: Settings, *, embedded_emulator: bool = False) -> int:
    """Run the bot in a fresh event loop and return the process exit code."""
    setup_logging(settings.logging.level, settings.logging.format)
    for warning in deprecation_warnings(settings):
        log.warning("%s", warning)
    refusal = startup_refusal(settings, emulator=embedded_emulator)
    if refusal is not None:
        _say(refusal)
        return EXIT_CONFIG
    log.info("event loop: %s", event_loop.loop_name())
    gc_tuning.tune()
    try:
        return event_loop.run(serve(settings, embedded_emulator=embedded_emulator))
    except KeyboardInterrupt:
        return EXIT_OK


async def serve(settings: Settings, *, embedded_emulator: bool = False) -> int:
    """Start everything, run until closed, and clean up; returns the exit code."""
    assert settings.discord.token is not None
    token = settings.discord.token.get_secret_value().strip()
    redactor.set("discord:token", token)
    stopping = asyncio.Event()
    _on_signals(stopping.set)
    api_base = settings.discord.api_base_url or discord.http.Route.BASE
    reached = await wait_until_reachable(
        api_base,
        gateway=_gateway_url(settings),
        retry_for=settings.discord.connect_retry,
        say=_say,
        stop=stopping,
    )
    if stopping.is_set():
        log.info("stopped before Discord could be reached")
        return EXIT_OK
    if not reached:
        return EXIT_FAILED
    async with AsyncExitStack() as stack:
        extra: EmulatorWiring = {}
        if embedded_emulator:
            try:
                extra = await stack.enter_async_context(_embedded_emulator(settings))
            except (DemoSecretUnusable, StateFileUnusable) as exc:
                _say(str(exc))
                return EXIT_CONFIG
        bot = create_bot(settings, **extra)
        closer = asyncio.create_task(_close_when(stopping, bot))
        stack.callback(closer.cancel)
        freezer = asyncio.create_task(_freeze_when_ready(bot))
        stack.callback(freezer.cancel)
        try:
            async with bot:
                await bot.start(token)
        except discord.LoginFailure:
            _say("Discord rejected the bot token (check MIAOHUA_BOT_DISCORD__TOKEN)")
            return EXIT_FAILED
        except ShardsTaken as exc:
            _say(str(exc))
            return EXIT_FAILED
        except discord.PrivilegedIntentsRequired:
            _say("Discord refused an intent the bot asked for")
            return EXIT_FAILED
        except (aiohttp.ClientConnectionError, discord.DiscordServerError) as exc:
            # Reachable a moment ago, lost while starting: say so in one line, not a traceback.
            if isinstance(exc, discord.DiscordServerError):
                cause = f"it answered HTTP {exc.status}"
            else:
                cause = describe_failure(exc)
            _say(f"lost Discord at {public_address(api_base)} while starting: {cause}")
            return EXIT_FAILED
    if bot.lost_shards:
        return EXIT_FAILED
    log.info("stopped")
    return EXIT_OK


async def _freeze_when_ready(bot: discord.Client) -> None:
    """Once the caches are loaded, keep what start-up built out of later collections."""
    await bot.wait_until_ready()
    frozen = gc_tuning.freeze_startup_objects()
    log.info("ready: %d objects of start-up frozen out of garbage collection", frozen)


def _gateway_url(settings: Settings) -> str:
    """Where the first gateway connection goes (sharded bots here always set a shard count)."""
    return settings.discord.gateway_url or str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)


def _say(line: str) -> None:
    """One line for the operator on stderr, outside the log format."""
    print(f"miaohua-bot: {line}", file=sys.stderr, flush=True)


@asynccontextmanager
async def _embedded_emulator(settings: Settings) -> AsyncIterator[EmulatorWiring]:
    """Serve the emulator in-process and hand every guild a demo account on it."""
    from bot.emulator import EmulatorServer, EmulatorSettings
    from bot.emulator.persistence import state_file_beside

    cfg = settings.miaohua.embedded
    server = EmulatorServer(
        EmulatorSettings(
            accounts={},
            generation_time=cfg.generation_time,
            training_time=cfg.training_time,
            workers=cfg.workers,
            # A demo survives restarts: trained models, datasets, points and running tasks
            # are kept beside the database, and random seeds differ from one start to the next.
            seed=None,
            state_file=state_file_beside(settings.storage.path),
        ),
        host=cfg.host,
        port=cfg.port,
    )
    # Random per data directory: no guild can work out another guild's demo password.
    demo = DemoAccounts.beside(settings.storage.path, server.state.ensure_account)
    await server.start()
    log.info("embedded Miaohua emulator at %s", server.base_url)
    try:
        yield {"emulator_base_url": server.base_url, "demo": demo}
    finally:
        await server.stop()


async def _close_when(stopping: asyncio.Event, bot: discord.Client) -> None:
    await stopping.wait()
    await bot.close()


def _on_signals(stop: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()

    def handle(signame: str) -> None:
        log.info("received %s", signame)
        stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):  # not on every platform
            loop.add_signal_handler(sig, handle, sig.name)
