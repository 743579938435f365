"""Keep trying a store operation while the database refuses it, waiting longer each time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.store.errors import StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")

FIRST_DELAY = 0.2
MAX_DELAY = 5.0


async def until_stored(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    first_delay: float = FIRST_DELAY,
    max_delay: float = MAX_DELAY,
) -> T:
    """Run `operation` until the store takes it and return its result.

    Only `StoreUnavailable` is retried (nothing was written, so trying again is safe);
    other errors propagate. The wait doubles from `first_delay` up to `max_delay`, so a
    disk that recovers is noticed within `max_delay` seconds. Cancellation stops it.
    """
    delay = first_delay
    attempts = 0
    while True:
        try:
            result = await operation()
        except StoreUnavailable as exc:
            attempts += 1
            if attempts == 1:
                log.warning("could not store %s (%s); retrying until it can", what, exc.cause)
            await asyncio.sleep(delay)
            delay = min(max_delay, delay * 2)
            continue
        if attempts:
            log.info("stored %s after %d failed attempt(s)", what, attempts)
        return result
