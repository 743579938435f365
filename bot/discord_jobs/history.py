"""`/history` pages: one embed per past result, and ◀ ▶ buttons that survive restarts.

Everything a page needs is in the buttons' custom ids (owner, cursor task id, direction,
search text), so a click is answered from the database alone, after any restart. The
search is limited to `SEARCH_MAX` characters so that it always fits: the longest possible
ids (20-digit user, 19-digit task) leave exactly that much of Discord's 100.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import discord

from bot import display
from bot.discord_jobs import render
from bot.discord_jobs.buttons import ViewButton
from bot.discord_jobs.dm_links import dm_channel_for
from bot.errors import UserFacingError
from bot.i18n import t
from bot.replies import NO_MENTIONS
from bot.store import Task
from bot.store.history import HistoryPage
from bot.tree import report_error
from bot.types import BotInteraction, bot_interaction

PAGE_SIZE = 5
SEARCH_MAX = 50
# Enough of the prompt to recognise a result; five entries stay far below 6,000 characters.
_PROMPT_MAX = 300
NEWER, OLDER = "n", "o"
_PREFIX = "mh:hist"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Whose results a history message lists, and the search it filters them by."""

    owner_id: int
    search: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryMessage:
    """A rendered page: keyword arguments for sending or editing the message."""

    content: str
    embeds: list[discord.Embed]
    view: discord.ui.View | None


def clean_search(text: str | None) -> str | None:
    """The search as used: surrounding spaces dropped, None when nothing is left."""
    text = (text or "").strip()
    return text[:SEARCH_MAX] or None


def custom_id(query: HistoryQuery, way: str, cursor: int) -> str:
    """The custom id of a page button: `mh:hist:<owner>:<n|o><task id>:<search>`."""
    return f"{_PREFIX}:{query.owner_id}:{way}{cursor}:{query.search or ''}"


async def read_page(
    interaction: BotInteraction, query: HistoryQuery, way: str = OLDER, cursor: int | None = None
) -> HistoryPage:
    """The page next to task `cursor` in direction `way` (no cursor: the newest page)."""
    assert interaction.guild_id is not None
    history = interaction.client.store.history
    guild_id, owner, search = interaction.guild_id, query.owner_id, query.search
    if way == NEWER and cursor is not None:
        return await history.newer(guild_id, owner, after=cursor, search=search, size=PAGE_SIZE)
    return await history.older(guild_id, owner, before=cursor, search=search, size=PAGE_SIZE)


async def history_message(
    interaction: BotInteraction, query: HistoryQuery, page: HistoryPage
) -> HistoryMessage:
    """The message showing one page of the member's results (or why there is none)."""
    locale = interaction.client.locale_for(interaction)
    if not page.tasks:
        if query.search:
            text = display.render("history.no_match", locale, search=query.search)
            return HistoryMessage(text, [], None)
        return HistoryMessage(t("history.empty", locale), [], None)
    dm_channel_id = await dm_channel_for(interaction.user, page.tasks)
    embeds = [_entry(task, locale, dm_channel_id) for task in page.tasks]
    return HistoryMessage(_header(query, page, locale), embeds, _view(query, page, locale))


def _header(query: HistoryQuery, page: HistoryPage, locale: str) -> str:
    pages = math.ceil(page.total / PAGE_SIZE)
    # A page reached by ◀ after results were added may start mid-way: the last stays last.
    number = min(pages, page.newer // PAGE_SIZE + 1) if page.has_older else pages
    values: dict[str, Any] = {"count": page.total, "page": number, "pages": pages}
    if query.search:
        return display.render("history.header.search", locale, search=query.search, **values)
    return t("history.header", locale, **values)


def _entry(task: Task, locale: str, dm_channel_id: int | None) -> discord.Embed:
    """One result: number (linking to it), prompt start, date and a thumbnail."""
    link = render.result_url(task, dm_channel_id)
    # As the search reads it: the member's own words when a style wrapped them.
    own = task.member_prompt if task.member_prompt is not None else task.prompt
    prompt = " ".join(own.split())
    lines = [display.shown(prompt or "-", _PROMPT_MAX)]
    when = task.delivered_at or task.done_at or task.created_at
    date = discord.utils.format_dt(datetime.fromtimestamp(when, tz=UTC), "f")
    if link is not None:
        lines.append(f"{date} · [{t('history.open', locale)}]({link})")
    else:
        lines.append(date)
    embed = discord.Embed(
        title=t("history.entry", locale, id=task.id),
        url=link,
        description="\n".join(lines),
        colour=render.EMBED_COLOUR,
    )
    thumbnail = _thumbnail(task)
    if thumbnail is not None:
        embed.set_thumbnail(url=thumbnail)
    return embed


def _thumbnail(task: Task) -> str | None:
    """The service's preview of the first image.

    Not the result message's attachment: Discord's attachment URLs are signed and expire
    within a day, and none is stored; the service's result URLs are unsigned CDN links.
    """
    for image in task.images[:1]:
        url = image.get("middle") or image.get("large")
        if isinstance(url, str) and url.startswith(("https://", "http://")):
            return url
    return None


def _view(query: HistoryQuery, page: HistoryPage, locale: str) -> discord.ui.View | None:
    """◀ ▶, each disabled at its end of the list; none when everything fits on one page."""
    if not (page.has_newer or page.has_older):
        return None
    view = discord.ui.View(timeout=None)
    newer = HistoryButton(query, NEWER, page.tasks[0].id, t("history.newer", locale))
    newer.item.disabled = not page.has_newer
    older = HistoryButton(query, OLDER, page.tasks[-1].id, t("history.older", locale))
    older.item.disabled = not page.has_older
    view.add_item(newer)
    view.add_item(older)
    return view


class HistoryButton(
    discord.ui.DynamicItem[ViewButton],
    template=re.compile(
        rf"{_PREFIX}:(?P<owner>\d{{1,20}}):(?P<way>[{NEWER}{OLDER}])(?P<cursor>\d{{1,19}})"
        r":(?P<search>.*)",
        re.DOTALL,  # the search is free text
    ),
):
    """Turn a history page; only the member whose history it is may."""

    def __init__(self, query: HistoryQuery, way: str, cursor: int, label: str = "") -> None:
        super().__init__(
            discord.ui.Button(
                label=label or ("◀" if way == NEWER else "▶"),
                style=discord.ButtonStyle.secondary,
                custom_id=custom_id(query, way, cursor),
            )
        )
        self.query = query
        self.way = way
        self.cursor = cursor

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> HistoryButton:
        query = HistoryQuery(int(match["owner"]), clean_search(match["search"]))
        label = item.label if isinstance(item, discord.ui.Button) else None
        return cls(query, match["way"], int(match["cursor"]), label or "")

    async def callback(self, interaction: discord.Interaction) -> Any:
        try:
            await self._turn(bot_interaction(interaction))
        except Exception as exc:
            await report_error(interaction, exc)

    async def _turn(self, interaction: BotInteraction) -> None:
        if interaction.user.id != self.query.owner_id or interaction.guild_id is None:
            raise UserFacingError("history.not_yours")
        page = await read_page(interaction, self.query, self.way, self.cursor)
        shown_page = await history_message(interaction, self.query, page)
        await interaction.response.edit_message(
            content=shown_page.content,
            embeds=shown_page.embeds,
            view=shown_page.view,
            allowed_mentions=NO_MENTIONS,
        )
