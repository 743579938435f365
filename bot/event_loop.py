"""The event loop the processes run on: uvloop where it is installed, asyncio's otherwise.

uvloop (libuv under a Cython loop) runs the same coroutines with a fraction of asyncio's
per-callback and per-socket-operation cost; the bot spends most of its CPU doing small HTTP
requests, so this is its largest single saving. It is a dependency everywhere but Windows,
which it does not support.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

# Off: asyncio's loop even where uvloop is installed (bench/task_cpu.py times each of the
# loop's callbacks from Python, which uvloop runs in C).
use_uvloop = True


def _uvloop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:  # Windows, or an install without it
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    """What `run` runs on, for the start-up log line."""
    if _uvloop_factory() is None:
        return "asyncio"
    return f"uvloop {importlib.metadata.version('uvloop')}"


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the fastest loop available."""
    with asyncio.Runner(loop_factory=_uvloop_factory()) as runner:
        return runner.run(main)
