"""The admin API: statistics, run-time faults, accounts and token expiry."""

from __future__ import annotations

import logging
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


def add_admin_routes(app: web.Application, state: EmulatorState) -> None:
    """Register the /admin routes on the app."""

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

    app.router.add_get("/admin/stats", stats)
    app.router.add_post("/admin/faults", faults)
    app.router.add_post("/admin/accounts", accounts)
    app.router.add_post("/admin/expire_tokens", expire_tokens)
