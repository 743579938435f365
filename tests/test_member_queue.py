"""A queue per member: `user_running` tasks at the service at once, `user_queued` more waiting.

The emulator here takes 600 s per image, so a task stays at the service until the test
finishes it there (`finish_at_service`): what waits and what runs is then decided by the
bot alone, never by how fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from bot.i18n import t
from bot.store import TaskState
from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A, MEMBER_A2, Harness
from tests.genutil import FAST_POLLING, result_of, task_id_of, wait_result
from tests.helpers import answer_text, is_ephemeral

ROOT = Path(__file__).resolve().parent.parent
HELD = {"generation_time": 600.0, "generation_noise": 0.0, "workers": 50}
FAST = 0.05
QUEUED, SUBMITTED, DELIVERED = TaskState.QUEUED, TaskState.SUBMITTED, TaskState.DELIVERED
POSITION = re.compile(r"position (\d+)")


@pytest.fixture
async def held(harness_factory) -> Harness:
    """Tasks stay at the service until finished there; the account takes 4 at once."""
    return await harness_factory(miaohua={**FAST_POLLING, "account_concurrency": 4}, emulator=HELD)


async def ask(h: Harness, prompt: str, user_id: int = MEMBER_A, locale: str = "en-US") -> str:
    """Run /imagine; return the answer (the task's status, or why it was refused)."""
    ix = await h.fake.slash(
        "imagine",
        user_id=user_id,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"prompt": prompt, "count": 1},
        locale=locale,
    )
    return await answer_text(ix)


def position_in(text: str) -> int | None:
    """The queue position an acknowledgement or status message states, if any."""
    found = POSITION.search(text)
    return int(found[1]) if found else None


async def until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 15) -> None:
    """Wait until an async condition holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.02)


async def states(h: Harness, ids: list[int]) -> list[TaskState]:
    return [(await h.bot.store.tasks.get(i)).state for i in ids]


async def until_states(h: Harness, ids: list[int], expected: list[TaskState]) -> None:
    async def reached() -> bool:
        return await states(h, ids) == expected

    await until(reached, f"tasks {ids} in states {expected}")


async def finish_at_service(h: Harness, task_id: int) -> None:
    """Make the service report a submitted task done, with its images."""
    task = await h.bot.store.tasks.get(task_id)
    assert task.state == SUBMITTED and task.service_task_id
    at_service = h.emu.state.tasks[task.service_task_id]
    at_service.status = "done"
    at_service.done_at = time.time()


async def status_shows(h: Harness, task_id: int, position: int) -> None:
    """Wait until the task's public status message states its place in line."""

    async def shown() -> bool:
        task = await h.bot.store.tasks.get(task_id)
        message = h.fake.message(task.status_message_id) if task.status_message_id else None
        return message is not None and position_in(message["content"]) == position

    await until(shown, f"the status of task {task_id} showing position {position}")


async def settings(h: Harness, sub: str, **options: object) -> str:
    ix = await h.fake.slash(
        "settings",
        subcommand=sub,
        options=options,
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
    )
    return await answer_text(ix)


async def test_tasks_beyond_the_running_limit_wait_in_line_and_all_are_delivered(held):
    h = held  # defaults: 2 running and 10 waiting per member
    answers = [await ask(h, f"fox {n}") for n in range(5)]
    ids = [task_id_of(text) for text in answers]
    # The acknowledgement says where a waiting task stands; a task that runs at once has no place.
    assert [position_in(text) for text in answers] == [None, None, 1, 2, 3], answers
    await until_states(h, ids, [SUBMITTED, SUBMITTED, QUEUED, QUEUED, QUEUED])
    for task_id, position in zip(ids[2:], [1, 2, 3], strict=True):
        await status_shows(h, task_id, position)

    # Another member is not held up behind them: the account has room, and it is used.
    other_answer = await ask(h, "a cat", user_id=MEMBER_A2)
    assert position_in(other_answer) is None
    other = task_id_of(other_answer)
    await until_states(h, [other], [SUBMITTED])
    # Its status, which its answer is, never said it waits behind the member's tasks.
    assert "is being generated" in other_answer
    assert await states(h, ids) == [SUBMITTED, SUBMITTED, QUEUED, QUEUED, QUEUED]

    # One finishes: the member's next task goes to the service, the others move up.
    await finish_at_service(h, ids[0])
    await until_states(h, ids, [DELIVERED, SUBMITTED, SUBMITTED, QUEUED, QUEUED])
    await status_shows(h, ids[3], 1)
    await status_shows(h, ids[4], 2)

    await finish_at_service(h, ids[1])
    await until_states(h, ids, [DELIVERED, DELIVERED, SUBMITTED, SUBMITTED, QUEUED])
    await status_shows(h, ids[4], 1)

    h.emu.state.settings.generation_time = FAST  # tasks submitted from now on finish alone
    for task_id in (ids[2], ids[3], other):
        await finish_at_service(h, task_id)
    await until_states(h, [*ids, other], [DELIVERED] * 6)
    assert all(len(result_of(h, task_id)) == 1 for task_id in [*ids, other])
    # Never more than two of the member's tasks were at the service at once.
    tasks = [await h.bot.store.tasks.get(i) for i in ids]
    at_service = [h.emu.state.tasks[task.service_task_id] for task in tasks]
    for task in at_service:
        overlapping = [
            other
            for other in at_service
            if other.submitted_at <= task.submitted_at < (other.done_at or float("inf"))
        ]
        assert len(overlapping) <= 2
    await h.idle()


async def test_a_member_whose_line_is_full_is_refused_with_the_numbers(held):
    h = held
    text = await settings(h, "limits", user_running=1, user_queued=2)
    assert "Tasks per member running at once" in text and "Tasks per member waiting" in text
    ids = [task_id_of(await ask(h, f"fox {n}")) for n in range(3)]
    await until_states(h, ids, [SUBMITTED, QUEUED, QUEUED])

    refused = await ask(h, "one too many")
    assert refused == t("refused.queue_full", "en-US", count=2, running=1)
    assert "2 tasks waiting" in refused and "the 1 that may run at once" in refused
    in_chinese = await ask(h, "再来一个", locale="zh-CN")
    assert in_chinese == t("refused.queue_full", "zh-CN", count=2, running=1)
    assert in_chinese != refused
    assert len(await h.bot.store.tasks.recent(GUILD_A, MEMBER_A, limit=50)) == 3  # none stored

    other = task_id_of(await ask(h, "a cat", user_id=MEMBER_A2))  # others have their own line
    await until_states(h, [other], [SUBMITTED])

    # Once one of them starts, there is room again.
    await finish_at_service(h, ids[0])
    await until_states(h, ids, [DELIVERED, SUBMITTED, QUEUED])
    assert position_in(await ask(h, "room again")) == 2


async def test_a_rerun_button_beyond_the_running_limit_answers_with_the_position(held):
    h = held
    await settings(h, "limits", user_running=1)
    first = task_id_of(await ask(h, "fox"))
    await until_states(h, [first], [SUBMITTED])
    await finish_at_service(h, first)
    result = await wait_result(h, first)
    running = task_id_of(await ask(h, "another fox"))
    await until_states(h, [running], [SUBMITTED])

    ix = await h.fake.click(
        result, f"mh:rerun:{first}", user_id=MEMBER_A, guild_id=GUILD_A, channel_id=CH_A
    )
    text = await answer_text(ix)
    assert is_ephemeral(ix)
    rerun = task_id_of(text)
    assert text.startswith(f"Accepted as task #{rerun}. It waits in line at position 1"), text
    assert await states(h, [running, rerun]) == [SUBMITTED, QUEUED]


async def test_no_waiting_line_refuses_beyond_the_running_tasks(held):
    h = held
    await settings(h, "limits", user_running=1, user_queued=0)
    first = task_id_of(await ask(h, "fox"))
    await until_states(h, [first], [SUBMITTED])
    assert await ask(h, "fox again") == t("refused.user_busy", "en-US", count=1)


async def test_limits_set_by_command_persist_and_hold_across_a_restart(held):
    h = held
    await settings(h, "limits", user_running=1, user_queued=3)
    first, second = [task_id_of(await ask(h, f"fox {n}")) for n in range(2)]
    await until_states(h, [first, second], [SUBMITTED, QUEUED])

    await h.restart()
    shown = await settings(h, "show")
    assert "Tasks per member running at once\n1" in shown, shown
    assert "Tasks per member waiting in line\n3" in shown, shown
    saved = await h.bot.store.settings.get(GUILD_A)
    assert (saved.user_running, saved.user_queued) == (1, 3)
    # The dispatcher has run since the restart (another member's task went through), yet the
    # member's second task still waits for the first: the limit held.
    other = task_id_of(await ask(h, "a cat", user_id=MEMBER_A2))
    await until_states(h, [other], [SUBMITTED])
    assert await states(h, [first, second]) == [SUBMITTED, QUEUED]
    assert h.bot.generation.queue_position(second) == 1

    # Raising the limit lets the waiting task start, with nothing finished.
    third = task_id_of(await ask(h, "fox 2"))
    await settings(h, "limits", user_running=2)
    await until_states(h, [first, second, third], [SUBMITTED, SUBMITTED, QUEUED])

    h.emu.state.settings.generation_time = FAST
    for task_id in (first, second, other):
        await finish_at_service(h, task_id)
    await until_states(h, [first, second, third, other], [DELIVERED] * 4)
    await h.idle()


def _check_config(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(f'[discord]\ntoken = "check-config-token"\n{text}')
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOHUA_BOT_")}
    env["PYTHONPATH"] = str(ROOT)  # the code of this tree, whatever is installed
    return subprocess.run(
        [sys.executable, "-m", "bot", "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )


@pytest.mark.slow
def test_the_old_setting_user_concurrency_is_read_as_user_running_with_a_warning(tmp_path):
    result = _check_config(tmp_path, "[limits]\nuser_concurrency = 3\n")
    assert result.returncode == 0, result.stderr
    assert '"user_running": 3' in result.stdout and "user_concurrency" not in result.stdout
    assert result.stderr.strip() == (
        "miaohua-bot: warning: setting limits.user_concurrency is deprecated: "
        "it was read as limits.user_running; rename it"
    )

    both = _check_config(tmp_path, "[limits]\nuser_concurrency = 3\nuser_running = 4\n")
    assert both.returncode == 2
    assert "user_concurrency is the old name of user_running: set only user_running" in (
        both.stderr
    )


@pytest.mark.slow
def test_run_logs_the_old_setting_name_as_a_warning_at_start(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIAOHUA_BOT_")}
    env.update(PYTHONPATH=str(ROOT), MIAOHUA_BOT_LIMITS__USER_CONCURRENCY="3")
    # No token: `run` stops right after start-up, having logged what it read.
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 2
    (warning,) = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert warning.endswith(
        "setting limits.user_concurrency is deprecated: it was read as limits.user_running; "
        "rename it"
    )
