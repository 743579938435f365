"""The bot: `setup_hook` is the one place where everything is wired together."""

from __future__ import annotations

import asyncio
import logging
import pkgutil

import discord
import yarl
from discord.ext import commands

import cogs
from bot.accounts import AccountManager
from bot.config import MiaohuaSettings, Settings
from bot.crypto import SecretBox
from bot.demo_accounts import DemoAccounts
from bot.diagnostics import LoopLagMonitor
from bot.discord_jobs import DiscordJobEvents
from bot.forms import FormCache
from bot.housekeeping import Housekeeping
from bot.i18n import CatalogTranslator, pick_locale
from bot.jobs import GenerationService, PollStrategy, make_strategy
from bot.logs import hide_gateway_payloads
from bot.store import Store
from bot.training import TrainingService, create_training_service
from bot.tree import MiaohuaTree
from bot.v1b import V1bClient

log = logging.getLogger(__name__)

INTENTS = discord.Intents(guilds=True, guild_reactions=True, dm_reactions=False)


def cog_modules() -> list[str]:
    """Every cog module of the `cogs` package, in a stable order."""
    return sorted(
        f"{cogs.__name__}.{mod.name}"
        for mod in pkgutil.iter_modules(cogs.__path__)
        if not mod.name.startswith("_")
    )


def point_at_discord(settings: Settings) -> None:
    """Send REST and gateway traffic to a Discord-compatible server when one is configured."""
    if settings.discord.api_base_url:
        discord.http.Route.BASE = settings.discord.api_base_url.rstrip("/")
    if settings.discord.gateway_url:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord.gateway_url)


class BotCore:
    """Behaviour shared by the plain and the sharded bot."""

    settings: Settings
    store: Store
    v1b: V1bClient
    accounts: AccountManager
    secrets: SecretBox
    forms: FormCache
    delivery: DiscordJobEvents
    generation: GenerationService
    training: TrainingService
    housekeeping: Housekeeping

    def _init_core(
        self, settings: Settings, *, emulator_base_url: str | None, demo: DemoAccounts | None
    ) -> None:
        self.settings = settings
        self.emulator_base_url = emulator_base_url
        self.demo_provisioner = demo
        self.guild_languages: dict[int, str | None] = {}
        self.closing = False
        self._store_opening: asyncio.Task[Store] | None = None

    async def setup_hook(self) -> None:
        settings = self.settings
        # A database that cannot be written (read-only filesystem, full disk) is waited for
        # rather than fatal: tasks it holds finish once it can be written again.
        self._store_opening = asyncio.create_task(Store.open_when_writable(settings.storage.path))
        try:
            self.store = await self._store_opening
        except asyncio.CancelledError:
            if self.closing:
                raise StoppedWhileStarting from None
            raise
        self.secrets = SecretBox.from_settings(
            settings.security.secret_key.get_secret_value()
            if settings.security.secret_key
            else None,
            settings.security.key_file,
        )
        m = settings.miaohua
        self.v1b = V1bClient(
            self.emulator_base_url or m.base_url,
            timeout=m.request_timeout,
            connect_timeout=m.connect_timeout,
            requests_per_second=m.requests_per_second,
            max_retries=m.max_retries,
            retry_budget=m.retry_budget,
            max_response_bytes=m.max_response_bytes,
        )
        self.accounts = AccountManager(
            self.store, self.v1b, self.secrets, demo_provisioner=self.demo_provisioner
        )
        await self.accounts.prune()  # retired credentials whose work ended while stopped
        self.forms = FormCache(self.accounts, ttl=m.form_cache_ttl)
        self.delivery = DiscordJobEvents(self, download_bytes=settings.limits.download_bytes)
        self.generation = GenerationService(
            self.store,
            self.accounts,
            self.delivery,
            account_concurrency=m.account_concurrency,
            strategy=poll_strategy(m),
            task_timeout=m.task_timeout,
            use_batch=m.use_batch,
            batch_interval=m.batch_poll_interval,
            busy_backoff=m.busy_backoff,
        )
        self.guild_languages.update(await self.store.settings.languages())
        self.loop_lag = LoopLagMonitor()
        self.loop_lag.start()
        # Resume unfinished work first: it needs only REST, not the gateway or the commands.
        await self.generation.start()
        self.training = create_training_service(self)
        await self.training.start()
        self.housekeeping = Housekeeping(
            self.store,
            retention_days=settings.storage.retention_days,
            loop_lag=self.loop_lag,
            sizes=self.memory_sizes,
            forget_idle=self.forms.forget_idle,
        )
        self.housekeeping.start()
        await self.tree.set_translator(CatalogTranslator())
        for name in cog_modules():
            await self.load_extension(name)
        await self._sync_commands()

    async def _sync_commands(self) -> None:
        if not self.settings.discord.sync_commands:
            return
        guild_id = self.settings.discord.dev_guild_id
        if guild_id:
            guild = discord.Object(guild_id)
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
        else:
            synced = await self.tree.sync()
        log.info("synced %d application commands", len(synced))

    def memory_sizes(self) -> dict[str, int]:
        """Entries of the in-memory per-guild, per-member and per-task state, by structure."""
        return {
            **self.generation.memory_sizes(),
            "status_messages": len(self.delivery.status),
            "forms": len(self.forms),
        }

    def locale_for(self, interaction: discord.Interaction) -> str:
        """The interaction's language, then the guild's setting, then en-US."""
        guild_lang = self.guild_languages.get(interaction.guild_id or 0)
        return pick_locale(interaction.locale, guild_lang)

    async def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        log.info("shutting down")
        if self._store_opening is not None:
            self._store_opening.cancel()
        if hasattr(self, "housekeeping"):
            await self.housekeeping.stop()
        if hasattr(self, "training"):
            await self.training.stop()
        if hasattr(self, "generation"):
            await self.generation.stop()
        if hasattr(self, "delivery"):
            await self.delivery.close()
        for name in list(self.extensions):
            try:
                await self.unload_extension(name)
            except Exception:
                log.exception("failed to unload %s", name)
        if hasattr(self, "accounts"):
            await self.accounts.stop()
        if hasattr(self, "v1b"):
            await self.v1b.close()
        if hasattr(self, "store"):
            await self.store.close()
        if hasattr(self, "loop_lag"):
            await self.loop_lag.stop()
        await super().close()  # type: ignore[misc]


class StoppedWhileStarting(Exception):
    """The bot was told to stop while it was still waiting for its database."""


def poll_strategy(m: MiaohuaSettings) -> PollStrategy:
    """The configured way of spacing result polls."""
    if m.poll_strategy == "fixed":
        return make_strategy("fixed", seconds=m.poll_interval)
    return make_strategy("adaptive", base_seconds=m.expected_generation_time)


def _bot_kwargs(settings: Settings) -> dict:
    return {
        "command_prefix": commands.when_mentioned,
        "help_command": None,
        "intents": INTENTS,
        "tree_cls": MiaohuaTree,
        "allowed_mentions": discord.AllowedMentions.none(),
        "max_messages": None,
        "chunk_guilds_at_startup": False,
    }


class MiaohuaBot(BotCore, commands.Bot):
    """The bot on a single gateway connection."""

    def __init__(self, settings: Settings, *, emulator_base_url=None, demo=None, **kwargs) -> None:
        super().__init__(**_bot_kwargs(settings), **kwargs)
        self._init_core(settings, emulator_base_url=emulator_base_url, demo=demo)


class ShardedMiaohuaBot(BotCore, commands.AutoShardedBot):
    """The bot spread over several gateway shards."""

    def __init__(self, settings: Settings, *, emulator_base_url=None, demo=None, **kwargs) -> None:
        super().__init__(
            **_bot_kwargs(settings),
            shard_count=settings.discord.shard_count,
            shard_ids=settings.discord.shard_ids,
            **kwargs,
        )
        self._init_core(settings, emulator_base_url=emulator_base_url, demo=demo)


def create_bot(settings: Settings, **kwargs) -> MiaohuaBot | ShardedMiaohuaBot:
    """Build the bot exactly as `miaohua-bot run` does."""
    point_at_discord(settings)
    hide_gateway_payloads()
    # The bot never joins voice: discord.py's warnings about missing voice libraries are noise.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    sharded = settings.discord.shard_count or settings.discord.shard_ids
    cls = ShardedMiaohuaBot if sharded else MiaohuaBot
    return cls(settings, **kwargs)
