"""Event-loop lag sampling: a cheap health signal, summarised in the log at shutdown."""

from __future__ import annotations

import asyncio
import logging
import random
import time

log = logging.getLogger(__name__)


class LoopLagMonitor:
    """Measures how late the event loop wakes a sleeper; keeps a bounded random sample."""

    def __init__(self, interval: float = 0.1, reservoir: int = 4096) -> None:
        self.interval = interval
        self._reservoir = reservoir
        self._samples: list[float] = []
        self._seen = 0
        self._max = 0.0
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
        if self._samples:
            log.info("event loop lag: %s", self.summary_text())

    def percentile(self, fraction: float) -> float:
        """The lag (seconds) below which `fraction` of the samples lie."""
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0

    def summary_text(self) -> str:
        """'p50 X ms, p99 Y ms, max Z ms (N samples)'."""
        return (
            f"p50 {self.percentile(0.5) * 1000:.1f} ms, p99 {self.percentile(0.99) * 1000:.1f} ms,"
            f" max {self._max * 1000:.1f} ms ({self._seen} samples)"
        )

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self.interval)
            self._record(max(0.0, time.perf_counter() - start - self.interval))

    def _record(self, lag: float) -> None:
        self._seen += 1
        self._max = max(self._max, lag)
        if len(self._samples) < self._reservoir:
            self._samples.append(lag)
        else:  # reservoir sampling keeps memory bounded on long runs
            slot = random.randrange(self._seen)
            if slot < self._reservoir:
                self._samples[slot] = lag
