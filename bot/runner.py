"""`miaohua-bot run`: start the bot (optionally on an embedded emulator) until a signal stops it."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from typing import Any

import discord

from bot.app import create_bot
from bot.config import Settings
from bot.logs import redactor, setup_logging

log = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def run_bot(settings: Settings, *, embedded_emulator: bool = False) -> int:
    """Run the bot in a fresh event loop and return the process exit code."""
    setup_logging(settings.logging.level, settings.logging.format)
    if settings.discord.token is None or not settings.discord.token.get_secret_value().strip():
        print(
            "miaohua-bot: no Discord bot token: set MIAOHUA_BOT_DISCORD__TOKEN "
            "(or discord.token in the config file)",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:
        return asyncio.run(serve(settings, embedded_emulator=embedded_emulator))
    except KeyboardInterrupt:
        return EXIT_OK


async def serve(settings: Settings, *, embedded_emulator: bool = False) -> int:
    """Start everything, run until closed, and clean up; returns the exit code."""
    assert settings.discord.token is not None
    token = settings.discord.token.get_secret_value().strip()
    redactor.set("discord:token", token)
    async with AsyncExitStack() as stack:
        extra: dict[str, Any] = {}
        if embedded_emulator:
            extra = await stack.enter_async_context(_embedded_emulator(settings))
        bot = create_bot(settings, **extra)
        _close_on_signals(bot)
        try:
            async with bot:
                await bot.start(token)
        except discord.LoginFailure:
            print(
                "miaohua-bot: Discord rejected the bot token (check MIAOHUA_BOT_DISCORD__TOKEN)",
                file=sys.stderr,
            )
            return EXIT_FAILED
        except discord.PrivilegedIntentsRequired:
            print("miaohua-bot: Discord refused an intent the bot asked for", file=sys.stderr)
            return EXIT_FAILED
    log.info("stopped")
    return EXIT_OK


@asynccontextmanager
async def _embedded_emulator(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """Serve the emulator in-process and hand every guild a demo account on it."""
    from bot.emulator import EmulatorServer, EmulatorSettings

    cfg = settings.miaohua.embedded
    server = EmulatorServer(
        EmulatorSettings(
            accounts={},
            generation_time=cfg.generation_time,
            training_time=cfg.training_time,
            workers=cfg.workers,
        ),
        host=cfg.host,
        port=cfg.port,
    )
    await server.start()
    log.info("embedded Miaohua emulator at %s", server.base_url)
    try:
        yield {"emulator_base_url": server.base_url, "demo": server.add_account}
    finally:
        await server.stop()


def _close_on_signals(bot: discord.Client) -> None:
    loop = asyncio.get_running_loop()

    closing: set[asyncio.Task[None]] = set()

    def stop(signame: str) -> None:
        log.info("received %s", signame)
        task = loop.create_task(bot.close())
        closing.add(task)  # keep a reference until it is done
        task.add_done_callback(closing.discard)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):  # not on every platform
            loop.add_signal_handler(sig, stop, sig.name)
