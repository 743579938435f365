"""Actions on delivered results: persistent buttons and reactions (rerun, DM, delete)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import discord
from discord.ext import commands

from bot.discord_jobs import actions
from bot.discord_jobs.buttons import DYNAMIC_ITEMS
from bot.i18n import t
from bot.store import Task
from bot.tree import describe_error

if TYPE_CHECKING:
    from bot.app import MiaohuaBot

log = logging.getLogger(__name__)

RERUN = "🔁"
RERUN_SAME_SEED = "🔂"
SEND_ORIGINALS = "✉️"
DELETE = "❌"
REACTIONS = frozenset({RERUN, RERUN_SAME_SEED, SEND_ORIGINALS, DELETE})
_COOLDOWN_PRUNE_AT = 10_000


class ResultsCog(commands.Cog):
    """Buttons and reactions on the bot's result messages."""

    def __init__(self, bot: MiaohuaBot) -> None:
        self.bot = bot
        self._last_reaction: dict[tuple[int, int], float] = {}

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*DYNAMIC_ITEMS)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*DYNAMIC_ITEMS)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        emoji = str(payload.emoji)
        if emoji not in REACTIONS or payload.guild_id is None or payload.member is None:
            return
        me = self.bot.user
        if (me is not None and payload.user_id == me.id) or payload.member.bot:
            return
        task = await self.bot.store.tasks.get_by_result_message(
            payload.guild_id, payload.message_id
        )
        if task is None or self._cooling_down(payload.user_id, payload.message_id):
            return
        try:
            await self._react(task, emoji, payload)
        except Exception as exc:
            await self._tell(payload.member, exc, task)

    def _cooling_down(self, user_id: int, message_id: int) -> bool:
        """True for a repeated reaction of a user on a message within the rerun cooldown."""
        now = time.monotonic()
        cooldown = self.bot.settings.limits.rerun_cooldown
        key = (user_id, message_id)
        last = self._last_reaction.get(key)
        if last is not None and now - last < cooldown:
            return True
        if len(self._last_reaction) > _COOLDOWN_PRUNE_AT:
            self._last_reaction = {
                k: v for k, v in self._last_reaction.items() if now - v < cooldown
            }
        self._last_reaction[key] = now
        return False

    async def _react(self, task: Task, emoji: str, payload: discord.RawReactionActionEvent) -> None:
        member = payload.member
        assert member is not None
        locale = self._locale(task)
        if emoji in (RERUN, RERUN_SAME_SEED):
            await actions.rerun(
                self.bot,
                task,
                user_id=member.id,
                channel_id=payload.channel_id,
                locale=locale,
                same_seed=emoji == RERUN_SAME_SEED,
            )
        elif emoji == SEND_ORIGINALS:
            await self.bot.delivery.send_originals(task, member)
        elif emoji == DELETE and actions.may_delete(
            task, member.id, self._permissions(member, payload.channel_id)
        ):
            channel = self.bot.get_partial_messageable(
                payload.channel_id, guild_id=payload.guild_id
            )
            await channel.get_partial_message(payload.message_id).delete()

    def _permissions(self, member: discord.Member, channel_id: int) -> discord.Permissions:
        channel = member.guild.get_channel(channel_id)
        if channel is not None:
            return channel.permissions_for(member)
        return member.guild_permissions

    def _locale(self, task: Task) -> str | None:
        return self.bot.guild_languages.get(task.guild_id) or task.locale

    async def _tell(self, member: discord.Member, error: Exception, task: Task) -> None:
        """DM a member why their reaction did nothing (a refusal, or a failure)."""
        locale = self._locale(task)
        message = describe_error(error, locale or "en-US")
        if message is None:
            log.exception("reaction on the result of task %s failed", task.id, exc_info=error)
            message = t("result.reaction_failed", locale)
        try:
            await member.send(message, allowed_mentions=discord.AllowedMentions.none())
        except discord.HTTPException:
            log.info("could not DM member %s about task %s", member.id, task.id)


async def setup(bot: MiaohuaBot) -> None:
    """Load the cog."""
    await bot.add_cog(ResultsCog(bot))
