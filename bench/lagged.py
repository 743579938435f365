"""Run the bot with every event-loop lag sample written to a file.

`python -m bench.lagged OUT MODULE ARGS...` runs `python -m MODULE ARGS` (`bot`, or
`bench.profiled PROFILE` wrapping it) after hooking the bot's own sampler
(`bot.diagnostics.LoopLagMonitor`, a task that sleeps 0.1 s and records how late it woke):
each sample is appended to OUT as `EPOCH LAG_SECONDS`, so the benchmark can take the
percentiles of any window of the run. The bot is otherwise unchanged.
"""

from __future__ import annotations

import runpy
import sys
import time
from typing import Any

from bot.diagnostics import LoopLagMonitor


def main(argv: list[str]) -> Any:
    """Hook the sampler, then run MODULE as `__main__` with ARGS."""
    out, module, *args = argv
    sink = open(out, "a", buffering=1)  # noqa: SIM115 - open for the whole process
    record = LoopLagMonitor._record

    def recorded(self: LoopLagMonitor, lag: float) -> None:
        record(self, lag)
        sink.write(f"{time.time():.3f} {lag:.6f}\n")

    LoopLagMonitor._record = recorded  # type: ignore[method-assign]
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def read_samples(path: str) -> list[tuple[float, float]]:
    """The (epoch, lag seconds) samples written so far."""
    samples = []
    try:
        with open(path) as fh:
            for line in fh:
                at, _, lag = line.partition(" ")
                if lag.endswith("\n"):
                    samples.append((float(at), float(lag)))
    except FileNotFoundError:
        pass
    return samples


if __name__ == "__main__":
    main(sys.argv[1:])
