"""Command line: `miaohua-bot run | emulator | check-config | storage backup | storage migrate`."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence

from bot.config import ConfigError, Settings, deprecation_warnings, load_settings, masked_dump

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from bot.emulator.cli import add_emulator_arguments
    from bot.storage_cli import add_storage_arguments

    parser = argparse.ArgumentParser(
        prog="miaohua-bot", description="Discord bot for SenseTime Miaohua image generation."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="start the bot")
    run.add_argument("--config", metavar="PATH", help="TOML settings file")
    run.add_argument(
        "--emulator",
        action="store_true",
        help="serve a built-in Miaohua emulator and give every guild a demo account",
    )

    check = commands.add_parser(
        "check-config",
        help="print the effective settings, secrets masked; exit 2 on what `run` would refuse",
    )
    check.add_argument("--config", metavar="PATH", help="TOML settings file")

    emulator = commands.add_parser("emulator", help="serve a local Miaohua v1b emulator")
    add_emulator_arguments(emulator)

    storage = commands.add_parser(
        "storage",
        help="maintain the database: `storage backup PATH` (a copy of the SQLite database), "
        "`storage migrate --from URL --to URL` (move it, e.g. to PostgreSQL)",
    )
    add_storage_arguments(storage)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    if args.command == "emulator":
        return _run_emulator(args)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"miaohua-bot: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        return _check_config(settings)
    if args.command == "storage":
        from bot.storage_cli import run_storage

        return run_storage(settings, args)
    from bot.runner import run_bot

    return run_bot(settings, embedded_emulator=args.emulator or settings.miaohua.emulator)


def _check_config(settings: Settings) -> int:
    from bot.preflight import startup_refusal

    for warning in deprecation_warnings(settings):  # what `run` would log as warnings
        print(f"miaohua-bot: warning: {warning}", file=sys.stderr)
    refusal = startup_refusal(settings)  # exactly what `run` would refuse
    if refusal is not None:
        print(f"miaohua-bot: {refusal}", file=sys.stderr)
        return EXIT_CONFIG
    print(json.dumps(masked_dump(settings), indent=2, ensure_ascii=False))
    return 0


def _run_emulator(args: argparse.Namespace) -> int:
    from bot import event_loop, gc_tuning
    from bot.emulator.cli import serve_forever
    from bot.logs import setup_logging

    setup_logging("INFO")
    with contextlib.suppress(KeyboardInterrupt):
        gc_tuning.tune()
        event_loop.run(serve_forever(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
