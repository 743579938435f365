"""Run the bot under cProfile, worker threads included: `python -m bench.profiled OUT ARGS...`.

`python -m cProfile` sees only the main thread, but the bot decodes and encodes images in a
thread pool (bot/offload.py) and talks to SQLite from aiosqlite's thread. Here every thread
gets its own profiler; when the process exits (after the interpreter has joined its threads)
they are merged into one pstats file at OUT. The bot itself is unchanged: `ARGS` are the
arguments of `python -m bot`.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import runpy
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()


def _profiled_run(run: Callable[[threading.Thread], None]) -> Callable[[threading.Thread], None]:
    def wrapper(self: threading.Thread) -> None:
        profile = cProfile.Profile(time.thread_time)
        with _lock:
            _profiles.append(profile)
        profile.enable()
        try:
            run(self)
        finally:
            profile.disable()

    return wrapper


def _dump(main: cProfile.Profile, out: str) -> None:
    main.disable()
    stats = pstats.Stats(main)
    with _lock:
        # A daemon thread may still run; its profiler's figures are read as they stand.
        for profile in _profiles:
            stats.add(profile)
    stats.dump_stats(out)
    print(f"bench.profiled: wrote {out}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> Any:
    """Profile `python -m bot ARGS` into the .prof file named first."""
    out, *args = argv
    threading.Thread.run = _profiled_run(threading.Thread.run)  # type: ignore[method-assign,assignment]
    main_profile = cProfile.Profile(time.thread_time)
    atexit.register(_dump, main_profile, out)
    sys.argv = ["bot", *args]
    main_profile.enable()
    runpy.run_module("bot", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
