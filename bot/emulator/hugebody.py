"""The huge-body fault: an answer of any size, made up chunk by chunk while it is sent."""

from __future__ import annotations

import logging

from aiohttp import web

from bot.emulator.state import EmulatorState

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
HEAD, TAIL = b'{"state": "pending", "padding": "', b'"}'


def huge_body_due(state: EmulatorState, endpoint: str) -> bool:
    """Whether this endpoint ("image" for result images) answers with a huge body instead."""
    faults = state.settings.faults
    return faults.huge_body_bytes > 0 and endpoint in faults.huge_body_endpoints


async def stream_huge_body(request: web.Request, state: EmulatorState) -> web.StreamResponse:
    """Stream a JSON-looking body of `huge_body_bytes`, never holding more than one chunk."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()  # no Content-Length: the client cannot tell upfront
    await response.prepare(request)
    filler = b"x" * CHUNK
    left = max(0, state.settings.faults.huge_body_bytes - len(HEAD) - len(TAIL))
    try:
        await _send(response, state, HEAD)
        while left > 0:
            piece = filler if left >= len(filler) else filler[:left]
            await _send(response, state, piece)
            left -= len(piece)
        await _send(response, state, TAIL)
        await response.write_eof()
    except ConnectionError:
        # What a careful client does: stop reading and hang up.
        state.streams_cut += 1
        log.info("client hung up on a huge body (%d bytes sent in all)", state.streamed_bytes)
    return response


async def _send(response: web.StreamResponse, state: EmulatorState, data: bytes) -> None:
    await response.write(data)
    state.streamed_bytes += len(data)
