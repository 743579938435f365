"""A stateful local emulator of the Miaohua v1b API (aiohttp.web), with injectable faults.

Faults apply to /api/v1b routes only; image, upload and /admin routes always answer cleanly.
Generation runs on one service-wide FIFO queue with `settings.workers` generations at once.
"""

from bot.emulator.cli import add_emulator_arguments, serve_forever, settings_from_args
from bot.emulator.server import EmulatorServer, create_app
from bot.emulator.settings import EmulatorSettings, FaultSettings
from bot.emulator.state import EmulatorState

__all__ = [
    "EmulatorServer",
    "EmulatorSettings",
    "EmulatorState",
    "FaultSettings",
    "add_emulator_arguments",
    "create_app",
    "serve_forever",
    "settings_from_args",
]
