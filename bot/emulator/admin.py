"""The admin API: statistics, run-time faults, accounts and token expiry.

Every admin route wants `Authorization: Bearer <admin token>` (a random token the server makes
at start), and every POST a JSON body declared as such. A web page open in the operator's
browser can send `text/plain` posts to 127.0.0.1 without asking, but it cannot send a JSON
content type or an Authorization header without a CORS preflight, which the emulator never
grants; and it does not know the token.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from bot.emulator.settings import FaultSettings
from bot.emulator.state import EmulatorState

log = logging.getLogger(__name__)


async def _json_object(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guarded(handler: Handler, token: str) -> Handler:
    """The handler behind the admin token check, and, for POSTs, the JSON content type check."""
    expected = f"Bearer {token}".encode()

    async def guarded(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode()
        if not hmac.compare_digest(given, expected):
            raise web.HTTPUnauthorized(
                text="admin routes need 'Authorization: Bearer <admin token>'",
                headers={"WWW-Authenticate": 'Bearer realm="emulator admin"'},
            )
        if request.method == "POST" and request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(text="admin requests must be application/json")
        return await handler(request)

    return guarded


def add_admin_routes(app: web.Application, state: EmulatorState, token: str) -> None:
    """Register the /admin routes on the app, each behind `token`."""
    if len(token) < 16:
        raise ValueError("the admin token is too short to be secret")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(state.stats())

    async def faults(request: web.Request) -> web.Response:
        update = await _json_object(request)
        current = state.settings.faults
        try:
            merged = FaultSettings.model_validate({**current.model_dump(), **update})
        except ValidationError as exc:
            raise web.HTTPBadRequest(text=str(exc)) from None
        # Update in place: code holding the FaultSettings object sees the change.
        for name in update:
            setattr(current, name, getattr(merged, name))
        log.info("emulator faults now %s", current.model_dump())
        return web.json_response(current.model_dump())

    async def accounts(request: web.Request) -> web.Response:
        body = await _json_object(request)
        email, password, points = body.get("email"), body.get("password"), body.get("points")
        if not isinstance(email, str) or not email or not isinstance(password, str):
            raise web.HTTPBadRequest(text="email and password are required strings")
        if points is not None and (isinstance(points, bool) or not isinstance(points, int)):
            raise web.HTTPBadRequest(text="points must be an integer")
        state.add_account(email, password, points)
        return web.json_response({"ok": True, "points": state.accounts[email].points})

    async def expire_tokens(request: web.Request) -> web.Response:
        state.expire_tokens()
        return web.json_response({"ok": True})

    app.router.add_get("/admin/stats", _guarded(stats, token))
    app.router.add_post("/admin/faults", _guarded(faults, token))
    app.router.add_post("/admin/accounts", _guarded(accounts, token))
    app.router.add_post("/admin/expire_tokens", _guarded(expire_tokens, token))
