"""Services started in one order and stopped in the reverse one, whatever fails on the way."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Action = Callable[[], Awaitable[None]]


async def nothing() -> None:
    """The start or stop of a step that has nothing to do at that end."""


class ShuttingDown(Exception):
    """A step was asked to start after stopping began."""

    def __init__(self, name: str) -> None:
        super().__init__(f"not starting {name}: shutting down")


@dataclass(frozen=True)
class Step:
    """One service's place in the lifecycle: how it starts and how it stops."""

    name: str
    start: Action
    stop: Action


class Lifecycle:
    """Runs steps' starts in order; `stop()` undoes the started ones in reverse.

    Only steps whose start completed are stopped, so a bot that fails half-way through
    starting (or is closed before it started) stops exactly what it started. A failing stop
    is logged and the remaining stops still run: the database must be closed even if
    flushing a status message failed. Once stopping has begun (a signal while the bot is
    still starting), nothing more starts.
    """

    def __init__(self) -> None:
        self._started: list[Step] = []
        self._stopping = False

    @property
    def started(self) -> list[str]:
        """The names of the steps that are running, in start order."""
        return [step.name for step in self._started]

    async def start(self, step: Step) -> None:
        """Start `step` (after every step started before it); raises what its start raises."""
        self._refuse_when_stopping(step)
        if any(running.name == step.name for running in self._started):
            raise ValueError(f"{step.name} is already started")
        await step.start()
        self._started.append(step)
        log.debug("started %s", step.name)
        if self._stopping:  # stop() began while this step was starting: undo it too
            await self.stop()
            raise ShuttingDown(step.name)

    def _refuse_when_stopping(self, step: Step) -> None:
        if self._stopping:
            raise ShuttingDown(step.name)

    async def stop(self) -> None:
        """Stop the started steps, last started first; each stop runs even if another failed."""
        self._stopping = True
        while self._started:
            step = self._started.pop()
            try:
                await step.stop()
            except Exception:
                log.exception("stopping %s failed", step.name)
            else:
                log.debug("stopped %s", step.name)
