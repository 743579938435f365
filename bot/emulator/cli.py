"""Command-line options of the emulator, shared by `python -m bot.emulator` and the bot's CLI."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

from bot.emulator.server import EmulatorServer
from bot.emulator.settings import EmulatorSettings, FaultSettings

log = logging.getLogger(__name__)

DEFAULT_PORT = 8765


def _account(value: str) -> tuple[str, str]:
    email, sep, password = value.partition(":")
    if not sep or not email or not password:
        raise argparse.ArgumentTypeError("expected EMAIL:PASSWORD")
    return email, password


def add_emulator_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to a parser."""
    base = EmulatorSettings()
    faults = FaultSettings()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    add("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    add(
        "--account",
        action="append",
        type=_account,
        metavar="EMAIL:PASSWORD",
        help="an account (repeatable; replaces the demo account demo@miaohua.local:demo-password)",
    )
    add("--points", type=int, default=base.points, help="starting points per account")
    add(
        "--generation-time",
        type=float,
        default=base.generation_time,
        help="mean seconds per 512x512 image (grows with pixels and image count)",
    )
    add(
        "--generation-noise",
        type=float,
        default=base.generation_noise,
        help="spread of generation times, e.g. 0.2 for +-20%% (uniform)",
    )
    add("--training-time", type=float, default=base.training_time, help="seconds per training")
    add("--workers", type=int, default=base.workers, help="generations run at once, service-wide")
    add("--error-rate", type=float, default=faults.error_rate, help="fraction answered code 500")
    add(
        "--http-error-rate",
        type=float,
        default=faults.http_error_rate,
        help="fraction answered HTTP 5xx",
    )
    add("--latency", type=float, default=faults.latency, help="seconds added to every API call")
    add("--busy-above", type=int, default=None, help="unfinished tasks per account before 603")
    add(
        "--malformed-rate",
        type=float,
        default=faults.malformed_rate,
        help="fraction of non-JSON bodies",
    )
    add(
        "--envelope",
        choices=["spec", "always", "never"],
        default=faults.envelope,
        help="answer shapes",
    )
    add(
        "--task-failure-rate",
        type=float,
        default=faults.task_failure_rate,
        help="fraction of failed tasks",
    )
    add("--no-batch", action="store_true", help="answer 404 to POST task_results")
    add("--token-ttl", type=float, default=faults.token_ttl, help="seconds a token lives")
    add(
        "--seed",
        type=int,
        default=None,
        help="seed of the emulator's randomness, for reproducible runs (default: new each start)",
    )
    add(
        "--state",
        type=Path,
        default=None,
        metavar="FILE",
        help="keep accounts, datasets, trained models and tasks in FILE across restarts",
    )
    add(
        "--finish-log",
        type=Path,
        default=None,
        metavar="PATH",
        help="benchmark only: append each task's planned finish (TASK_ID EPOCH) to PATH",
    )


def settings_from_args(args: argparse.Namespace) -> EmulatorSettings:
    """Return emulator settings from parsed options."""
    faults = FaultSettings(
        error_rate=args.error_rate,
        http_error_rate=args.http_error_rate,
        latency=args.latency,
        busy_above=args.busy_above,
        malformed_rate=args.malformed_rate,
        envelope=args.envelope,
        task_failure_rate=args.task_failure_rate,
        batch_enabled=not args.no_batch,
        token_ttl=args.token_ttl,
    )
    settings = EmulatorSettings(
        points=args.points,
        generation_time=args.generation_time,
        generation_noise=args.generation_noise,
        training_time=args.training_time,
        workers=args.workers,
        seed=args.seed,
        state_file=args.state,
        finish_log=args.finish_log,
        faults=faults,
    )
    if args.account:
        settings.accounts = dict(args.account)
    return settings


async def serve_forever(args: argparse.Namespace) -> None:
    """Run the emulator until cancelled."""
    async with EmulatorServer(settings_from_args(args), host=args.host, port=args.port) as server:
        # Printed once, on stdout and not in the log: whoever started the emulator holds it.
        print(
            f"admin token: {server.admin_token} "
            "(send 'Authorization: Bearer <token>' to the /admin routes)",
            flush=True,
        )
        accounts = ", ".join(server.state.accounts)
        log.info("emulator ready at %s (accounts: %s)", server.base_url, accounts)
        await asyncio.Event().wait()
