"""The HTTP endpoints for monitoring: /metrics (Prometheus), /healthz and /readyz."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.metrics import CONTENT_TYPE_LATEST, Metrics

log = logging.getLogger(__name__)

# Why the bot is not ready ('gateway disconnected', 'store: SQLITE_READONLY'), or None.
ReadinessCheck = Callable[[], Awaitable[str | None]]


class MetricsServer:
    """Serves the metrics and health endpoints on one address; `port` 0 picks a free one."""

    def __init__(self, metrics: Metrics, ready: ReadinessCheck, host: str, port: int) -> None:
        self._metrics = metrics
        self._ready = ready
        self._host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self.port)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        log.info("metrics and health endpoints on http://%s:%d/", self._host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _scrape(self, request: web.Request) -> web.Response:
        body = self._metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        # The process answers: its event loop runs. Readiness is /readyz.
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        reason = await self._ready()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")
