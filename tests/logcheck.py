"""Fail a test on ERROR log records from discord.py or the bot, or on a crashed bot task.

discord.py logs exceptions raised in commands, views and listeners instead of raising them,
and `bot.start()` can die with nobody awaiting it, so tests must look for both explicitly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

log = logging.getLogger(__name__)

WATCHED_LOGGERS = ("discord", "bot")


class LogCheck(logging.Handler):
    """Collect ERROR+ records and watch tasks; `verify()` raises if anything went wrong."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []
        self.tasks: list[asyncio.Task[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Remember an error record."""
        self.records.append(record)

    def watch(self, task: asyncio.Task[Any]) -> asyncio.Task[Any]:
        """Fail the test if this task (typically `bot.start()`) ends with an exception."""
        self.tasks.append(task)
        return task

    def ignore(self, predicate: Callable[[logging.LogRecord], bool]) -> None:
        """Drop collected records for which `predicate(record)` is true (expected errors)."""
        self.records = [r for r in self.records if not predicate(r)]

    def problems(self) -> list[str]:
        """Describe every error record and crashed task seen so far."""
        found = [f"{r.name} {r.levelname}: {self._text(r)}" for r in self.records]
        for task in self.tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                found.append(f"task {task.get_name()} crashed: {task.exception()!r}")
        return found

    def verify(self) -> None:
        """Raise AssertionError listing every problem, if any."""
        problems = self.problems()
        if problems:
            raise AssertionError("errors during the test:\n" + "\n".join(problems))

    def _text(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        return text


@contextmanager
def fail_on_errors(*loggers: str) -> Iterator[LogCheck]:
    """Attach a LogCheck to the given loggers (default: discord, bot) and verify on exit."""
    check = LogCheck()
    targets = [logging.getLogger(name) for name in loggers or WATCHED_LOGGERS]
    for target in targets:
        target.addHandler(check)
    try:
        yield check
    finally:
        for target in targets:
            target.removeHandler(check)
    check.verify()


@pytest.fixture
def logcheck() -> Iterator[LogCheck]:
    """Pytest fixture: the test fails on discord/bot ERROR records or watched task crashes."""
    with fail_on_errors() as check:
        yield check
