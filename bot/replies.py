"""Sending replies to interactions whatever state their response is in."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import discord

from bot.display import CONTENT_MAX, clip

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()

# How old an interaction may get before it is deferred ("thinking..."), counted from its
# creation at Discord (its snowflake), not from when its handler started: most commands
# answer well within it, in one request; a slow one (a form to fetch, a busy store), or one
# that waited in the queue of a lagging bot, is still acknowledged inside Discord's 3-second
# window. Deferring every command after a few milliseconds instead would double the
# requests of a bot that is already behind, and put it further behind.
ANSWER_WITHIN = 1.0
_LATE_DEFER = "miaohua.late_defer"  # the interaction's extras: its pending `_LateDefer`


class _LateDefer:
    """Defers an interaction unless it is answered first.

    A timer, not a task: most commands answer before it fires, and a cancelled timer costs
    less than a task created, scheduled and cancelled for every command of a busy bot.
    """

    def __init__(
        self, interaction: discord.Interaction[discord.Client], delay: float, ephemeral: bool
    ) -> None:
        self._interaction = interaction
        self._ephemeral = ephemeral
        self.task: asyncio.Task[None] | None = None  # the deferral's request, once it fired
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)

    def _fire(self) -> None:
        self.task = asyncio.create_task(self._send())
        self.task.add_done_callback(_seen)

    async def _send(self) -> None:
        response = self._interaction.response
        if not response.is_done():
            await response.defer(ephemeral=self._ephemeral, thinking=True)

    async def settle(self) -> None:
        """Cancel the deferral if it is not sent yet, else wait for it to be."""
        if self.task is None:
            self._timer.cancel()  # not fired yet: it sends nothing
            return
        # Its failure is the answer's too: the answer sent next meets and reports it.
        with contextlib.suppress(discord.HTTPException):
            await self.task


def _seen(task: asyncio.Task[None]) -> None:
    # A deferral nobody waited for (the command ended without answering) fails quietly:
    # the member sees what they would without it, an unanswered interaction.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("deferring an interaction failed: %s", exc)


def defer_unless_answered(
    interaction: discord.Interaction[discord.Client],
    *,
    within: float | None = None,
    ephemeral: bool = True,
) -> None:
    """Defer the interaction only if it is not answered by the time it is `within` seconds
    old (default `ANSWER_WITHIN`).

    A command that usually answers at once then costs one request to Discord instead of
    two (a deferral, then a follow-up); a slow one is still acknowledged in time.
    """
    if not interaction.response.is_done() and _LATE_DEFER not in interaction.extras:
        window = ANSWER_WITHIN if within is None else within
        delay = defer_delay(window, age=interaction_age(interaction))
        interaction.extras[_LATE_DEFER] = _LateDefer(interaction, delay, ephemeral)


def interaction_age(interaction: discord.Interaction[discord.Client]) -> float:
    """Seconds since Discord created the interaction (by the clocks of both sides)."""
    return (discord.utils.utcnow() - interaction.created_at).total_seconds()


def defer_delay(window: float, *, age: float) -> float:
    """How long to wait before deferring an interaction `age` seconds old.

    Never longer than the window itself: a local clock behind Discord's (a negative age)
    must not push the deferral past Discord's deadline.
    """
    return min(window, max(0.0, window - age))


async def _settle(interaction: discord.Interaction[discord.Client]) -> None:
    late: _LateDefer | None = interaction.extras.pop(_LATE_DEFER, None)
    if late is not None:
        await late.settle()


async def reply(
    interaction: discord.Interaction[discord.Client],
    content: str | None = None,
    *,
    embed: discord.Embed | None = None,
    view: discord.ui.View | None = None,
    ephemeral: bool = True,
) -> None:
    """Answer an interaction: the first response if it is still open, else a follow-up.

    Content longer than Discord accepts is clipped rather than refused as a whole.
    """
    await _settle(interaction)
    if content is not None:
        content = clip(content, CONTENT_MAX)
    kwargs: dict[str, Any] = {
        "content": content,
        "ephemeral": ephemeral,
        "allowed_mentions": NO_MENTIONS,
    }
    if embed is not None:
        kwargs["embed"] = embed
    if view is not None:
        kwargs["view"] = view
    if interaction.response.is_done():
        await interaction.followup.send(**kwargs)
    else:
        await interaction.response.send_message(**kwargs)


async def answer_publicly(
    interaction: discord.Interaction[discord.Client], content: str
) -> int | None:
    """Answer with a message the whole channel sees, as the interaction's first response,
    and return its id; None, sending nothing, when the interaction was already answered or
    deferred (a deferral's follow-ups keep its privacy, so none of them could be public)."""
    await _settle(interaction)
    if interaction.response.is_done():
        return None
    sent = await interaction.response.send_message(
        clip(content, CONTENT_MAX), allowed_mentions=NO_MENTIONS
    )
    return sent.message_id


async def defer(
    interaction: discord.Interaction[discord.Client], *, ephemeral: bool = True
) -> None:
    """Acknowledge within Discord's 3-second window before slow work (no-op when already done)."""
    await _settle(interaction)
    if not interaction.response.is_done():
        await interaction.response.defer(ephemeral=ephemeral, thinking=True)
