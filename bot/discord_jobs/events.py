"""The job layer's events shown on Discord: status messages, results, failures."""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

import discord

from bot.background import finish_or_cancel
from bot.discord_jobs import render
from bot.discord_jobs.buttons import result_components
from bot.discord_jobs.downloads import ImageFetcher
from bot.discord_jobs.host import DiscordHost
from bot.discord_jobs.modlog import ModerationLog
from bot.discord_jobs.modlog_buttons import log_entry_view
from bot.discord_jobs.payload import FittedImages, ResultImages, download_result, fit_images
from bot.discord_jobs.posting import PostedMessage, post_message
from bot.discord_jobs.status import CLOSE_GRACE, StatusBoard
from bot.discord_pacing import PacedRequest, Priority, paced_as
from bot.jobs import BlockedWord, Delivery, GenerationRequest, Posted, Refused
from bot.store import StoreUnavailable, Task, TaskState

log = logging.getLogger(__name__)

RERUN_EMOJI = "🔁"
DM_UPLOAD_LIMIT = discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES


class ResultCheck(enum.Enum):
    """What Discord says about a delivered task's result message."""

    FOUND = "found"
    GONE = "gone"  # deleted, or never posted
    UNKNOWN = "unknown"  # Discord could not be asked


@dataclass(frozen=True, slots=True)
class PostedResult:
    """Whether a task's result message is still there, and the link to it when known."""

    check: ResultCheck
    url: str | None = None


@dataclass(frozen=True, slots=True)
class _Sent:
    """A result message and the place it went to: where it was asked for, or the fallback."""

    message: PostedMessage
    place: Delivery


def _nonce(task: Task, kind: str) -> str:
    """A per-task nonce (<= 25 chars) so Discord drops a retried duplicate post."""
    return f"mh{task.id}{kind}"[:25]


class DiscordJobEvents:
    """Implements `bot.jobs.JobEvents` over discord.py, posting with the bot token."""

    def __init__(
        self,
        bot: DiscordHost,
        *,
        status_interval: float = 2.0,
        download_bytes: int = 20 * 1024 * 1024,
        download_timeout: float = 30.0,
        rerun_reaction: bool = False,
    ) -> None:
        self.bot = bot
        self.rerun_reaction = rerun_reaction  # add 🔁 under each channel result
        self.status = StatusBoard(bot, interval=status_interval)
        self.fetcher = ImageFetcher(max_bytes=download_bytes, timeout=download_timeout)
        self.moderation = ModerationLog(bot, view=log_entry_view)
        self._reacting: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Add the rerun reactions still waiting, flush status edits and log entries (each
        for up to `CLOSE_GRACE` seconds: what Discord holds longer is dropped), and close the
        download session."""
        if dropped := await finish_or_cancel(self._reacting, CLOSE_GRACE):
            log.warning(
                "%d rerun reactions unconfirmed: Discord held them past the stop's %g s",
                dropped,
                CLOSE_GRACE,
            )
        await self.status.close()  # its last posts may still log entries
        await self.moderation.close()
        await self.fetcher.close()

    # JobEvents

    async def task_accepted(self, task: Task, position: int | None) -> None:
        """Show the task's status (its place in line, or being generated): in its command's
        answer when that will carry it, else posted in the background, so the request is
        answered and dispatched without waiting for Discord's rate limits; then its
        moderation log entry linking it."""
        self.status.accepted(
            task,
            render.accepted_status_text(task, position),
            then=lambda: self.moderation.accepted(task, self.status.message_id(task.id)),
            counting=None if position is None else "queued",
        )

    async def task_progress(self, task: Task, position: int | None, wait_time: int | None) -> None:
        """Update the status message: queue position, or the service's wait (in the
        background, so a poll round never waits for Discord's rate limits)."""
        if position is not None and task.state == TaskState.QUEUED:
            self.status.show_soon(task, render.queued_text(task, position), counting="queued")
        else:
            counting = "waiting" if wait_time else None
            self.status.show_soon(task, render.running_text(task, wait_time), counting=counting)

    async def task_done(self, task: Task) -> Posted | None:
        """Post the result where the requester wants it, else in the other place; say where."""
        sent = await self.deliver(task)
        # The status edit is not awaited (Discord may hold it for seconds): the job layer
        # stores the delivery now, so the result's reactions and links work at once.
        if sent is None:
            self.status.show_soon(task, render.done_text(task, None), final=True)
            return None
        if sent.place == "dm":
            # The channel learns where the result went; only the member could open a link.
            self.status.show_soon(task, render.sent_by_dm_text(task), final=True)
        else:
            posted = sent.message
            url = render.jump_url(task.guild_id, posted.channel_id, posted.message_id)
            self.status.show_soon(task, render.done_text(task, url), final=True)
            self.moderation.result_posted(task, url)  # a DM result: moderators could not open it
        return Posted(sent.message.message_id, sent.place)

    async def task_cancelled(self, task: Task) -> None:
        """Mark the task's status message cancelled."""
        self.moderation.forget(task.id)
        await self.status.show(task, render.cancelled_text(task), final=True)

    async def task_failed(self, task: Task) -> None:
        """Tell the requester why the task failed, and mark its status message failed."""
        self.moderation.forget(task.id)
        # The member waits for this answer: it goes before other tasks' status edits.
        with paced_as(Priority.RESULT):
            await self.status.show(task, render.failed_text(task), final=True, urgent=True)
            await self._tell_failure(task)

    async def _tell_failure(self, task: Task) -> None:
        content = render.failure_message(task)
        mention = discord.AllowedMentions(users=[discord.Object(task.user_id)])
        try:
            await self._channel(task).send(
                content, allowed_mentions=mention, nonce=_nonce(task, "f")
            )
            return
        except (discord.Forbidden, discord.NotFound):
            log.info("task %s: channel unavailable, sending the failure by DM", task.id)
        try:
            user = await self._user(task.user_id)
            await user.send(content, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException:
            log.info("task %s: could not tell user %s about the failure", task.id, task.user_id)

    def request_refused(self, request: GenerationRequest, refusal: Refused) -> None:
        """Log a refusal for a blocked word in the guild's moderation log."""
        if isinstance(refusal, BlockedWord):
            self.moderation.refused(request, str(refusal.params.get("word", "")))

    # Delivery

    async def deliver(self, task: Task) -> _Sent | None:
        """Post a task's result; None when neither the channel nor the requester's DMs take it."""
        with paced_as(Priority.RESULT) as paced:
            sent = await self._deliver(task)
        _log_budget_wait(task.id, paced)
        return sent

    async def _deliver(self, task: Task) -> _Sent | None:
        images = await download_result(self.fetcher, task.images)
        if task.images and not any(images.originals):
            # Nothing could be fetched from the service: try again later (bounded by the job
            # layer, which then fails the task with a message to the requester).
            log.warning("task %s: no result image could be downloaded", task.id)
            return None
        kind = "r" + str(time.time_ns() % 10**9) if task.state == TaskState.DELIVERED else "d"
        if task.delivery == "dm":
            return await self._deliver_by_dm(task, images, kind)
        message = await self._post_in_channel(task, images, kind)
        if message is not None:
            return _Sent(message, "channel")
        message = await self._post_by_dm(task, images)
        return _Sent(message, "dm") if message is not None else None

    async def _deliver_by_dm(self, task: Task, images: ResultImages, kind: str) -> _Sent | None:
        """The result in the requester's DMs with its buttons; in the channel if refused."""
        fitted = await self._fit(task, images, DM_UPLOAD_LIMIT)
        guild = self.bot.get_guild(task.guild_id)
        intro = render.dm_intro(task, guild.name if guild else "")
        try:
            dm = await self._post(
                await self._dm_channel_id(task.user_id),
                intro,
                render.result_embeds(
                    task, task.locale, fitted, parent_url=await self._parent_url(task), in_dm=True
                ),
                fitted,
                result_components(task.id, len(task.images), task.locale),
                discord.AllowedMentions.none(),
                _nonce(task, kind + "m"),
            )
            return _Sent(dm, "dm")
        except discord.HTTPException as exc:
            # Closed DMs (50007) above all: the result is never lost, the channel gets it.
            log.info(
                "task %s: result not sent by DM (%s %s), posting it in the channel",
                task.id,
                exc.status,
                exc.code,
            )
        message = await self._post_in_channel(task, images, kind, note=render.dm_refused(task))
        return _Sent(message, "channel") if message is not None else None

    async def find_result(self, task: Task) -> PostedResult:
        """Look for a delivered task's result message where it was recorded as posted, then
        in the other place (results delivered before the place was recorded)."""
        if not task.result_message_id:
            return PostedResult(ResultCheck.GONE)
        looks = [self._look_in_channel, self._look_in_dms]
        if task.delivery == "dm":
            looks.reverse()
        for look in looks:
            found = await look(task, task.result_message_id)
            if found.check is not ResultCheck.GONE:
                return found
        return PostedResult(ResultCheck.GONE)

    async def _look_in_channel(self, task: Task, message_id: int) -> PostedResult:
        """The result message in the task's channel."""
        url = render.jump_url(task.guild_id, task.channel_id, message_id)
        try:
            await self._channel(task).fetch_message(message_id)
            return PostedResult(ResultCheck.FOUND, url)
        except (discord.NotFound, discord.Forbidden):
            return PostedResult(ResultCheck.GONE)  # deleted, or not there
        except discord.HTTPException as exc:
            log.info("task %s: result message not checked (%s)", task.id, exc.status)
            return PostedResult(ResultCheck.UNKNOWN, url)

    async def _look_in_dms(self, task: Task, message_id: int) -> PostedResult:
        """The result message in the requester's DMs (no link if that channel is unknown)."""
        url = None
        try:
            user = await self._user(task.user_id)
            dm = user.dm_channel or await user.create_dm()
            url = render.jump_url(None, dm.id, message_id)
            await dm.fetch_message(message_id)
            return PostedResult(ResultCheck.FOUND, url)
        except (discord.NotFound, discord.Forbidden):
            return PostedResult(ResultCheck.GONE)
        except discord.HTTPException as exc:
            log.info("task %s: result message not checked in DMs (%s)", task.id, exc.status)
            return PostedResult(ResultCheck.UNKNOWN, url)

    async def send_originals(self, task: Task, user: discord.User | discord.Member) -> bool:
        """DM a user the task's images and parameters; False when their DMs are closed."""
        images = await download_result(self.fetcher, task.images)
        fitted = await self._fit(task, images, DM_UPLOAD_LIMIT)
        embeds = render.result_embeds(
            task, task.locale, fitted, parent_url=await self._parent_url(task)
        )
        try:
            await user.send(embeds=embeds, files=fitted.discord_files())
        except discord.HTTPException as exc:
            log.info("task %s: originals not sent to %s (%s)", task.id, user.id, exc.status)
            return False
        return True

    def upload_limit(self, guild_id: int) -> int:
        """The most bytes one result message may upload in the guild."""
        guild = self.bot.get_guild(guild_id)
        return guild.filesize_limit if guild is not None else DM_UPLOAD_LIMIT

    async def _post_in_channel(
        self, task: Task, images: ResultImages, kind: str, *, note: str | None = None
    ) -> PostedMessage | None:
        fitted = await self._fit(task, images, self.upload_limit(task.guild_id))
        content = f"<@{task.user_id}>" if note is None else f"<@{task.user_id}> {note}"
        try:
            message = await self._post(
                task.channel_id,
                content,
                render.result_embeds(
                    task, task.locale, fitted, parent_url=await self._parent_url(task)
                ),
                fitted,
                result_components(task.id, len(task.images), task.locale),
                _mention_only(task.user_id),
                _nonce(task, kind),
            )
        except (discord.Forbidden, discord.NotFound) as exc:
            log.info(
                "task %s: result not postable in channel %s (%s)",
                task.id,
                task.channel_id,
                exc.status,
            )
            return None
        if self.rerun_reaction:
            # Added after returning: Discord allows one reaction per 0.25 s per channel, and
            # discord.py sleeps out an exhausted bucket before it returns, so awaiting it would
            # leave a posted result unrecorded (its reactions ignored) for that long.
            job = asyncio.create_task(self._add_rerun_reaction(task, message))
            self._reacting.add(job)
            job.add_done_callback(self._reacting.discard)
        return message

    async def _add_rerun_reaction(self, task: Task, message: PostedMessage) -> None:
        try:
            with paced_as(Priority.STATUS_EDIT):
                await self.bot.http.add_reaction(
                    message.channel_id, message.message_id, RERUN_EMOJI
                )
        except discord.HTTPException:
            log.info("task %s: could not add the rerun reaction", task.id)

    async def _post_by_dm(self, task: Task, images: ResultImages) -> PostedMessage | None:
        fitted = await self._fit(task, images, DM_UPLOAD_LIMIT)
        try:
            return await self._post(
                await self._dm_channel_id(task.user_id),
                None,
                render.result_embeds(
                    task, task.locale, fitted, parent_url=await self._parent_url(task)
                ),
                fitted,
                None,  # no buttons: this result landed in DMs the member did not ask for
                discord.AllowedMentions.none(),
                secrets.randbits(64),  # what `send` picks when given none
            )
        except discord.HTTPException as exc:
            log.warning("task %s: result not delivered by DM either (%s)", task.id, exc.status)
            return None

    async def _post(
        self,
        channel_id: int,
        content: str | None,
        embeds: list[discord.Embed],
        fitted: FittedImages,
        components: list[dict[str, Any]] | None,
        mentions: discord.AllowedMentions,
        nonce: str | int,
    ) -> PostedMessage:
        """Post a result message, without building discord.py's objects for the answer."""
        return await post_message(
            self.bot.http,
            channel_id,
            content=content,
            embeds=embeds,
            files=fitted.discord_files(),
            components=components,
            allowed_mentions=mentions,
            nonce=nonce,
        )

    async def _dm_channel_id(self, user_id: int) -> int:
        """The bot's DM channel with a user (opened if this run has not yet)."""
        user = await self._user(user_id)
        return (await user.create_dm()).id

    async def _fit(self, task: Task, images: ResultImages, limit: int) -> FittedImages:
        return await fit_images(self.fetcher, images, limit, prefix=f"task-{task.id}")

    async def _parent_url(self, task: Task) -> str | None:
        """The jump link to the result of the task this one reruns, when it is known."""
        if not task.parent_id:
            return None
        try:
            parent = await self.bot.store.tasks.get(task.parent_id)
        except StoreUnavailable as exc:
            # The embed still names the parent, only without the link.
            log.info("task %s: parent %s not looked up (%s)", task.id, task.parent_id, exc)
            return None
        # Public: a result in the member's DMs has no link that works for everyone.
        return render.result_url(parent) if parent is not None else None

    def _channel(self, task: Task) -> discord.PartialMessageable:
        return self.bot.get_partial_messageable(task.channel_id, guild_id=task.guild_id)

    async def _user(self, user_id: int) -> discord.User:
        return self.bot.get_user(user_id) or await self.bot.fetch_user(user_id)


def _mention_only(user_id: int) -> discord.AllowedMentions:
    """Mentions that ping the requester and nobody else (replies to no one)."""
    return discord.AllowedMentions(
        everyone=False, users=[discord.Object(user_id)], roles=False, replied_user=False
    )


def _log_budget_wait(task_id: int, paced: PacedRequest) -> None:
    """Say how long a result waited for the bot's share of Discord's global request limit:
    time waiting for Discord, which the benchmark adds to what Discord's own limits held."""
    if paced.waits:
        spans = " ".join(f"{start:.3f}+{seconds:.3f}" for start, seconds in paced.waits)
        log.info(
            "task %s: result waited %.2f s for Discord's global limit (%s)",
            task_id,
            paced.waited,
            spans,
        )
