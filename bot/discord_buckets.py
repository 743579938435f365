"""One Discord request in flight per rate-limit bucket.

discord.py counts what is left of a bucket's window from the headers of each answer, and
that count goes wrong when several requests of one bucket are in flight at once: an answer
read after the window reset sets the count from the header although others already left
in the new window, a reset counts only the requests still in flight, and a request retried
after a 429 is sent outside the count. A burst (a dozen status edits in one channel) then
meets 429s window after window, each retry taking a place the count gave to another.
Sent one at a time per bucket, each request leaves after the previous one's answer, so
discord.py's count is Discord's. Nothing gets slower: Discord's per-channel limits (5 per
5 s) are far below what one request at a time can send.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import discord

T = TypeVar("T")


@dataclass(slots=True)
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # requests holding or waiting for the lock


class BucketGates:
    """A lock per bucket, kept only while a request holds or waits for it (interaction
    routes have a bucket per interaction; keeping them would grow without end)."""

    def __init__(self) -> None:
        self._gates: dict[str, _Gate] = {}

    def __len__(self) -> int:
        """Buckets with a request in flight or waiting."""
        return len(self._gates)

    async def run(self, key: str, request: Callable[[], Awaitable[T]]) -> T:
        """Make `request` once no other request of bucket `key` is in flight."""
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _Gate()
        gate.users += 1
        try:
            async with gate.lock:
                return await request()
        finally:
            gate.users -= 1
            if not gate.users:
                del self._gates[key]


def bucket_key(route: discord.http.Route) -> str:
    """The bucket discord.py counts a request in: its route and major parameters (routes
    sharing a bucket under different paths are rare among the bot's requests)."""
    return f"{route.key}:{route.major_parameters}"


def one_request_per_bucket(http: discord.http.HTTPClient) -> BucketGates:
    """Make discord.py's REST requests wait for the bucket's previous one (see the module)."""
    inner = http.request
    gates = BucketGates()

    async def request(route: discord.http.Route, **kwargs: Any) -> Any:
        return await gates.run(bucket_key(route), functools.partial(inner, route, **kwargs))

    # An instance attribute: discord.py's own methods call `self.request`.
    setattr(http, "request", request)  # noqa: B010
    return gates
