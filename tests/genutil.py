"""Helpers shared by the generation, results and status tests."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.conftest import CH_A, GUILD_A, MEMBER_A, Harness
from tests.helpers import answer, message_text

# Poll the emulator quickly so results arrive in a fraction of a second.
FAST_POLLING = {"poll_strategy": "fixed", "poll_interval": 0.05}


def result_messages(harness: Harness, channel_id: int = CH_A) -> list[dict[str, Any]]:
    """Result messages (those with buttons) currently in a channel."""
    return [m for m in harness.fake.channel_messages(channel_id) if m.get("components")]


def is_result_of(message: dict[str, Any], task_id: int) -> bool:
    """Whether a message is the posted result of a task (it carries the task's buttons)."""
    ids = [c.get("custom_id") for row in message.get("components") or [] for c in row["components"]]
    return f"mh:rerun:{task_id}" in ids


def result_of(harness: Harness, task_id: int, channel_id: int = CH_A) -> list[dict[str, Any]]:
    """The result messages of one task in a channel."""
    return [m for m in result_messages(harness, channel_id) if is_result_of(m, task_id)]


async def wait_result(
    harness: Harness,
    task_id: int,
    channel_id: int = CH_A,
    timeout: float = 10,
) -> dict[str, Any]:
    """Wait until the result of a task is posted in the channel."""
    return await harness.fake.wait_for_message(
        channel_id,
        lambda m: is_result_of(m, task_id),
        timeout,
    )


async def imagine(
    harness: Harness,
    prompt: str = "a red fox in the snow",
    *,
    user_id: int = MEMBER_A,
    guild_id: int = GUILD_A,
    channel_id: int = CH_A,
    **options: Any,
):
    """Run /imagine and return the fake interaction."""
    return await harness.fake.slash(
        "imagine",
        user_id=user_id,
        guild_id=guild_id,
        channel_id=channel_id,
        options={"prompt": prompt, **options},
    )


# A command's answer accepting a task: its public status ("⏳ Task #N is queued...", the
# status message itself), or the private note of a task whose result goes by DM (or whose
# answer had to be deferred).
_ACCEPTED = re.compile(r"^(?:Accepted as task|⏳ Task|🎨 Task|🕒 Task) #\d+")


def is_accepted(text: str) -> bool:
    """Whether a command's (English) answer says its task was accepted."""
    return _ACCEPTED.match(text) is not None


async def set_preferences(
    harness: Harness, *, user_id: int = MEMBER_A, **options: Any
) -> dict[str, Any]:
    """Run `/preferences set` as a member of guild A; return its answer."""
    ix = await harness.fake.slash(
        "preferences",
        subcommand="set",
        user_id=user_id,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options=options,
    )
    return await answer(ix)


def task_id_of(text: str) -> int:
    """The task number in an answer accepting a task ('Task #N ...', 'Accepted as task #N')."""
    return int(text.split("#", 1)[1].split(".", 1)[0].split()[0])


def attachments_total(message: dict[str, Any]) -> int:
    """Bytes attached to a message."""
    return sum(a["size"] for a in message.get("attachments") or [])


def text_of(message: dict[str, Any]) -> str:
    """Visible text of a message."""
    return message_text(message)


async def eventually(check, timeout: float = 5.0):
    """Poll `check()` until it returns something truthy, and return that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)
