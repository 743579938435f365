"""The bot: `setup_hook` is the one place where everything is wired together."""

from __future__ import annotations

import asyncio
import logging
import pkgutil
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import discord
import yarl
from discord.ext import commands

import cogs
from bot.accounts import AccountManager
from bot.background import Background
from bot.config import MiaohuaSettings, Settings
from bot.crypto import SecretBox
from bot.demo_accounts import DemoAccounts
from bot.diagnostics import LoopLagMonitor
from bot.discord_buckets import one_request_per_bucket
from bot.discord_jobs import DiscordJobEvents
from bot.discord_jobs.requests import limits_for
from bot.discord_pacing import GlobalPacer, pace_client, pace_requests
from bot.discord_training import create_training_service
from bot.forms import FormCache
from bot.health import GatewayWatch, store_unwritable
from bot.housekeeping import Housekeeping
from bot.i18n import pick_locale
from bot.jobs import GenerationService, PollStrategy, make_strategy
from bot.lifecycle import Lifecycle, ShuttingDown, Step, nothing
from bot.logs import hide_gateway_payloads
from bot.metrics import MeteredJobEvents, Metrics, discord_http_trace
from bot.metrics_server import MetricsServer
from bot.store import Store
from bot.store.settings import GuildSettings
from bot.store.shards import ShardScope
from bot.training import TrainingService
from bot.translator import CatalogTranslator
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


class MiaohuaBot(commands.Bot):
    """The bot on a single gateway connection; its services are typed attributes.

    The services exist once `setup_hook` has started them; `close` stops them.
    """

    settings: Settings
    store: Store
    secrets: SecretBox
    v1b: V1bClient
    accounts: AccountManager
    forms: FormCache
    delivery: DiscordJobEvents
    generation: GenerationService
    loop_lag: LoopLagMonitor
    training: TrainingService
    housekeeping: Housekeeping
    metrics_server: MetricsServer

    def __init__(
        self,
        settings: Settings,
        *,
        emulator_base_url: str | None = None,
        demo: DemoAccounts | None = None,
        **kwargs: Any,
    ) -> None:
        metrics = Metrics()
        trace = discord_http_trace(metrics)
        # Under Discord's global limit, results first: see bot/discord_pacing.py.
        self.pacer = GlobalPacer(
            settings.discord.requests_per_second, observe=metrics.discord_paced
        )
        metrics.discord_waiting.set_function(lambda: len(self.pacer))
        pace_requests(trace, self.pacer)
        super().__init__(**_bot_kwargs(settings), http_trace=trace, **kwargs)
        # One request per bucket in flight, and the global turn taken before waiting for it.
        one_request_per_bucket(self.http)
        pace_client(self.http, self.pacer)
        self.settings = settings
        self.metrics = metrics
        self.gateway = self._watch_gateway()
        metrics.gateway_connected.set_function(lambda: float(self.gateway.up))
        self.emulator_base_url = emulator_base_url
        self.demo_provisioner = demo
        self.guild_languages: dict[int, str | None] = {}
        self.lifecycle = Lifecycle()
        self.closing = False
        self._store_opening: asyncio.Task[Store] | None = None
        self._commands_synced = False
        self._announced_ready = False
        self.lost_shards = False

    def _watch_gateway(self) -> GatewayWatch:
        """Follow the one gateway connection: up from READY or RESUMED to a disconnect."""
        watch = GatewayWatch()
        self.add_listener(watch.connected, "on_ready")
        self.add_listener(watch.connected, "on_resumed")
        self.add_listener(watch.disconnected, "on_disconnect")
        return watch

    async def setup_hook(self) -> None:
        try:
            await self._start_services()
        except ShuttingDown:
            # Closed (e.g. SIGTERM) while starting: what had started is stopped already, and
            # discord.py does not connect a closed client.
            log.info("stopped while starting")
            return
        await self._sync_commands()

    async def _start_services(self) -> None:
        """Build and start the services in dependency order; `close` stops them in reverse."""
        settings, m = self.settings, self.settings.miaohua
        start = self.lifecycle.start
        if settings.metrics.port is not None:  # first up, last down: /healthz while starting
            server = MetricsServer(
                self.metrics, self.not_ready, settings.metrics.host, settings.metrics.port
            )
            self.metrics_server = server
            await start(Step("metrics", server.start, server.stop))
        await start(Step("store", self._open_store, lambda: self.store.close()))
        self.secrets = SecretBox.from_settings(
            settings.security.secret_key.get_secret_value()
            if settings.security.secret_key
            else None,
            settings.security.key_file,
        )
        self.v1b = V1bClient(
            self.emulator_base_url or m.base_url,
            timeout=m.request_timeout,
            connect_timeout=m.connect_timeout,
            requests_per_second=m.requests_per_second,
            max_retries=m.max_retries,
            retry_budget=m.retry_budget,
            max_response_bytes=m.max_response_bytes,
            observe=self.metrics.v1b_request,
        )
        await start(Step("v1b", nothing, self.v1b.close))  # its HTTP session opens on first use
        self.accounts = AccountManager(
            self.store, self.v1b, self.secrets, demo_provisioner=self.demo_provisioner
        )
        # Retired credentials whose work ended while the bot was stopped.
        await start(Step("accounts", self.accounts.prune, self.accounts.stop))
        self.forms = FormCache(self.accounts, ttl=m.form_cache_ttl)
        self.accounts.on_change(self.forms.invalidate)
        await start(Step("forms", nothing, self.forms.close))  # fetches end before the client
        self.delivery = DiscordJobEvents(
            self,
            download_bytes=settings.limits.download_bytes,
            rerun_reaction=settings.discord.rerun_reaction,
        )
        await start(Step("delivery", nothing, self.delivery.close))
        self.generation = GenerationService(
            self.store,
            self.accounts,
            MeteredJobEvents(self.delivery, self.metrics),
            account_concurrency=m.account_concurrency,
            running_limit=self._user_running,
            strategy=poll_strategy(m),
            task_timeout=m.task_timeout,
            use_batch=m.use_batch,
            batch_interval=m.batch_poll_interval,
            busy_backoff=m.busy_backoff,
        )
        self.guild_languages.update(await self.store.settings.languages())
        self.store.settings.on_change(self._remember_language)
        self.store.settings.on_change(self._apply_user_running)
        self.metrics.watch_in_flight(self.generation.in_flight)
        self.loop_lag = LoopLagMonitor(on_sample=self.metrics.loop_lag.observe)
        await start(Step("loop lag", _now(self.loop_lag.start), self.loop_lag.stop))
        # Resume unfinished work first: it needs only REST, not the gateway or the commands.
        await start(Step("generation", self.generation.start, self.generation.stop))
        self.training = create_training_service(self)
        await start(Step("training", self.training.start, self.training.stop))
        self.housekeeping = Housekeeping(
            self.store,
            retention_days=settings.storage.retention_days,
            loop_lag=self.loop_lag,
            sizes=self.memory_sizes,
            forget_idle=self.forms.forget_idle,
        )
        await start(Step("housekeeping", _now(self.housekeeping.start), self.housekeeping.stop))
        self.form_warmup = Background(log, "warming the servers' generation forms")
        await start(Step("form warm-up", _now(self._warm_forms_soon), self.form_warmup.cancel))
        await self.tree.set_translator(CatalogTranslator())
        # The commands come last and go first: no new work arrives while the services stop.
        for name in cog_modules():
            await start(Step(name, partial(self.load_extension, name), self._unloader(name)))

    async def _open_store(self) -> None:
        # A database that cannot be written (read-only filesystem, full disk) is waited for
        # rather than fatal: tasks it holds finish once it can be written again.
        discord_settings = self.settings.discord
        scope = ShardScope.of(discord_settings.shard_count, discord_settings.shard_ids)
        opening = asyncio.create_task(
            Store.open_when_writable(self.settings.storage.database, scope=scope)
        )
        self._store_opening = opening
        try:
            store = await opening
        except asyncio.CancelledError:
            if self.closing:
                raise ShuttingDown("store") from None
            raise
        finally:
            self._store_opening = None
        # Before any work is resumed: no other process may serve the same shards' guilds.
        try:
            await store.db.claim_shards(scope, on_lost=self._shards_lost)
        except BaseException:
            await store.close()
            raise
        log.info("serving %s", scope)
        self.store = store

    def _shards_lost(self) -> None:
        # Another process may take the shards over now: stop at once, and say so in the
        # exit code, so that a supervisor starts this process again (it claims anew).
        log.error("lost the database connection holding this process's shards; stopping")
        self.lost_shards = True
        asyncio.get_running_loop().create_task(self.close(), name="close-after-lost-shards")

    def _unloader(self, name: str) -> Callable[[], Awaitable[None]]:
        async def unload() -> None:
            if name in self.extensions:  # a cog may have been unloaded by hand
                await self.unload_extension(name)

        return unload

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
        self._commands_synced = True
        log.info("synced %d application commands", len(synced))

    async def on_ready(self) -> None:
        """Say once that the bot is up: discord.py calls this again after each reconnection."""
        if self._announced_ready or self.user is None:
            return
        self._announced_ready = True
        commands = "commands synced" if self._commands_synced else "command sync off"
        log.info(
            "ready: logged in as %s, %d servers, %s", self.user.name, len(self.guilds), commands
        )

    async def not_ready(self) -> str | None:
        """Why the bot cannot serve members now, or None when it can (for /readyz)."""
        if self.closing or self.is_closed():
            return "shutting down"
        if (problem := self.gateway.problem()) is not None:
            return problem
        if "store" not in vars(self):  # still waiting for a writable database
            return "store: not open"
        reason = await store_unwritable(self.store)
        return None if reason is None else f"store: {reason}"

    def _warm_forms_soon(self) -> None:
        if self.settings.miaohua.warm_forms:
            self.form_warmup.spawn(self._warm_forms())

    async def _warm_forms(self) -> None:
        """Fetch the forms of the servers with an account, so that their first commands
        after a start answer at once instead of waiting for one each."""
        guilds = await self.store.accounts.guild_ids()
        fetched = await self.forms.warm(guilds)
        log.info(
            "fetched the generation forms of %d of %d servers with an account",
            fetched,
            len(guilds),
        )

    def memory_sizes(self) -> dict[str, int]:
        """Entries of the in-memory per-guild, per-member and per-task state, by structure."""
        return {
            **self.generation.memory_sizes(),
            "status_messages": len(self.delivery.status),
            "discord_requests_waiting": len(self.pacer),
            "moderation_log_posts": len(self.delivery.moderation),
            "forms": len(self.forms),
        }

    def _remember_language(self, settings: GuildSettings) -> None:
        """Keep the guild-language cache in step with the stored settings."""
        self.guild_languages[settings.guild_id] = settings.language

    async def _user_running(self, guild_id: int) -> int | None:
        """A guild's limit on one member's tasks at the service, as currently configured."""
        settings = await self.store.settings.get(guild_id)
        return limits_for(self.settings.limits, settings).user_running

    def _apply_user_running(self, settings: GuildSettings) -> None:
        """Let a changed running limit take effect on the tasks already waiting."""
        limits = limits_for(self.settings.limits, settings)
        self.generation.set_user_running(settings.guild_id, limits.user_running)

    def locale_for(self, interaction: discord.Interaction[discord.Client]) -> str:
        """The interaction's language, then the guild's setting, then en-US."""
        guild_lang = self.guild_languages.get(interaction.guild_id or 0)
        return pick_locale(interaction.locale, guild_lang)

    async def close(self) -> None:
        """Stop the services (last started first), then disconnect from Discord."""
        if self.closing:
            return
        self.closing = True
        log.info("shutting down")
        if self._store_opening is not None:
            self._store_opening.cancel()  # still waiting for a writable database
        await self.lifecycle.stop()
        await super().close()
        self.pacer.close()


def _now(start: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    """A synchronous start (one that spawns its background task) as a lifecycle action."""

    async def run() -> None:
        start()

    return run


def poll_strategy(m: MiaohuaSettings) -> PollStrategy:
    """The configured way of spacing result polls."""
    if m.poll_strategy == "fixed":
        return make_strategy("fixed", seconds=m.poll_interval)
    return make_strategy("adaptive", base_seconds=m.expected_generation_time)


def _bot_kwargs(settings: Settings) -> dict[str, Any]:
    return {
        "command_prefix": commands.when_mentioned,
        "help_command": None,
        "intents": INTENTS,
        "tree_cls": MiaohuaTree,
        "allowed_mentions": discord.AllowedMentions.none(),
        "max_messages": None,
        "chunk_guilds_at_startup": False,
    }


class ShardedMiaohuaBot(MiaohuaBot, commands.AutoShardedBot):
    """The bot spread over several gateway shards.

    A subclass of `MiaohuaBot`, so code typed against `MiaohuaBot` takes either bot; the
    method resolution order puts `AutoShardedClient` before `Client`.
    """

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(
            settings,
            shard_count=settings.discord.shard_count,
            shard_ids=settings.discord.shard_ids,
            **kwargs,
        )

    def _watch_gateway(self) -> GatewayWatch:
        """Follow each shard on its own: the whole-bot READY comes only once all shards are
        ready, so a shard that identifies afresh later would otherwise never count as up."""
        watch = GatewayWatch(lambda: self.shard_ids or range(self.shard_count or 1))
        self.add_listener(watch.connected, "on_shard_ready")
        self.add_listener(watch.connected, "on_shard_resumed")
        self.add_listener(watch.disconnected, "on_shard_disconnect")
        return watch


def create_bot(
    settings: Settings,
    *,
    emulator_base_url: str | None = None,
    demo: DemoAccounts | None = None,
    **client_options: Any,
) -> MiaohuaBot:
    """Build the bot exactly as `miaohua-bot run` does (`client_options` go to discord.py)."""
    point_at_discord(settings)
    hide_gateway_payloads()
    # The bot never joins voice: discord.py's warnings about missing voice libraries are noise.
    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
    sharded = settings.discord.shard_count or settings.discord.shard_ids
    cls = ShardedMiaohuaBot if sharded else MiaohuaBot
    return cls(settings, emulator_base_url=emulator_base_url, demo=demo, **client_options)
