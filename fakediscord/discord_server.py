"""FakeDiscord: a loopback Discord (REST v10, gateway v10, CDN) for the real discord.py client."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from aiohttp import web

from fakediscord import payloads as p
from fakediscord.contract import DiscordContract, Violation, default_contract, format_violations
from fakediscord.gateway import Gateway
from fakediscord.interactions import (
    FakeInteraction,
    LogEntry,
    PayloadBuilder,
    component_ids,
    find_component,
    modal_submit_components,
)
from fakediscord.ratelimits import RateLimits
from fakediscord.recording import FailureRule, RecordedRequest
from fakediscord.rest import API_PREFIX, RestApi
from fakediscord.signals import Changes
from fakediscord.world import MemberState, World

log = logging.getLogger(__name__)

MessageRef = dict[str, Any] | tuple[int, int]


class FakeDiscord:
    """A Discord server on 127.0.0.1 that the unmodified discord.py client can talk to."""

    def __init__(
        self,
        application_id: int = 1000,
        bot_user_id: int = 1000,
        bot_token: str = "fake-token",
        *,
        bot_name: str = "FakeBot",
        owner_id: int = 1,
        heartbeat_interval: float = 41.25,
        attachment_size_limit: int = 10 * 1024 * 1024,
        wait_timeout: float = 5.0,
        port: int = 0,
        check_contract: bool = True,
        rate_limits: RateLimits | None = None,
        shard_count: int = 1,
        require_sharding: bool = False,
        interaction_window: float | None = 3.0,
    ):
        self.bot_token = bot_token
        # Every request is checked against Discord's API contract and answered 400 like
        # Discord would when it breaks it; tests assert `violations` stays empty.
        self.check_contract = check_contract
        self.contract: DiscordContract = default_contract()
        self.violations: list[Violation] = []
        # Discord's rate limits, real values unless given: answers 429 like Discord would,
        # and `rate_limits.stats` shows what they cost.
        self.rate_limits = RateLimits() if rate_limits is None else rate_limits
        self.wait_timeout = wait_timeout
        # Seconds Discord waits for an interaction's callback before it drops the interaction
        # (None: forever).
        self.interaction_window = interaction_window
        self.world = World(application_id, bot_user_id, bot_name, owner_id)
        self.changes = Changes()
        self.gateway = Gateway(self.world, self.changes, bot_token, heartbeat_interval)
        self.shard_count = shard_count
        self.require_sharding = require_sharding
        self.builder = PayloadBuilder(self.world, attachment_size_limit)
        self.requests: list[RecordedRequest] = []
        self.unhandled: list[str] = []
        self.failures: list[FailureRule] = []
        self.interactions: dict[int, FakeInteraction] = {}
        self.interactions_by_token: dict[str, FakeInteraction] = {}
        self._runner: web.AppRunner | None = None
        self._port = port

    # lifecycle

    async def start(self) -> None:
        """Listen on loopback: the port given, else an ephemeral one."""
        # Well above any upload limit, so oversized files get Discord's 413, not aiohttp's.
        app = web.Application(client_max_size=256 * 1024 * 1024)
        RestApi(self).install(app)
        app.router.add_get("/", self.gateway.handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port)
        await site.start()
        self._port = self._runner.addresses[0][1]
        self.world.cdn_base_url = f"http://127.0.0.1:{self._port}"
        self.gateway.resume_url = self.gateway_url
        log.debug("fake discord listening on port %s", self._port)

    async def stop(self) -> None:
        """Close gateway connections and the server."""
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def api_base_url(self) -> str:
        """Value for `discord.http.Route.BASE`."""
        return f"http://127.0.0.1:{self._port}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        """Value for `discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`."""
        return f"ws://127.0.0.1:{self._port}/"

    @property
    def attachment_size_limit(self) -> int:
        """Per-file upload limit: sent in interactions and enforced on uploads (413)."""
        return self.builder.attachment_size_limit

    @attachment_size_limit.setter
    def attachment_size_limit(self, value: int) -> None:
        self.builder.attachment_size_limit = value

    @property
    def shard_count(self) -> int:
        """The shard count GET /gateway/bot recommends."""
        return self.gateway.shard_count

    @shard_count.setter
    def shard_count(self, value: int) -> None:
        if value < 1:
            raise ValueError("shard_count must be at least 1")
        self.gateway.shard_count = value

    @property
    def require_sharding(self) -> bool:
        """Close a session identifying with fewer than `shard_count` shards with 4011."""
        return self.gateway.require_sharding

    @require_sharding.setter
    def require_sharding(self, value: bool) -> None:
        self.gateway.require_sharding = value

    @property
    def application_id(self) -> int:
        """The application id the fake reports."""
        return self.world.application_id

    @property
    def bot_user_id(self) -> int:
        """The bot user's id."""
        return self.world.bot_user_id

    # world setup (before the bot connects)

    def add_guild(self, guild_id: int, name: str = "Test Guild", owner_id: int = 1) -> None:
        """Add a guild; it is sent as GUILD_CREATE after READY."""
        self.world.add_guild(guild_id, name, owner_id)

    def add_channel(
        self, guild_id: int, channel_id: int, name: str = "general", *, nsfw: bool = False
    ) -> None:
        """Add a text channel to a guild."""
        self.world.add_channel(guild_id, p.text_channel(channel_id, guild_id, name, nsfw=nsfw))

    def add_member(
        self,
        guild_id: int,
        user_id: int,
        name: str = "user",
        *,
        manage_guild: bool = False,
        manage_messages: bool = False,
        roles: list[int] | None = None,
        dm_closed: bool = False,
    ) -> None:
        """Add a member; permissions follow from the flags and roles."""
        member = MemberState(
            user_id, name, manage_guild, manage_messages, list(roles or []), dm_closed
        )
        self.world.add_member(guild_id, member)

    def set_permissions(
        self,
        guild_id: int,
        user_id: int,
        *,
        manage_guild: bool | None = None,
        manage_messages: bool | None = None,
    ) -> None:
        """Grant or revoke a member's permission flags; later interactions carry the change."""
        member = self.world.guild(guild_id).members[user_id]
        if manage_guild is not None:
            member.manage_guild = manage_guild
        if manage_messages is not None:
            member.manage_messages = manage_messages

    def add_role(self, guild_id: int, role_id: int, name: str, permissions: int = 0) -> None:
        """Add a role to a guild."""
        guild = self.world.guild(guild_id)
        guild.roles[role_id] = p.role(role_id, name, permissions, position=len(guild.roles))

    def add_attachment(
        self, data: bytes, filename: str, content_type: str | None = None
    ) -> dict[str, Any]:
        """Store bytes on the fake CDN and return their attachment object (for slash options)."""
        return self.world.store_file(data, filename, content_type)

    def fail(
        self,
        method: str,
        path_pattern: str,
        status: int,
        *,
        times: int = 1,
        retry_after: float = 0.1,
        body: Any = None,
    ) -> None:
        """Answer the next `times` requests whose path fully matches the regex with `status`."""
        pattern = re.compile(path_pattern)
        self.failures.append(FailureRule(method.upper(), pattern, status, times, retry_after, body))

    # inspection

    def verify_contract(self) -> None:
        """Raise AssertionError naming route, JSON path and rule of every contract violation."""
        if self.violations:
            raise AssertionError(format_violations(self.violations))

    def channel_messages(self, channel_id: int) -> list[dict[str, Any]]:
        """Messages currently in a channel (guild or DM) that the bot posted there."""
        return self.world.messages_in(channel_id)

    def dm_messages(self, user_id: int) -> list[dict[str, Any]]:
        """Messages currently in the bot's DM channel with a user."""
        channel_id = self.world.dm_by_user.get(user_id)
        return [] if channel_id is None else self.world.messages_in(channel_id)

    def message(self, message_id: int) -> dict[str, Any] | None:
        """Any stored message (channel, DM or interaction response) by id."""
        return self.world.find_message(message_id)

    def interaction_log(self, interaction_id: int) -> list[LogEntry]:
        """Return (kind, body) pairs: callback, edit_original, followup, edit_followup, delete_*."""
        return list(self.interactions[int(interaction_id)].log)

    def reactions(self, channel_id: int, message_id: int) -> dict[str, set[int]]:
        """Emoji -> user ids currently reacting to a message."""
        current = self.world.reactions.get((int(channel_id), int(message_id)), {})
        return {emoji: set(users) for emoji, users in current.items() if users}

    async def wait_for_message(
        self,
        channel_id: int,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        timeout: float = 10,
    ) -> dict[str, Any]:
        """Wait until a message in the channel (created or edited) satisfies the predicate."""

        def check() -> dict[str, Any] | None:
            for message in reversed(self.world.messages_in(channel_id)):
                if predicate is None or predicate(message):
                    return message
            return None

        return await self.changes.wait(check, timeout, f"a matching message in {channel_id}")

    # interactions

    async def slash(
        self,
        name: str,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        group: str | None = None,
        attachments: dict[str, dict[str, Any]] | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Invoke a registered slash command as a user."""
        command = await self._command(name, 1, guild_id)
        values = {**(options or {}), **(attachments or {})}
        built, resolved = self.builder.command_options(
            command, values, guild_id=guild_id, subcommand=subcommand, group=group
        )
        data = self._command_data(command, built, resolved)
        return await self._send(2, data, user_id, guild_id, channel_id, locale)

    async def context_menu(
        self,
        name: str,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        target_message: dict[str, Any],
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Invoke a registered message context-menu command on a message."""
        command = await self._command(name, 3, guild_id)
        resolved = {"messages": {str(target_message["id"]): target_message}}
        data = self._command_data(command, [], resolved)
        data["target_id"] = str(target_message["id"])
        return await self._send(2, data, user_id, guild_id, channel_id, locale)

    async def autocomplete(
        self,
        name: str,
        *,
        focused: str,
        options: dict[str, Any],
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        subcommand: str | None = None,
        group: str | None = None,
        locale: str = "en-US",
    ) -> list[dict[str, Any]]:
        """Send an autocomplete interaction and return the choices the bot answered with."""
        command = await self._command(name, 1, guild_id)
        values = dict(options)
        typed = values.pop(focused, "")
        built, resolved = self.builder.command_options(
            command,
            {focused: typed, **values},
            guild_id=guild_id,
            subcommand=subcommand,
            group=group,
            focused=focused,
        )
        data = self._command_data(command, built, resolved)
        ix = await self._send(4, data, user_id, guild_id, channel_id, locale)
        body = await ix.response(self.wait_timeout)
        if body.get("type") != 8:
            raise AssertionError(f"expected an autocomplete result (type 8), got {body}")
        return list(body["data"]["choices"])

    async def click(
        self,
        message: dict[str, Any],
        custom_id: str,
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        values: list[str] | None = None,
        locale: str = "en-US",
    ) -> FakeInteraction:
        """Click a button (or pick select `values`) on a message the bot created."""
        stored = self.world.find_message(int(message["id"]))
        if stored is None:
            raise LookupError(f"message {message['id']} was not created through the fake")
        component = find_component(stored.get("components") or [], custom_id)
        if component is None:
            known = component_ids(stored.get("components") or [])
            raise LookupError(f"no component {custom_id!r} on message {stored['id']}; has {known}")
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": component["type"]}
        if values is not None:
            data["values"] = values
        return await self._send(3, data, user_id, guild_id, channel_id, locale, message=stored)

    async def submit_modal(
        self,
        custom_id: str,
        values: dict[str, Any],
        *,
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        locale: str = "en-US",
        shown_to: int | None = None,
    ) -> FakeInteraction:
        """Submit the modal the bot most recently showed this user with this custom_id.

        `custom_id` may also be the prefix before a per-opening suffix (`prefix:xyz`).
        `shown_to` picks the modal shown to another user: Discord accepts a submission of
        any open modal from whoever sends its custom_id (a modified client can).
        """
        opener = user_id if shown_to is None else shown_to

        def matches(ix: FakeInteraction) -> bool:
            shown = (ix.modal or {}).get("custom_id", "")
            user = (ix.payload.get("member") or {}).get("user") or ix.payload.get("user") or {}
            same_user = str(user.get("id")) == str(opener)
            return same_user and (shown == custom_id or shown.startswith(custom_id + ":"))

        source = next((ix for ix in reversed(self.interactions.values()) if matches(ix)), None)
        if source is None or source.modal is None:
            raise LookupError(f"the bot never showed user {opener} a modal {custom_id!r}")
        components = modal_submit_components(source.modal, values)
        data = {"custom_id": source.modal["custom_id"], "components": components}
        message = source.payload.get("message")
        return await self._send(5, data, user_id, guild_id, channel_id, locale, message=message)

    async def delete_message(self, message_id: int) -> bool:
        """Delete a message as a moderator would (MESSAGE_DELETE follows); False if unknown."""
        message = self.world.remove_message(int(message_id))
        if message is None:
            return False
        event = {"id": message["id"], "channel_id": message["channel_id"]}
        if "guild_id" in message:
            event["guild_id"] = message["guild_id"]
        await self.gateway.dispatch("MESSAGE_DELETE", event)
        await self.changes.notify()
        return True

    async def react(
        self, message: MessageRef, emoji: str, *, user_id: int, guild_id: int | None
    ) -> None:
        """Dispatch MESSAGE_REACTION_ADD as if a user reacted."""
        await self.set_reaction(self._message_ref(message), emoji, user_id, guild_id=guild_id)

    async def unreact(
        self, message: MessageRef, emoji: str, *, user_id: int, guild_id: int | None
    ) -> None:
        """Dispatch MESSAGE_REACTION_REMOVE as if a user removed a reaction."""
        ref = self._message_ref(message)
        await self.set_reaction(ref, emoji, user_id, guild_id=guild_id, added=False)

    async def set_reaction(
        self,
        message: dict[str, Any],
        emoji: str,
        user_id: int,
        *,
        guild_id: int | None = None,
        added: bool = True,
    ) -> None:
        """Record a reaction change and dispatch the matching gateway event."""
        channel_id, message_id = int(message["channel_id"]), int(message["id"])
        if guild_id is None and message.get("guild_id"):
            guild_id = int(message["guild_id"])
        by_emoji = self.world.reactions.setdefault((channel_id, message_id), {})
        users = by_emoji.setdefault(emoji, set())
        if added:
            users.add(user_id)
        else:
            users.discard(user_id)
        event: dict[str, Any] = {
            "user_id": str(user_id),
            "channel_id": str(channel_id),
            "message_id": str(message_id),
            "emoji": p.partial_emoji(emoji),
            "burst": False,
            "type": 0,
        }
        if guild_id is not None:
            event["guild_id"] = str(guild_id)
        if added:
            author = (message.get("author") or {}).get("id")
            if author:
                event["message_author_id"] = author
            event["burst_colors"] = []
            if guild_id is not None:
                event["member"] = self.world.member_payload(guild_id, user_id)
        kind = "MESSAGE_REACTION_ADD" if added else "MESSAGE_REACTION_REMOVE"
        await self.gateway.dispatch(kind, event)
        await self.changes.notify()

    # internals

    def _message_ref(self, message: MessageRef) -> dict[str, Any]:
        if isinstance(message, tuple):
            channel_id, message_id = message
            stored = self.world.find_message(int(message_id))
            return stored or {"id": str(message_id), "channel_id": str(channel_id)}
        return self.world.find_message(int(message["id"])) or message

    async def _command(self, name: str, cmd_type: int, guild_id: int | None) -> dict[str, Any]:
        try:
            return await self.changes.wait(
                lambda: self.world.find_command(name, cmd_type, guild_id),
                self.wait_timeout,
                f"command {name!r}",
            )
        except TimeoutError:
            known = self.world.command_names()
            raise LookupError(
                f"command {name!r} (type {cmd_type}) was never registered; registered: {known}"
            ) from None

    @staticmethod
    def _command_data(
        command: dict[str, Any], options: list[dict[str, Any]], resolved: dict[str, Any]
    ) -> dict[str, Any]:
        data: dict[str, Any] = {k: command[k] for k in ("id", "name", "type")}
        if options:
            data["options"] = options
        if resolved:
            data["resolved"] = resolved
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        return data

    async def _send(
        self,
        ix_type: int,
        data: dict[str, Any],
        user_id: int,
        guild_id: int | None,
        channel_id: int,
        locale: str,
        *,
        message: dict[str, Any] | None = None,
    ) -> FakeInteraction:
        payload = self.builder.interaction(
            ix_type,
            data,
            user_id=user_id,
            guild_id=guild_id,
            channel_id=channel_id,
            locale=locale,
            message=message,
        )
        ix = FakeInteraction(payload, self.world, self.changes)
        self.interactions[ix.id] = ix
        self.interactions_by_token[ix.token] = ix
        await self.gateway.wait_serving(guild_id, self.wait_timeout)
        ix.sent_at = time.monotonic()
        await self.gateway.dispatch("INTERACTION_CREATE", payload)
        return ix
