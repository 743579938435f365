"""CPU-heavy work (decoding and encoding images, reading archives) runs here, off the event loop.

One pool for the whole process, one thread per usable core: a burst of uploads queues here
instead of stalling the event loop or holding every decoded image in memory at once (a 4096x4096
picture decodes to 64 MB). Pillow and zlib release the GIL while they work, so the loop keeps
answering interactions meanwhile.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


WORKERS = _usable_cores()
_pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="cpu-work")


async def offload(func: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    """Run `func(*args, **kwargs)` in the CPU pool and return its result (or raise its error)."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await loop.run_in_executor(_pool, call)
