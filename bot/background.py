"""Fire-and-forget coroutines that are kept referenced until done and never fail silently,
and the two ways a stop ends tasks: cancelled at once, or given a grace period first."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Iterator
from typing import Any


class Background:
    """A set of background tasks whose exceptions are logged (with `what` in the message)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self._what = what
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `coro` in the background; a failure is logged, never lost."""
        task = asyncio.create_task(self._guarded(coro))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)
        return task

    async def _guarded(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            self._log.exception("%s failed", self._what)

    async def cancel(self) -> None:
        """Cancel the tasks still running and wait until they have ended."""
        await cancel_and_wait(self._tasks)

    def __iter__(self) -> Iterator[asyncio.Task[None]]:
        return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended; what they raise is not raised here."""
    ending = list(tasks)
    for task in ending:
        task.cancel()
    await asyncio.gather(*ending, return_exceptions=True)


async def finish_or_cancel(tasks: Iterable[asyncio.Future[Any]], grace: float) -> int:
    """Wait up to `grace` seconds for `tasks` to end, then cancel the rest and wait for them;
    return how many had to be cancelled."""
    running = list(tasks)
    if not running:
        return 0
    _, late = await asyncio.wait(running, timeout=grace)
    await cancel_and_wait(late)
    return len(late)
