"""Admission control: the checks a request passes before it is persisted and queued.

Blocked words match case-insensitively as substrings, so "cat" also blocks "cats" and
"concatenate"; moderators list the stems they mean. The daily quota counts images (a
request for four charges four) per user per UTC day.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta

from bot.jobs.errors import (
    BlockedWord,
    ChannelNotAllowed,
    PromptTooLong,
    QueueFull,
    QuotaExceeded,
    StyledPromptTooLong,
    UserBusy,
)
from bot.jobs.models import GenerationRequest, Limits
from bot.store import Store


def utc_day(now: float) -> str:
    """Return the UTC calendar day of an epoch time as 'YYYY-MM-DD'."""
    return datetime.fromtimestamp(now, UTC).date().isoformat()


def next_utc_midnight(now: float) -> float:
    """Return the epoch time of the next UTC midnight after `now`."""
    day = datetime.fromtimestamp(now, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def find_blocked_word(text: str, words: Iterable[str]) -> str | None:
    """Return the first blocked word contained in `text` (case-insensitive), or None."""
    folded = text.casefold()
    for word in words:
        stripped = word.strip()
        if stripped and stripped.casefold() in folded:
            return stripped
    return None


def check_request(request: GenerationRequest, limits: Limits) -> None:
    """Raise a `Refused` subclass if the request breaks a rule that needs no storage."""
    if limits.allowed_channels and request.channel_id not in limits.allowed_channels:
        raise ChannelNotAllowed(channel_id=request.channel_id)
    if len(request.prompt) > limits.prompt_length and request.style is not None:
        # Name the style: the member's own words may be short, the style's text made it long.
        raise StyledPromptTooLong(
            style=request.style, length=len(request.prompt), limit=limits.prompt_length
        )
    if len(request.prompt) > limits.prompt_length:
        raise PromptTooLong(length=len(request.prompt), limit=limits.prompt_length)
    word = find_blocked_word(f"{request.prompt}\n{request.negative_prompt}", limits.blocked_words)
    if word is not None:
        raise BlockedWord(word=word)


def member_line(limits: Limits) -> int | None:
    """How many unfinished tasks a member may have (None: no limit).

    A member may have `user_running` tasks at the service and `user_queued` more waiting.
    Their unfinished tasks are counted together: which of them are at the service at a
    given moment also depends on the other members and the account, not on this member.
    """
    if limits.user_running is None or limits.user_queued is None:
        return None
    return limits.user_running + limits.user_queued


def line_full(limits: Limits) -> UserBusy | QueueFull:
    """The refusal of a member whose line is full: `UserBusy` when none may wait."""
    assert limits.user_running is not None and limits.user_queued is not None
    if limits.user_queued == 0:
        return UserBusy(count=limits.user_running)
    return QueueFull(count=limits.user_queued, running=limits.user_running)


async def check_member_queue(store: Store, request: GenerationRequest, limits: Limits) -> None:
    """Raise `QueueFull` (`UserBusy` when none may wait) when the member's line is full."""
    line = member_line(limits)
    if line is None:
        return
    if await store.tasks.count_active(request.guild_id, request.user_id) >= line:
        raise line_full(limits)


async def take_quota(
    store: Store,
    request: GenerationRequest,
    limits: Limits,
    *,
    now: float,
    line: int | None = None,
) -> str | None:
    """Count the request's images against the daily quota; return the day charged.

    None when there is no quota. The increment is atomic and returns the new count, so of
    two concurrent requests competing for the last images exactly one gets them. With a
    `line` (see `member_line`), the same statement first checks the member's line, and
    charges nothing when it is full.
    """
    if limits.daily_quota is None:
        return None
    day = utc_day(now)
    images = max(1, request.count)
    if line is None:
        count = await store.usage.increment(request.guild_id, request.user_id, day, images)
    else:
        charged = await store.usage.increment_unless_busy(
            request.guild_id, request.user_id, day, images, busy_at=line
        )
        if charged is None:
            raise line_full(limits)
        count = charged
    if count > limits.daily_quota:
        await store.usage.increment(request.guild_id, request.user_id, day, -images)
        raise QuotaExceeded(count=limits.daily_quota, resets_at=int(next_utc_midnight(now)))
    return day


async def refund_quota(store: Store, request: GenerationRequest, day: str | None) -> None:
    """Give back the images of a request charged to the daily quota on `day`."""
    if day is not None:
        await store.usage.increment(request.guild_id, request.user_id, day, -max(1, request.count))


async def admit(
    store: Store,
    request: GenerationRequest,
    limits: Limits,
    *,
    wall_clock: Callable[[], float] = time.time,
) -> str | None:
    """Run every admission check and charge the quota; return the day charged."""
    check_request(request, limits)
    if limits.daily_quota is None:
        await check_member_queue(store, request, limits)
        return None
    # The member's line and the quota in one round trip: the line first, as on its own.
    return await take_quota(store, request, limits, now=wall_clock(), line=member_line(limits))
