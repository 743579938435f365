"""The periodic job that keeps a long-running bot bounded: prune the store, log its health."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from bot.background import Background
from bot.diagnostics import LoopLagMonitor, rss_mb
from bot.jobs.retention import Pruned, prune, prune_interval
from bot.store import Store

log = logging.getLogger(__name__)


class Housekeeping:
    """Every `interval` seconds: prune the store and idle caches, log memory, lag and sizes.

    The log line ("housekeeping: ...") is how an operator (and the soak benchmark) sees that
    memory, loop lag and in-memory state stay flat however long the bot runs.
    """

    def __init__(
        self,
        store: Store,
        *,
        retention_days: float,
        loop_lag: LoopLagMonitor | None = None,
        sizes: Callable[[], Mapping[str, int]] = dict,
        forget_idle: Callable[[], object] = lambda: None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.retention_days = retention_days
        self.interval = prune_interval(retention_days)
        self._loop_lag = loop_lag
        self._sizes = sizes
        self._forget_idle = forget_idle
        self._wall = wall_clock
        self._background = Background(log, "housekeeping")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run a first pass now (the bot may have been down for long), then periodically."""
        if self._task is None:
            self._task = self._background.spawn(self._run())

    async def stop(self) -> None:
        """Stop the periodic job (a pass in progress is cancelled; the next start redoes it)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def run_once(self) -> Pruned:
        """One pass: prune, then log the health line; return what was pruned."""
        pruned = await prune(self._store, retention_days=self.retention_days, now=self._wall())
        self._forget_idle()
        lag = self._loop_lag.take_window() if self._loop_lag is not None else "-"
        sizes = ", ".join(f"{name} {count}" for name, count in self._sizes().items())
        log.info(
            "housekeeping: pruned %d task(s) and %d usage row(s); rss %.1f MB; "
            "loop lag since last pass %s; in memory: %s",
            pruned.tasks,
            pruned.usage_rows,
            rss_mb(),
            lag,
            sizes or "-",
        )
        return pruned

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:
                # A failing pass (e.g. the disk is full) must not end the periodic job.
                log.exception("housekeeping pass failed; retrying in %gs", self.interval)
            await asyncio.sleep(self.interval)
