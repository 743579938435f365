"""Run the bot under cProfile, worker threads included: `python -m bench.profiled OUT ARGS...`.

`python -m cProfile` sees only the main thread, but the bot decodes and encodes images in a
thread pool (bot/offload.py) and talks to SQLite from aiosqlite's thread. Here every thread
gets its own profiler, timed in that thread's CPU time (a thread waiting for the CPU on a
busy machine costs nothing). SIGUSR1 marks the start of the window of interest (the
benchmark sends it when it starts firing commands): what was spent before it, such as
imports and setup, is left out; frames that span the mark, such as `run_bot`, keep their
whole cumulative time, so read the window's costs from the functions called in it. When the
process exits (after the interpreter has joined its threads) the profiles are merged into
one pstats file at OUT. `ARGS` are the arguments of `python -m bot`; the bot is unchanged.
"""

from __future__ import annotations

import atexit
import cProfile
import pstats
import runpy
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

# pstats' format: function -> (primitive calls, calls, own time, cumulative time, callers).
Entries = dict[tuple[str, int, str], tuple[Any, ...]]

_profiles: list[cProfile.Profile] = []
_baselines: dict[int, Entries] = {}
_lock = threading.Lock()


class _Snapshot:
    """Figures in the shape pstats.Stats loads (anything with `create_stats` and `stats`)."""

    def __init__(self, stats: Entries) -> None:
        self.stats = stats

    def create_stats(self) -> None:
        pass


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


def _entries(profile: cProfile.Profile) -> Entries:
    # Reads the figures without disabling the profiler (create_stats would, in this thread).
    profile.snapshot_stats()
    return dict(profile.stats)


def _minus(now: Entries, before: Entries) -> Entries:
    out: Entries = {}
    for func, (cc, nc, tt, ct, callers) in now.items():
        if func not in before:
            out[func] = (cc, nc, tt, ct, callers)
            continue
        bcc, bnc, btt, bct, bcallers = before[func]
        if nc == bnc:
            continue  # not called within the window
        left = {caller: _less(v, bcallers.get(caller)) for caller, v in callers.items()}
        left = {caller: v for caller, v in left.items() if v[1] > 0}
        out[func] = (cc - bcc, nc - bnc, tt - btt, ct - bct, left)
    return out


def _less(now: tuple[Any, ...], before: tuple[Any, ...] | None) -> tuple[Any, ...]:
    return now if before is None else tuple(a - b for a, b in zip(now, before, strict=True))


def _mark(signum: int, frame: object) -> None:
    """Start the window: what every profiler holds so far is subtracted at the end."""
    with _lock:
        for profile in _profiles:
            _baselines[id(profile)] = _entries(profile)


def _dump(main: cProfile.Profile, out: str) -> None:
    main.disable()
    with _lock:
        # A daemon thread may still run; its profiler's figures are read as they stand.
        parts = [_minus(_entries(p), _baselines.get(id(p), {})) for p in _profiles]
    stats = pstats.Stats(_Snapshot(parts[0]))  # type: ignore[arg-type]
    for part in parts[1:]:
        stats.add(_Snapshot(part))  # type: ignore[arg-type]
    stats.dump_stats(out)
    print(f"bench.profiled: wrote {out}", file=sys.stderr, flush=True)


def main(argv: list[str]) -> Any:
    """Profile `python -m bot ARGS` into the .prof file named first."""
    out, *args = argv
    threading.Thread.run = _profiled_run(threading.Thread.run)  # type: ignore[method-assign,assignment]
    main_profile = cProfile.Profile(time.thread_time)
    _profiles.append(main_profile)
    signal.signal(signal.SIGUSR1, _mark)
    atexit.register(_dump, main_profile, out)
    sys.argv = ["bot", *args]
    main_profile.enable()
    runpy.run_module("bot", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
