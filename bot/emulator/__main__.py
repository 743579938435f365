"""Run the v1b emulator: `python -m bot.emulator --help`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

from bot.emulator.cli import add_emulator_arguments, serve_forever


def main(argv: list[str] | None = None) -> None:
    """Parse options and serve until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m bot.emulator", description="A local Miaohua v1b API emulator."
    )
    add_emulator_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_forever(args))


if __name__ == "__main__":
    main()
