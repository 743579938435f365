"""The statements a /imagine runs before it is answered, counted through the real bot.

Each statement is a round trip the member's answer waits for: a hop to aiosqlite's thread
and back (under load, a whole turn of the event loop each), or a request to PostgreSQL.
What a command reads again and again (the guild's settings and trained models, the
member's preferences) is kept in memory by its repository; what is left is the admission
(the member's unfinished tasks and the daily quota, in one statement) and the task itself.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from bot.store.database import Database, Row
from tests.conftest import CH_A, GUILD_A, MEMBER_A, MEMBER_A2, Harness
from tests.genutil import FAST_POLLING, imagine, is_accepted, set_preferences, task_id_of
from tests.helpers import answer_text

pytestmark = pytest.mark.backends()

# What a statement does, in its first words: "INSERT INTO tasks", "SELECT * FROM styles".
_KIND = re.compile(r"^(SELECT .*? FROM \w+|INSERT INTO \w+|UPDATE \w+|DELETE FROM \w+)")

PREFERENCES_READ = "SELECT * FROM member_preferences"
GUILD_READS = ["SELECT * FROM guild_settings", "SELECT * FROM trained_models"]
# The admission (the member's unfinished tasks counted and their daily quota charged, in
# one statement) and the new task.
ADMISSION_AND_TASK = ["INSERT INTO daily_usage", "INSERT INTO tasks"]


def kind_of(sql: str) -> str:
    """A statement's first words, up to the table it reads or writes."""
    text = " ".join(sql.split())
    match = _KIND.match(text)
    return match[1] if match else text


class StatementLog:
    """Records every statement the bot's database runs, with the asyncio task running it."""

    def __init__(self, db: Database) -> None:
        self.entries: list[tuple[asyncio.Task[Any] | None, str]] = []
        fetch_all, execute, execute_many = db.fetch_all, db.execute, db.execute_many

        async def logged_fetch_all(sql: str, params: Iterable[Any] = ()) -> list[Row]:
            self._add(sql)
            return await fetch_all(sql, params)

        async def logged_execute(sql: str, params: Iterable[Any] = ()) -> int:
            self._add(sql)
            return await execute(sql, params)

        async def logged_execute_many(sql: str, rows: Iterable[Sequence[Any]]) -> None:
            self._add(sql)
            await execute_many(sql, rows)

        # On the instance: the repositories all call the one Database object.
        db.fetch_all = logged_fetch_all  # type: ignore[method-assign]
        db.execute = logged_execute  # type: ignore[method-assign]
        db.execute_many = logged_execute_many  # type: ignore[method-assign]

    def _add(self, sql: str) -> None:
        self.entries.append((asyncio.current_task(), kind_of(sql)))

    def run_by(self, task: asyncio.Task[Any]) -> list[str]:
        """The statements `task` ran, in order."""
        return [kind for runner, kind in self.entries if runner is task]


class CommandPath:
    """The statements of each /imagine, from its handler's start to its answer.

    A command's handler runs in one asyncio task, which is also the one that calls the
    generation service's `enqueue`: the statements that task ran are the command's.
    Submission, polling and delivery run in tasks of their own, after the answer.
    """

    def __init__(self, h: Harness) -> None:
        self.log = StatementLog(h.bot.store.db)
        self.handlers: list[asyncio.Task[Any]] = []
        service = h.bot.generation
        enqueue = service.enqueue

        async def noted_enqueue(*args: Any, **kwargs: Any) -> Any:
            handler = asyncio.current_task()
            assert handler is not None
            self.handlers.append(handler)
            return await enqueue(*args, **kwargs)

        service.enqueue = noted_enqueue

    async def imagine(self, h: Harness, **options: Any) -> tuple[int, list[str]]:
        """Run one /imagine; its task id and the statements its answer waited for."""
        text = await answer_text(await imagine(h, **options))
        assert is_accepted(text), text
        await h.settled()
        return task_id_of(text), self.log.run_by(self.handlers[-1])


@pytest.fixture
async def gen(harness_factory: Any) -> Harness:
    return await harness_factory(miaohua=FAST_POLLING)


async def test_imagine_runs_only_the_admission_and_the_insert_once_its_reads_are_kept(
    gen: Harness,
) -> None:
    path = CommandPath(gen)
    # The guild's first command reads its settings and trained models, a member's first
    # command their preferences; later ones find them in memory.
    _, first = await path.imagine(gen, count=1)
    assert first == [PREFERENCES_READ, *GUILD_READS, *ADMISSION_AND_TASK]
    _, again = await path.imagine(gen, count=1)
    assert again == ADMISSION_AND_TASK
    # Another member's preferences are their own.
    _, other = await path.imagine(gen, count=1, user_id=MEMBER_A2)
    assert other == [PREFERENCES_READ, *ADMISSION_AND_TASK]


async def test_a_preference_changed_applies_at_once_without_another_read(gen: Harness) -> None:
    path = CommandPath(gen)
    await path.imagine(gen, count=1)
    await set_preferences(gen, count=3)
    task_id, statements = await path.imagine(gen)  # no count: the member's preference
    assert statements == ADMISSION_AND_TASK  # what the change stored is what is kept
    task = await gen.bot.store.tasks.get(task_id)
    assert task is not None and task.count == 3
    ix = await gen.fake.slash(
        "preferences", subcommand="clear", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    await answer_text(ix)
    task_id, statements = await path.imagine(gen)
    assert statements == [PREFERENCES_READ, *ADMISSION_AND_TASK]  # cleared: read afresh
    task = await gen.bot.store.tasks.get(task_id)
    assert task is not None and task.count == 2  # the service form's default
