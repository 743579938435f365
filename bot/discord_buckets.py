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

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import discord

from bot.jobs.locks import KeyedLocks

T = TypeVar("T")


class BucketGates(KeyedLocks[str]):
    """A lock per bucket, kept only while a request holds or waits for it (interaction
    routes have a bucket per interaction; keeping them would grow without end)."""

    async def run(self, key: str, request: Callable[[], Awaitable[T]]) -> T:
        """Make `request` once no other request of bucket `key` is in flight."""
        async with self.hold(key):
            return await request()


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
