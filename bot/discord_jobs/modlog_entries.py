"""What a moderation log entry shows: who asked for what, where, and what became of it.

Entries are read by moderators, so they carry the member's words in full (clipped to fit),
but inert: a prompt with mentions, links or markdown is shown inside a code block.
"""

from __future__ import annotations

import datetime

import discord

from bot.discord_jobs import render
from bot.display import DESCRIPTION_MAX, FIELD_VALUE_MAX, fit_embed, in_code
from bot.i18n import t
from bot.jobs import GenerationRequest
from bot.store import Task

ACCEPTED_COLOUR = discord.Colour(0x6C5CE7)
REFUSED_COLOUR = discord.Colour(0xD63031)
DELETED_COLOUR = discord.Colour(0x636E72)
# A fence with room for the text inside it; the text cannot close it (see `code_block`).
_FENCE = "```"


def code_block(text: str, limit: int) -> str:
    """`text` in a code block of at most `limit` characters: mentions and markdown stay inert.

    A backtick is replaced by a look-alike so the member's text can never end the block.
    """
    room = max(1, limit - 2 * len(_FENCE) - 2)
    body = text.replace("`", "ˋ").strip() or "-"
    if len(body) > room:
        body = body[: room - 1] + "…"
    return f"{_FENCE}\n{body}\n{_FENCE}"


def _when(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC)


def accepted_embed(task: Task, locale: str, *, link: str | None, is_result: bool) -> discord.Embed:
    """The entry of an accepted request; `link` opens its status message or its result."""
    embed = discord.Embed(
        title=t("modlog.accepted.title", locale, id=task.id),
        colour=ACCEPTED_COLOUR,
        timestamp=_when(task.created_at),
    )
    embed.add_field(name=t("modlog.field.requester", locale), value=f"<@{task.user_id}>")
    embed.add_field(name=t("modlog.field.channel", locale), value=f"<#{task.channel_id}>")
    embed.add_field(name=t("modlog.field.model", locale), value=f"`{in_code(task.model)}`")
    if task.style:
        embed.add_field(name=t("modlog.field.style", locale), value=f"`{in_code(task.style)}`")
    if task.parent_id:
        origin = "modlog.origin.remix" if task.origin == "remix" else "modlog.origin.rerun"
        embed.add_field(
            name=t("modlog.field.origin", locale), value=t(origin, locale, id=task.parent_id)
        )
    if task.negative_prompt:
        embed.add_field(
            name=t("modlog.field.negative_prompt", locale),
            value=code_block(task.negative_prompt, FIELD_VALUE_MAX),
            inline=False,
        )
    if link is None:
        shown_link = t("modlog.link.none", locale)
    else:
        label = t("modlog.link.result" if is_result else "modlog.link.status", locale)
        shown_link = f"[{label}]({link})"
    embed.add_field(name=t("modlog.field.link", locale), value=shown_link, inline=False)
    embed.description = code_block(task.prompt, DESCRIPTION_MAX)
    return fit_embed(embed)


def refused_embed(request: GenerationRequest, word: str, locale: str, now: float) -> discord.Embed:
    """The entry of a request refused because its prompt contains a blocked word."""
    embed = discord.Embed(
        title=t("modlog.refused.title", locale), colour=REFUSED_COLOUR, timestamp=_when(now)
    )
    embed.add_field(name=t("modlog.field.requester", locale), value=f"<@{request.user_id}>")
    embed.add_field(name=t("modlog.field.channel", locale), value=f"<#{request.channel_id}>")
    embed.add_field(name=t("modlog.field.word", locale), value=f"`{in_code(word)}`")
    if request.negative_prompt:
        embed.add_field(
            name=t("modlog.field.negative_prompt", locale),
            value=code_block(request.negative_prompt, FIELD_VALUE_MAX),
            inline=False,
        )
    embed.description = code_block(request.prompt, DESCRIPTION_MAX)
    return fit_embed(embed)


def removed_embed(
    entry: discord.Embed, moderator_id: int, locale: str, now: float, *, cancelled: bool
) -> discord.Embed:
    """The entry once a moderator deleted the result (or cancelled the task): greyed, saying
    who did it and when."""
    embed = entry.copy()
    embed.colour = DELETED_COLOUR
    embed.add_field(
        name=t("modlog.field.cancelled" if cancelled else "modlog.field.deleted", locale),
        value=t("modlog.removed_by", locale, user=f"<@{moderator_id}>", time=f"<t:{int(now)}:f>"),
        inline=False,
    )
    return fit_embed(embed)


def jump_url(task: Task, message_id: int) -> str:
    """The link to a message in the task's channel."""
    return render.jump_url(task.guild_id, task.channel_id, message_id)
