"""A change notifier that lets tests wait for state the fake reaches asynchronously."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Changes:
    """Wake waiters whenever the fake's recorded state changes."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()

    async def notify(self) -> None:
        """Tell every waiter to re-check its condition."""
        async with self._cond:
            self._cond.notify_all()

    async def wait(
        self,
        check: Callable[[], T | None],
        timeout: float,
        what: str,
    ) -> T:
        """Return the first non-None result of `check`, re-evaluated after each change."""
        async with self._cond:
            try:
                async with asyncio.timeout(timeout):
                    while (result := check()) is None:
                        await self._cond.wait()
            except TimeoutError:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what}") from None
        return result
