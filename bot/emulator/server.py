"""The aiohttp application: routes, envelopes, injected faults, and a runnable server."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from bot.emulator.admin import add_admin_routes
from bot.emulator.api import V1bApi
from bot.emulator.errors import ApiError
from bot.emulator.hugebody import huge_body_due, stream_huge_body
from bot.emulator.media import add_media_routes
from bot.emulator.persistence import StateKeeper
from bot.emulator.scheduler import GenerationQueue
from bot.emulator.settings import EmulatorSettings, FaultSettings
from bot.emulator.state import EmulatorState

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1b"
STATE_KEY = web.AppKey("emulator_state", EmulatorState)
# Endpoints whose success answers the spec shows bare; every other one is enveloped.
SPEC_BARE = frozenset({"get_token", "task_submit", "task_result", "dataset_all", "train_progress"})
MAX_UPLOAD_BYTES = 64 * 1024 * 1024

Handler = Callable[[web.Request], Awaitable[Any]]


def envelope(payload: Any, *, code: int = 0, msg: str = "") -> dict[str, Any]:
    """Return the service's {code, info, msg} envelope."""
    return {"code": code, "info": payload, "msg": msg}


def shape(endpoint: str, payload: Any, mode: str) -> Any:
    """Return a success payload bare or enveloped, as the envelope mode wants for this endpoint."""
    bare = mode == "never" or (mode == "spec" and endpoint in SPEC_BARE)
    return payload if bare else envelope(payload)


class _FaultInjector:
    """Decides, from the seeded fault stream, which answers go wrong and how."""

    def __init__(self, state: EmulatorState) -> None:
        self._state = state

    @property
    def faults(self) -> FaultSettings:
        return self._state.settings.faults

    def roll(self, rate: float) -> bool:
        """Return True with probability rate."""
        return rate > 0 and self._state.fault_rng.random() < rate

    async def delay(self) -> None:
        """Sleep for the configured latency, plus an occasional spike."""
        seconds = self.faults.latency
        if self.roll(self.faults.latency_spike_rate):
            seconds += self.faults.latency_spike
        if seconds > 0:
            await asyncio.sleep(seconds)

    def early_failure(self) -> web.Response | None:
        """Return a failure answered before the request is handled, if one is due."""
        if self.roll(self.faults.http_error_rate):
            status = self._state.fault_rng.choice((500, 502, 503))
            page = f"<html><body><h1>{status}</h1>upstream failure</body></html>"
            return web.Response(status=status, text=page, content_type="text/html")
        if self.roll(self.faults.error_rate):
            status = 500 if self._state.fault_rng.random() < 0.5 else 200
            return web.json_response(envelope("", code=500, msg="internal error"), status=status)
        return None

    def respond(self, body: Any) -> web.Response:
        """Return the JSON answer, or a truncated one when a malformed body is due."""
        text = json.dumps(body, ensure_ascii=False)
        if self.roll(self.faults.malformed_rate):
            text = text[: len(text) // 2] + "<!-- truncated"
        return web.Response(text=text, content_type="application/json")


def _endpoint(state: EmulatorState, name: str, handler: Handler) -> Handler:
    injector = _FaultInjector(state)

    async def handle(request: web.Request) -> web.StreamResponse:
        state.calls[name] += 1
        await injector.delay()
        failure = injector.early_failure()
        if failure is not None:
            return failure
        if huge_body_due(state, name):
            return await stream_huge_body(request, state)
        try:
            body = shape(name, await handler(request), state.settings.faults.envelope)
        except ApiError as exc:
            body = envelope("", code=exc.code, msg=exc.msg)
        except web.HTTPException:
            raise
        except Exception:
            log.exception("emulator endpoint %s failed", name)
            body = envelope("", code=500, msg="internal error")
        return injector.respond(body)

    return handle


def create_app(settings: EmulatorSettings, *, admin_token: str) -> web.Application:
    """Build the emulator's aiohttp application (its generation workers run while it runs)."""
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES)
    state = EmulatorState(settings)
    app[STATE_KEY] = state
    queue = GenerationQueue(state)
    if settings.state_file is not None:
        keeper = StateKeeper(state, settings.state_file)
        for task in keeper.load():
            queue.submit(task)

        async def keep_state(_: web.Application) -> AsyncIterator[None]:
            keeper.start()
            yield
            await keeper.stop()  # after the queue stopped (cleanups run in reverse)

        app.cleanup_ctx.append(keep_state)
    api = V1bApi(state, queue)

    async def run_queue(_: web.Application) -> AsyncIterator[None]:
        queue.start()
        yield
        await queue.stop()

    app.cleanup_ctx.append(run_queue)
    posts = {
        "get_token": api.get_token,
        "task_submit": api.task_submit,
        "task_result": api.task_result,
        "task_results": api.task_results,
        "upload_imgs": api.upload_imgs,
        "dataset": api.dataset,
        "dataset_all": api.dataset_all,
        "train_submit": api.train_submit,
        "train_progress": api.train_progress,
    }
    for name, handler in posts.items():
        app.router.add_post(f"{API_PREFIX}/{name}", _endpoint(state, name, handler))
    gets = {
        "get_generation_form": api.get_generation_form,
        "get_train_form": api.get_train_form,
        "train_form": api.get_train_form,
    }
    for name, handler in gets.items():
        app.router.add_get(f"{API_PREFIX}/{name}", _endpoint(state, name, handler))
    add_media_routes(app, state)
    add_admin_routes(app, state, admin_token)
    return app


class EmulatorServer:
    """Runs the emulator on a real socket; use it as an async context manager.

    `admin_token` (random for each server) opens the /admin routes; `admin_headers` carries it.
    """

    def __init__(
        self, settings: EmulatorSettings | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.settings = settings if settings is not None else EmulatorSettings()
        self.admin_token = secrets.token_urlsafe(32)
        self.app = create_app(self.settings, admin_token=self.admin_token)
        self.state: EmulatorState = self.app[STATE_KEY]
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def root_url(self) -> str:
        """The server's origin, e.g. http://127.0.0.1:8765."""
        if self._runner is None:
            raise RuntimeError("the emulator is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def admin_headers(self) -> dict[str, str]:
        """Headers that an admin route accepts."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    @property
    def base_url(self) -> str:
        """The API base URL clients are configured with."""
        return f"{self.root_url}{API_PREFIX}"

    async def start(self) -> None:
        """Bind the socket and start serving."""
        runner = web.AppRunner(self.app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = runner.addresses[0][1]
        log.info("Miaohua v1b emulator listening at %s", self.base_url)

    async def stop(self) -> None:
        """Stop serving and release the socket."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def add_account(self, email: str, password: str, points: int | None = None) -> None:
        """Create or replace an account (points default to settings.points)."""
        self.state.add_account(email, password, points)

    def expire_tokens(self) -> None:
        """Make every issued token answer 600 from now on."""
        self.state.expire_tokens()
