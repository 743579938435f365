"""Texts and embeds about tasks: status lines, results, failures."""

from __future__ import annotations

import discord

from bot.discord_jobs.payload import FittedImages
from bot.display import (
    CONTENT_MAX,
    DESCRIPTION_MAX,
    FIELD_VALUE_MAX,
    clip,
    fit_embed,
    render,
    shown,
)
from bot.i18n import t, tn
from bot.jobs import FailReason
from bot.store import Task, TaskState

EMBED_COLOUR = discord.Colour(0x6C5CE7)
FIELD_MAX = FIELD_VALUE_MAX
_DETAIL_MAX = 300
_FAIL_KEYS = {reason.value: f"fail.{reason.value}" for reason in FailReason}
# Discord shows up to four embeds that share a `url` as one gallery of their images.
GALLERY_MAX = 4
# The status message is public: enough of the prompt to tell whose task it is at a glance.
_PROMPT_START_MAX = 80


def jump_url(guild_id: int | None, channel_id: int, message_id: int) -> str:
    """The link that opens a message in the Discord client."""
    return f"https://discord.com/channels/{guild_id or '@me'}/{channel_id}/{message_id}"


def result_url(task: Task, dm_channel_id: int | None = None) -> str | None:
    """The jump link to a task's result where it was posted; None when it cannot be linked.

    A result in the member's DMs opens only for them, and only with the id of their DM
    channel (not stored): places the member alone reads pass it, public places do not. A
    result a moderator removed is linked nowhere.
    """
    if not task.result_message_id or task.removed_by is not None:
        return None
    if task.delivery == "dm":
        if dm_channel_id is None:
            return None
        return jump_url(None, dm_channel_id, task.result_message_id)
    return jump_url(task.guild_id, task.channel_id, task.result_message_id)


def failure_reason(task: Task, locale: str | None) -> str:
    """Why a task failed, in words the requester can act on."""
    key = _FAIL_KEYS.get(task.error or "", "fail.unknown")
    detail = (task.error_detail or "").strip()[:_DETAIL_MAX] or "-"
    return render(key, locale, detail=detail)


def _status(task: Task, line: str) -> str:
    """A status line followed by whose task it is: the requester (never pinged: status
    messages are sent without allowed mentions) and the start of the prompt."""
    # The member's own words, which a server style may have wrapped in its own text.
    words = task.member_prompt or task.prompt
    prompt = clip(" ".join(words.split()), _PROMPT_START_MAX) or "-"
    owner = render(
        "status.line.owner", task.locale, trusted={"user": f"<@{task.user_id}>"}, prompt=prompt
    )
    return clip(f"{line}\n{owner}", CONTENT_MAX)


def queued_text(task: Task, position: int) -> str:
    """Status line of a task waiting in the bot's queue."""
    return _status(task, t("status.line.queued", task.locale, id=task.id, position=position))


def running_text(task: Task, wait_time: int | None) -> str:
    """Status line of a task at the service, with the number of tasks ahead if known."""
    if wait_time:
        return _status(task, tn("status.line.waiting", wait_time, task.locale, id=task.id))
    return _status(task, t("status.line.running", task.locale, id=task.id))


def accepted_status_text(task: Task, position: int | None) -> str:
    """Status line of a task just accepted: its place in line, or at the service."""
    return running_text(task, None) if position is None else queued_text(task, position)


def done_text(task: Task, url: str | None) -> str:
    """Status line of a finished task, linking to its result when it was posted."""
    if url is None:
        return _status(task, t("status.line.done_undelivered", task.locale, id=task.id))
    return _status(task, t("status.line.done", task.locale, id=task.id, url=url))


def sent_by_dm_text(task: Task) -> str:
    """Status line of a finished task whose result went to the requester's DMs."""
    user = {"user": f"<@{task.user_id}>"}
    return _status(task, render("status.line.sent_by_dm", task.locale, trusted=user, id=task.id))


def dm_intro(task: Task, guild_name: str) -> str:
    """The first line of a result sent by DM: where it was asked for."""
    return render(
        "delivery.dm_intro",
        task.locale,
        trusted={"channel": f"<#{task.channel_id}>"},
        id=task.id,
        guild=guild_name or "-",
    )


def dm_refused(task: Task) -> str:
    """The note on a result posted in the channel because the requester's DMs refused it."""
    return t("delivery.dm_refused", task.locale)


def cancelled_text(task: Task) -> str:
    """Status line of a cancelled task."""
    return _status(task, t("status.line.cancelled", task.locale, id=task.id))


def failed_text(task: Task) -> str:
    """Status line of a failed task."""
    reason = failure_reason(task, task.locale)
    return _status(task, t("status.line.failed", task.locale, id=task.id, reason=reason))


def failure_message(task: Task) -> str:
    """The message telling the requester (mentioned) that the task failed and why."""
    return t(
        "fail.message",
        task.locale,
        user=f"<@{task.user_id}>",
        id=task.id,
        reason=failure_reason(task, task.locale),
    )


def elapsed_seconds(task: Task) -> float | None:
    """Seconds from the request to the finished result."""
    if task.done_at is None:
        return None
    return max(0.0, task.done_at - task.created_at)


def result_embeds(
    task: Task,
    locale: str | None,
    fitted: FittedImages,
    *,
    parent_url: str | None = None,
    in_dm: bool = False,
) -> list[discord.Embed]:
    """The embeds of a result: its parameters and first image, then a gallery of the next ones.

    Discord renders embeds sharing a `url` (at most four) as one embed showing all their
    images at full resolution, so several images need no grid built by the bot. The url is
    the first image's address at the service (the title links to it). Images past the
    gallery stay attachments, which Discord shows as themselves.
    """
    embed = result_embed(task, locale, fitted, parent_url=parent_url, in_dm=in_dm)
    shown_files = fitted.files[:GALLERY_MAX]
    url = _gallery_url(task)
    if len(shown_files) < 2 or url is None:
        return [embed]
    embed.url = url
    gallery = [embed]
    for named in shown_files[1:]:
        more = discord.Embed(url=url, colour=EMBED_COLOUR)
        more.set_image(url=f"attachment://{named.filename}")
        gallery.append(more)
    return gallery


def _gallery_url(task: Task) -> str | None:
    """The url the gallery's embeds share: the first image's at the service, if http(s)."""
    url = str(task.images[0].get("large", "")) if task.images else ""
    return url if url.startswith(("http://", "https://")) else None


def result_embed(
    task: Task,
    locale: str | None,
    fitted: FittedImages | None,
    *,
    parent_url: str | None = None,
    in_dm: bool = False,
) -> discord.Embed:
    """The main embed of a result: parameters, timing, the first image and any linked images.

    `parent_url` is the jump link to the parent's result, for a rerun, remix or variation
    whose parent result message is known.

    Everything the member or the service wrote is escaped; the prompt gets what is left of
    Discord's 6,000 characters once the rest is in place.
    """
    embed = discord.Embed(title=t("result.title", locale, id=task.id), colour=EMBED_COLOUR)
    if task.negative_prompt:
        embed.add_field(
            name=t("result.negative_prompt", locale),
            value=shown(task.negative_prompt, FIELD_MAX),
            inline=False,
        )
    seed = task.seed_used if task.seed_used is not None else task.seed
    fields = {
        "result.model": task.model,
        "result.size": task.size,
        "result.seed": seed,
        "result.count": task.count,
    }
    elapsed = elapsed_seconds(task)
    if elapsed is not None:
        fields["result.elapsed"] = t("result.seconds", locale, seconds=f"{elapsed:.1f}")
    for key, value in fields.items():
        embed.add_field(name=t(key, locale), value=shown(value, FIELD_MAX) or "-", inline=True)
    if task.style:
        embed.add_field(name=t("result.style", locale), value=shown(task.style, FIELD_MAX))
    if task.parent_id:
        of = "result.remix_of" if task.origin == "remix" else "result.rerun_of"
        parent = t(of, locale, id=task.parent_id)
        if parent_url is not None:
            parent = f"[{parent}]({parent_url})"
        embed.add_field(name=t("result.parent", locale), value=parent)
    if fitted is not None and fitted.files:
        embed.set_image(url=f"attachment://{fitted.files[0].filename}")
    if fitted is not None and fitted.reduced:
        note = (
            tn("result.missing", fitted.missing, locale)
            if fitted.missing
            else t("result.reduced", locale)
        )
        embed.add_field(
            name=t("result.originals", locale),
            value=_links(note, fitted.originals),
            inline=False,
        )
    # Reactions only work on results in a channel: a result sent by DM lists none.
    footer = "result.footer_dm" if in_dm else "result.footer"
    embed.set_footer(text=t(footer, locale, id=task.id, kind=task.kind))
    embed.description = shown(task.prompt or "-", DESCRIPTION_MAX)
    return fit_embed(embed)


def task_summary(task: Task, locale: str | None, dm_channel_id: int | None = None) -> str:
    """One line about a task for `/status` lists; `dm_channel_id` links a result in the
    requester's DMs (pass it only when the requester reads the list)."""
    state = t(f"task.state.{task.state.value}", locale)
    prompt = shown(task.prompt.replace("\n", " "), 60)
    line = f"`#{task.id}` {state} · {prompt}"
    url = result_url(task, dm_channel_id) if task.state == TaskState.DELIVERED else None
    if url is not None:
        line += f" · [{t('status.jump', locale)}]({url})"
    return line


def _links(note: str, urls: tuple[str, ...]) -> str:
    """The note followed by as many numbered links as fit in one embed field."""
    text = note
    for index, url in enumerate(urls):
        link = f" [{index + 1}]({url})"
        if not url.startswith(("http://", "https://")) or len(text) + len(link) > FIELD_MAX:
            continue
        text += link
    return text


def accepted_text(task: Task, position: int | None, locale: str | None) -> str:
    """The requester's acknowledgement: the task's id, its place in line if it waits, and
    where its result will go."""
    where = "_dm" if task.delivery == "dm" else ""
    if position is None:
        return t(f"generate.accepted{where}", locale, id=task.id)
    return t(f"generate.accepted_waiting{where}", locale, id=task.id, position=position)
