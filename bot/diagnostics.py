"""Event-loop lag sampling and process memory: cheap health signals for the log."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import resource
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def rss_mb() -> float:
    """The process's current resident set size in MiB (its peak where /proc is missing)."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class _Reservoir:
    """A bounded random sample of lags, with the count and maximum of all of them."""

    def __init__(self, size: int) -> None:
        self._size = size
        self.samples: list[float] = []
        self.seen = 0
        self.max = 0.0

    def record(self, lag: float) -> None:
        self.seen += 1
        self.max = max(self.max, lag)
        if len(self.samples) < self._size:
            self.samples.append(lag)
        else:  # reservoir sampling keeps memory bounded on long runs
            slot = random.randrange(self.seen)
            if slot < self._size:
                self.samples[slot] = lag

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    def summary_text(self) -> str:
        return (
            f"p50 {self.percentile(0.5) * 1000:.1f} ms, p99 {self.percentile(0.99) * 1000:.1f} ms,"
            f" max {self.max * 1000:.1f} ms ({self.seen} samples)"
        )


class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeper; keeps a bounded random sample.

    Besides the whole run, it keeps the samples since the last `take_window()`, so a
    periodic log line can show whether the lag changes as the process ages.
    """

    def __init__(
        self,
        interval: float = 0.1,
        reservoir: int = 4096,
        on_sample: Callable[[float], None] | None = None,
    ) -> None:
        self.interval = interval
        self._on_sample = on_sample  # e.g. a metrics histogram
        self._reservoir = reservoir
        self._all = _Reservoir(reservoir)
        self._window = _Reservoir(reservoir)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin sampling in the background."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        """Stop sampling and log the summary."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._all.samples:
            log.info("event loop lag: %s", self.summary_text())

    def percentile(self, fraction: float) -> float:
        """The lag (seconds) below which `fraction` of the samples lie."""
        return self._all.percentile(fraction)

    @property
    def max_lag(self) -> float:
        """The largest lag (seconds) seen over the whole run."""
        return self._all.max

    def summary_text(self) -> str:
        """'p50 X ms, p99 Y ms, max Z ms (N samples)' over the whole run."""
        return self._all.summary_text()

    def take_window(self) -> str:
        """The summary of the samples since the previous call, which starts a new window."""
        window, self._window = self._window, _Reservoir(self._reservoir)
        return window.summary_text()

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self._record(max(0.0, time.perf_counter() - start - self.interval))

    def _record(self, lag: float) -> None:
        self._all.record(lag)
        self._window.record(lag)
        if self._on_sample is not None:
            self._on_sample(lag)
