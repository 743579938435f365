"""URLs of result images and uploads, and the routes that serve their bytes."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import re
import time
from urllib.parse import parse_qs, quote, urlsplit

from aiohttp import web

from bot.emulator.hugebody import huge_body_due, stream_huge_body
from bot.emulator.render import ImageCache, RenderRequest, encode, render
from bot.emulator.state import EmulatorState, GenerationTask, Upload

ACCESS_KEY_ID = "EMULATOR"
_FILE_PATH = re.compile(r"^/files/(?P<upload_id>[0-9a-f-]{36})$")


def origin(request: web.Request, state: EmulatorState) -> str:
    """Return the scheme and host clients reach this emulator at."""
    if state.settings.public_base_url:
        return state.settings.public_base_url.rstrip("/")
    return f"{request.scheme}://{request.host}"


def image_urls(base: str, task: GenerationTask, index: int) -> dict[str, str]:
    """Return the large and middle URLs of one result image."""
    stem = f"{base}/images/{task.task_id}_{index:05d}"
    return {"large": f"{stem}.jpg", "middle": f"{stem}.mid.jpg"}


def _signature(state: EmulatorState, upload_id: str, expires: int) -> str:
    mac = hmac.new(state.signing_key, f"{upload_id}\n{expires}".encode(), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode()


def upload_url(base: str, state: EmulatorState, upload: Upload) -> str:
    """Return a signed URL of an upload, shaped like an object-storage link."""
    signature = quote(_signature(state, upload.upload_id, upload.expires), safe="")
    return (
        f"{base}/files/{upload.upload_id}?OSSAccessKeyId={ACCESS_KEY_ID}"
        f"&Expires={upload.expires}&Signature={signature}"
    )


def _signed_upload(
    state: EmulatorState, upload_id: str, query: dict[str, list[str]]
) -> Upload | None:
    upload = state.uploads.get(upload_id)
    if upload is None:
        return None
    expires = query.get("Expires", [""])[0]
    signature = query.get("Signature", [""])[0]
    if not (expires.isascii() and expires.isdigit()):
        return None
    if int(expires) != upload.expires or upload.expires < time.time():
        return None
    if not hmac.compare_digest(signature, _signature(state, upload_id, upload.expires)):
        return None
    return upload


def find_upload(state: EmulatorState, url: str) -> Upload | None:
    """Return the upload a URL of this emulator names, or None for any other URL."""
    parts = urlsplit(url)
    match = _FILE_PATH.match(parts.path)
    if parts.scheme not in ("http", "https") or match is None:
        return None
    return _signed_upload(state, match["upload_id"], parse_qs(parts.query))


def add_media_routes(app: web.Application, state: EmulatorState) -> None:
    """Serve result images (rendered on first request, then cached) and uploads."""
    cache = ImageCache()

    async def result_image(request: web.Request) -> web.StreamResponse:
        state.calls["image"] += 1
        if huge_body_due(state, "image"):
            return await stream_huge_body(request, state)
        task = state.tasks.get(request.match_info["task_id"])
        index = int(request.match_info["index"])
        listed = task.n_images + state.settings.faults.extra_images if task else 0
        if task is None or not task.finished or task.error_msg or index >= listed:
            raise web.HTTPNotFound()
        key = request.path
        data = cache.get(key)
        if data is None:
            data = await asyncio.to_thread(
                _render_bytes, state, task, index, bool(request.match_info["mid"])
            )
            cache.put(key, data)
        return web.Response(body=data, content_type="image/jpeg")

    async def uploaded_file(request: web.Request) -> web.Response:
        state.calls["file"] += 1
        upload_id = request.match_info["upload_id"]
        if upload_id not in state.uploads:
            raise web.HTTPNotFound()
        upload = _signed_upload(state, upload_id, parse_qs(request.query_string))
        if upload is None:
            raise web.HTTPForbidden(text="signature invalid or expired")
        return web.Response(body=upload.data, content_type=upload.content_type)

    app.router.add_get(
        r"/images/{task_id:[0-9a-f-]+}_{index:\d{5}}{mid:(\.mid)?}.jpg", result_image
    )
    app.router.add_get("/files/{upload_id}", uploaded_file)


def _render_bytes(state: EmulatorState, task: GenerationTask, index: int, middle: bool) -> bytes:
    init = state.uploads.get(task.init_upload) if task.init_upload else None
    request = RenderRequest(
        model_name=task.model_name,
        prompt=task.prompt,
        neg_prompt=task.neg_prompt,
        seed=task.seed,
        size=task.size,
        index=index,
        init_image=init.data if init else None,
    )
    return encode(render(request), middle=middle)
