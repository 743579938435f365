"""Keep the harness's own pauses out of what it measures of the bot.

An acknowledgement is timed by the harness's fake Discord, from the interaction sent to the
callback received, so a pause of the harness's event loop counts as the bot's latency. The
harness keeps every server, message and interaction of a run, and CPython's default collector
walks all of it: full collections of 50-130 ms, several in a 30-second window, growing with the
run. While a window is measured, what exists is frozen and the harness's collector is held
(its garbage waits for the end of the window), and the harness samples its own loop lag, so
a table can show that what it reports is the bot's.
"""

from __future__ import annotations

import gc

from bot.diagnostics import LoopLagMonitor

SAMPLE_INTERVAL = 0.02  # finer than the bot's 0.1 s, to catch short pauses


class HarnessWatch:
    """Holds the harness's collector and samples its loop lag between `start` and `stop`."""

    def __init__(self) -> None:
        self._lag: LoopLagMonitor | None = None

    def start(self) -> None:
        """Collect and freeze what exists, hold collections, start sampling (on the loop)."""
        gc.collect()
        gc.freeze()
        gc.disable()
        self._lag = LoopLagMonitor(SAMPLE_INTERVAL)
        self._lag.start()

    async def stop(self) -> tuple[float, float]:
        """Release the collector; the harness's loop lag p99 and max (ms) in the window."""
        assert self._lag is not None, "stop() before start()"
        lag, self._lag = self._lag, None
        await lag.stop()
        gc.enable()
        gc.unfreeze()
        return lag.percentile(0.99) * 1000, lag.max_lag * 1000
