"""The moderation log: an entry per accepted request and per blocked-word refusal.

Each guild may name a channel (`/settings log-channel`). Entries are posted in the
background, so a slow or broken log channel never delays or fails a member's request; a
channel that refuses posts (deleted, permissions taken away) is reported once at WARNING
and in `/settings show`, and the setting is left for the moderators to fix.

Entries are posted when the job layer reports the event, which happens once per request:
a restart replays no event, so it posts no entry twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import discord

from bot.background import Background, finish_or_cancel
from bot.discord_jobs import modlog_entries as entries
from bot.discord_jobs.host import DiscordHost
from bot.discord_jobs.status import CLOSE_GRACE
from bot.i18n import pick_locale
from bot.jobs import GenerationRequest
from bot.replies import NO_MENTIONS
from bot.store import StoreUnavailable, Task

log = logging.getLogger(__name__)

# Entries whose link is updated when their result arrives: the most recent ones.
ENTRY_MEMORY = 10_000
# The bot's own permissions a log channel needs.
NEEDED_PERMISSIONS = ("view_channel", "send_messages", "embed_links")


@dataclass(slots=True)
class _Entry:
    """An accepted request's log entry: where it is, once posted.

    Its lock is held while the entry is posted, so a result arriving meanwhile is linked
    right after the post rather than lost.
    """

    channel_id: int | None = None
    message_id: int | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(frozen=True, slots=True)
class LogProblem:
    """The last post to a guild's log channel failed with this HTTP status."""

    channel_id: int
    status: int


def missing_permissions(channel: discord.abc.GuildChannel, me: discord.Member) -> list[str]:
    """The permissions the bot lacks to post log entries in `channel`."""
    granted = channel.permissions_for(me)
    return [name for name in NEEDED_PERMISSIONS if not getattr(granted, name)]


class ModerationLog:
    """Posts moderation entries to each guild's log channel, never holding up the caller."""

    def __init__(
        self,
        bot: DiscordHost,
        *,
        view: Callable[[Task, str], discord.ui.View],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.bot = bot
        self._view = view  # the buttons under an accepted request's entry
        self._wall = wall_clock
        self._posts = Background(log, "moderation log entry")
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._problems: dict[int, LogProblem] = {}  # guild id -> last failure, until a success

    def __len__(self) -> int:
        """Entries being posted or edited right now."""
        return len(self._posts)

    def accepted(self, task: Task, status_message_id: int | None) -> None:
        """Log an accepted request, linking its status message (posted in the background)."""
        entry = _Entry()
        self._remember(task.id, entry)
        self._posts.spawn(self._post_accepted(task, entry, status_message_id))

    def result_posted(self, task: Task, url: str) -> None:
        """Point the task's entry at its result, when the entry is known to this run."""
        entry = self._entries.get(task.id)
        if entry is not None:
            self._posts.spawn(self._relink(task, entry, url))

    def refused(self, request: GenerationRequest, word: str) -> None:
        """Log a request refused for a blocked word (posted in the background)."""
        self._posts.spawn(self._post_refused(request, word, self._wall()))

    def forget(self, task_id: int) -> None:
        """Stop updating a task's entry (it will have no result, or a moderator removed it)."""
        self._entries.pop(task_id, None)

    def problem(self, guild_id: int) -> LogProblem | None:
        """Why the last post to the guild's log channel failed, unless one succeeded since."""
        return self._problems.get(guild_id)

    def channel_changed(self, guild_id: int) -> None:
        """The guild chose another log channel (or none): the old channel's failure is moot."""
        self._problems.pop(guild_id, None)

    def locale(self, guild_id: int) -> str:
        """The language of a guild's entries: its setting, else the server's own language."""
        guild = self.bot.get_guild(guild_id)
        return pick_locale(
            self.bot.guild_languages.get(guild_id), guild.preferred_locale if guild else None
        )

    async def close(self) -> None:
        """Let entries being posted finish for a moment, then give up on them."""
        await finish_or_cancel(self._posts, CLOSE_GRACE)
        self._entries.clear()

    # Posting

    async def _post_accepted(
        self, task: Task, entry: _Entry, status_message_id: int | None
    ) -> None:
        async with entry.lock:  # taken at once: this task runs before any relink of the entry
            entry.channel_id = channel_id = await self._log_channel(task.guild_id)
            if channel_id is None:
                self._entries.pop(task.id, None)
                return
            locale = self.locale(task.guild_id)
            link = entries.jump_url(task, status_message_id) if status_message_id else None
            message = await self._send(
                task.guild_id,
                channel_id,
                embed=entries.accepted_embed(task, locale, link=link, is_result=False),
                view=self._view(task, locale),
            )
            if message is None:
                self._entries.pop(task.id, None)
                return
            entry.message_id = message.id

    async def _relink(self, task: Task, entry: _Entry, url: str) -> None:
        async with entry.lock:  # after the entry's post, if that is still under way
            if entry.channel_id is None or entry.message_id is None:
                return
            if self._entries.get(task.id) is not entry:
                return
            locale = self.locale(task.guild_id)
            embed = entries.accepted_embed(task, locale, link=url, is_result=True)
            message = self._channel(task.guild_id, entry.channel_id).get_partial_message(
                entry.message_id
            )
            try:
                await message.edit(embed=embed, allowed_mentions=NO_MENTIONS)
            except discord.HTTPException as exc:
                # The entry still links the status message, which links the result.
                log.info("task %s: log entry not updated (%s)", task.id, exc.status)
        self._entries.pop(task.id, None)  # a result is linked once

    async def _post_refused(self, request: GenerationRequest, word: str, now: float) -> None:
        channel_id = await self._log_channel(request.guild_id)
        if channel_id is None:
            return
        locale = self.locale(request.guild_id)
        embed = entries.refused_embed(request, word, locale, now)
        await self._send(request.guild_id, channel_id, embed=embed)

    async def _log_channel(self, guild_id: int) -> int | None:
        try:
            settings = await self.bot.store.settings.get(guild_id)
        except StoreUnavailable as exc:
            log.warning("guild %s: moderation log entry dropped (%s)", guild_id, exc)
            return None
        return settings.log_channel_id

    async def _send(
        self,
        guild_id: int,
        channel_id: int,
        *,
        embed: discord.Embed,
        view: discord.ui.View | None = None,
    ) -> discord.Message | None:
        channel = self._channel(guild_id, channel_id)
        try:
            if view is None:
                message = await channel.send(embed=embed, allowed_mentions=NO_MENTIONS)
            else:
                message = await channel.send(embed=embed, view=view, allowed_mentions=NO_MENTIONS)
        except (discord.Forbidden, discord.NotFound) as exc:
            self._refused_by_channel(guild_id, channel_id, exc.status)
            return None
        except discord.HTTPException as exc:
            log.info("guild %s: moderation log entry not posted (%s)", guild_id, exc.status)
            return None
        self._problems.pop(guild_id, None)
        return message

    def _refused_by_channel(self, guild_id: int, channel_id: int, status: int) -> None:
        """Say once that a log channel refuses posts; the setting stays for moderators to fix."""
        problem = LogProblem(channel_id, status)
        if self._problems.get(guild_id) != problem:
            log.warning(
                "guild %s: the moderation log channel %s refuses posts (%s); "
                "entries are dropped until it accepts them",
                guild_id,
                channel_id,
                status,
            )
        self._problems[guild_id] = problem

    def _remember(self, task_id: int, entry: _Entry) -> None:
        self._entries[task_id] = entry
        while len(self._entries) > ENTRY_MEMORY:
            self._entries.popitem(last=False)

    def _channel(self, guild_id: int, channel_id: int) -> discord.PartialMessageable:
        return self.bot.get_partial_messageable(channel_id, guild_id=guild_id)
