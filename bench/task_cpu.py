"""Run the bot with the CPU of every event-loop callback charged to what it ran:
`python -m bench.task_cpu OUT ARGS...`.

A profiler splits the bot's CPU by function, and an asyncio bot's functions are many and
small: no single one stands out, and a coroutine's cost is scattered over the helpers it
awaits. Here each callback the loop runs is timed in the thread's CPU time and charged to
the task it advanced, named by its coroutine (for a task of `bot.background.Background`, by
the coroutine it guards), or to the function called back (a socket read, a timer). That
splits the CPU by activity: answering commands, polling, delivering results, editing status
messages. The loop's own work between callbacks (waiting on the sockets, scheduling) is left
out.

uvloop runs its callbacks in C, out of reach of this timing, so the bot runs on asyncio's
loop here, which costs it about 15 % more CPU; read the shares. SIGUSR1 starts the window
(the benchmark sends it when it starts firing commands); at exit the totals are written to
OUT as JSON: {"steps": {name: count}, "cpu_ns": {name: nanoseconds}}. `ARGS` are the
arguments of `python -m bot`.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import runpy
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import bot.event_loop

_ROOT = Path(__file__).resolve().parent.parent
_cpu_ns: Counter[str] = Counter()
_steps: Counter[str] = Counter()


def activity(callback: Any) -> str:
    """What a loop callback runs: its task's coroutine, else the function itself."""
    task = getattr(callback, "__self__", None)  # a task's step is a method of the task
    if isinstance(task, asyncio.Task):
        coro: Any = task.get_coro()
        frame = getattr(coro, "cr_frame", None)
        if getattr(coro, "__qualname__", "") == "Background._guarded" and frame is not None:
            coro = frame.f_locals.get("coro", coro)
        name = getattr(coro, "__qualname__", type(coro).__name__)
        module = getattr(getattr(coro, "cr_code", None), "co_filename", "")
        return f"{_package(module)}: {name}"
    name = getattr(callback, "__qualname__", None) or type(callback).__name__
    return f"{getattr(callback, '__module__', None) or '?'}: {name}"


def _package(filename: str) -> str:
    """The project's top-level package or the installed one a file belongs to."""
    path = Path(filename)
    if "site-packages" in path.parts:  # the project's virtualenv may lie within it
        return path.parts[path.parts.index("site-packages") + 1]
    if path.is_relative_to(_ROOT):
        return path.relative_to(_ROOT).parts[0]
    return path.stem


def _timed(run: Any) -> Any:
    clock = time.thread_time_ns

    def timed_run(handle: asyncio.Handle) -> None:
        name = activity(handle._callback)  # type: ignore[attr-defined]
        start = clock()
        run(handle)
        _cpu_ns[name] += clock() - start
        _steps[name] += 1

    return timed_run


def _mark(signum: int, frame: object) -> None:
    """Start the window: what was counted so far is dropped."""
    _cpu_ns.clear()
    _steps.clear()


def _dump(out: str) -> None:
    Path(out).write_text(json.dumps({"steps": _steps, "cpu_ns": _cpu_ns}, indent=1))
    print(f"bench.task_cpu: wrote {out}", file=sys.stderr, flush=True)


def table(path: Path, tasks: int, top: int = 12) -> str:
    """The `top` activities of a written file as a Markdown table, per task of the run."""
    data = json.loads(path.read_text())
    cpu: dict[str, int] = data["cpu_ns"]
    total = sum(cpu.values()) or 1
    rows = ["| activity | loop steps per task | CPU per task (ms) | share |", "|---|---|---|---|"]
    for name, ns in sorted(cpu.items(), key=lambda item: -item[1])[:top]:
        steps = data["steps"][name] / tasks
        rows.append(f"| `{name}` | {steps:.1f} | {ns / tasks / 1e6:.2f} | {ns / total:.0%} |")
    rows.append(f"| all | | {total / tasks / 1e6:.2f} | 100% |")
    return "\n".join(rows)


def main(argv: list[str]) -> None:
    """Run `python -m bot ARGS` with its callbacks timed, into the JSON file named first."""
    out, *args = argv
    bot.event_loop.use_uvloop = False
    asyncio.Handle._run = _timed(asyncio.Handle._run)  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, _mark)
    atexit.register(_dump, out)
    sys.argv = ["bot", *args]
    runpy.run_module("bot", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
