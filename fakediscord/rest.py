"""Discord REST API v10 routes served by the fake, plus the CDN route for attachments."""

from __future__ import annotations

import json
import logging
import time
from typing import TYPE_CHECKING, Any

from aiohttp import BodyPartReader, web

from fakediscord import payloads as p
from fakediscord.recording import RecordedRequest

if TYPE_CHECKING:
    from fakediscord.discord_server import FakeDiscord
    from fakediscord.interactions import FakeInteraction

log = logging.getLogger(__name__)

API_PREFIX = "/api/v10"
# Routes authenticated by the interaction/webhook token in the path, not the bot token.
_TOKEN_ROUTES = ("/webhooks/", "/interactions/")
_FILES = web.RequestKey("files", list)
_PARTS = web.RequestKey("file_parts", list)
_JSON = web.RequestKey("json", object)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """Answer JSON with `Content-Type: application/json` exactly, as discord.py requires."""
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(body=json.dumps(data).encode(), status=status, headers=all_headers)


def error(status: int, code: int, message: str) -> web.Response:
    """Answer a Discord JSON error."""
    return json_response({"code": code, "message": message}, status)


def no_content() -> web.Response:
    """Answer 204 No Content."""
    return web.Response(status=204)


UNKNOWN_MESSAGE = (404, 10008, "Unknown Message")
UNKNOWN_CHANNEL = (404, 10003, "Unknown Channel")
UNKNOWN_WEBHOOK = (404, 10015, "Unknown Webhook")


class RestApi:
    """Route handlers; every request is recorded and may be failed on purpose first."""

    def __init__(self, fake: FakeDiscord):
        self.fake = fake
        self.world = fake.world

    def install(self, app: web.Application) -> None:
        """Add the middleware and every route to an aiohttp application."""
        app.middlewares.append(self._middleware)
        r = app.router
        a = API_PREFIX
        r.add_get(a + "/users/@me", self.get_me)
        r.add_post(a + "/users/@me/channels", self.open_dm)
        r.add_get(a + "/users/{user_id:\\d+}", self.get_user)
        r.add_get(a + "/oauth2/applications/@me", self.get_application)
        r.add_get(a + "/gateway", self.get_gateway)
        r.add_get(a + "/gateway/bot", self.get_gateway_bot)
        for path in ("/applications/{app}/commands", "/applications/{app}/guilds/{guild}/commands"):
            r.add_get(a + path, self.get_commands)
            r.add_put(a + path, self.put_commands)
        r.add_post(a + "/interactions/{ix_id}/{token}/callback", self.interaction_callback)
        r.add_post(a + "/webhooks/{app}/{token}", self.followup)
        hook_message = a + "/webhooks/{app}/{token}/messages/{message_id}"
        r.add_get(hook_message, self.get_webhook_message)
        r.add_patch(hook_message, self.edit_webhook_message)
        r.add_delete(hook_message, self.delete_webhook_message)
        r.add_get(a + "/channels/{channel_id}", self.get_channel)
        r.add_post(a + "/channels/{channel_id}/typing", self.typing)
        r.add_get(a + "/channels/{channel_id}/messages", self.list_messages)
        r.add_post(a + "/channels/{channel_id}/messages", self.create_message)
        message = a + "/channels/{channel_id}/messages/{message_id}"
        r.add_get(message, self.get_message)
        r.add_patch(message, self.edit_message)
        r.add_delete(message, self.delete_message)
        r.add_delete(message + "/reactions", self.clear_reactions)
        r.add_delete(message + "/reactions/{emoji}", self.clear_reactions)
        reaction = message + "/reactions/{emoji}/{user}"
        r.add_put(reaction, self.add_reaction)
        r.add_delete(reaction, self.remove_reaction)
        r.add_get(a + "/guilds/{guild_id}", self.get_guild)
        r.add_get(a + "/guilds/{guild_id}/channels", self.get_guild_channels)
        r.add_get(a + "/guilds/{guild_id}/members/{user_id}", self.get_member)
        r.add_get("/attachments/{attachment_id}/{filename}", self.cdn)
        r.add_route("*", a + "/{tail:.*}", self.unhandled)

    # plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return await handler(request)
        record = await self._record(request)
        self.fake.requests.append(record)
        response = self._scripted_failure(record) or self._auth_failure(request, record)
        verdict = None
        if response is None:
            verdict = self.fake.rate_limits.check(
                record.method, record.path, bot_token="Authorization" in request.headers
            )
        if verdict is not None and verdict.refusal is not None:
            log.debug("rate limited %s %s", record.method, record.path)
            response = json_response(verdict.refusal, 429, verdict.headers)
        if response is None:
            response = (
                self._contract_failure(request, record)
                or self._size_failure(record)
                or await handler(request)
            )
            if verdict is not None:
                response.headers.update(verdict.headers)
        record.status = response.status
        return response

    async def _record(self, request: web.Request) -> RecordedRequest:
        body: Any = None
        files: list[tuple[str, bytes, str]] = []
        parts: list[str] = []
        if request.content_type == "multipart/form-data":
            body, files, parts = await _read_multipart(request)
        elif request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        request[_FILES] = files
        request[_PARTS] = parts
        request[_JSON] = body
        return RecordedRequest(
            method=request.method,
            path=request.path[len(API_PREFIX) :],
            query=dict(request.query),
            json=body,
            files=files,
            headers=dict(request.headers),
        )

    def _scripted_failure(self, record: RecordedRequest) -> web.Response | None:
        for rule in self.fake.failures:
            if rule.matches(record.method, record.path):
                body, headers = rule.answer()
                log.debug("scripted %s for %s %s", rule.status, record.method, record.path)
                return json_response(body, rule.status, headers)
        return None

    def _auth_failure(self, request: web.Request, record: RecordedRequest) -> web.Response | None:
        if record.path.startswith(_TOKEN_ROUTES):
            return None
        if request.headers.get("Authorization") != f"Bot {self.fake.bot_token}":
            return error(401, 0, "401: Unauthorized")
        return None

    def _contract_failure(
        self, request: web.Request, record: RecordedRequest
    ) -> web.Response | None:
        """Check the request against Discord's contract; answer 400 as Discord would."""
        if not self.fake.check_contract or "tail" in request.match_info:
            return None  # routes the fake does not serve are reported as unhandled
        violations = self.fake.contract.check(
            record.method,
            record.path,
            query=record.query,
            content_type=request.content_type if request.body_exists else None,
            body=record.json,
            file_parts=request[_PARTS],
        )
        if not violations:
            return None
        record.violations = violations
        self.fake.violations.extend(violations)
        for violation in violations:
            log.warning("contract violation: %s", violation)
        errors = {
            v.where: {"_errors": [{"code": "CONTRACT_VIOLATION", "message": v.rule}]}
            for v in violations
        }
        body = {"code": 50035, "message": "Invalid Form Body", "errors": errors}
        return json_response(body, 400)

    def _size_failure(self, record: RecordedRequest) -> web.Response | None:
        limit = self.fake.attachment_size_limit
        if any(len(data) > limit for _, data, _ in record.files):
            return error(413, 40005, "Request entity too large")
        return None

    async def unhandled(self, request: web.Request) -> web.Response:
        """Answer 404 for routes the fake does not implement, and remember them."""
        self.fake.unhandled.append(f"{request.method} {request.path[len(API_PREFIX) :]}")
        return error(404, 0, "404: Not Found")

    # users, application, gateway

    async def get_me(self, request: web.Request) -> web.Response:
        """GET /users/@me."""
        return json_response(self.world.bot_user)

    async def get_user(self, request: web.Request) -> web.Response:
        """GET /users/{id}."""
        user = self.world.users.get(int(request.match_info["user_id"]))
        return json_response(user) if user else error(404, 10013, "Unknown User")

    async def open_dm(self, request: web.Request) -> web.Response:
        """POST /users/@me/channels: open (or return) the DM channel with a user."""
        user_id = int(request[_JSON]["recipient_id"])
        if user_id not in self.world.users:
            return error(400, 50033, "Invalid Recipient(s)")
        return json_response(self.world.open_dm(user_id))

    async def get_application(self, request: web.Request) -> web.Response:
        """GET /oauth2/applications/@me."""
        w = self.world
        owner = w.users.get(w.owner_id) or p.user(w.owner_id, "owner")
        return json_response(
            {
                "id": str(w.application_id),
                "name": w.bot_user["username"],
                "icon": None,
                "description": "",
                "summary": "",
                "type": None,
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": owner,
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "tags": [],
                "bot": w.bot_user,
                "approximate_guild_count": len(w.guilds),
                "redirect_uris": [],
                "interactions_endpoint_url": None,
                "integration_types_config": {"0": {}, "1": {}},
            }
        )

    async def get_gateway(self, request: web.Request) -> web.Response:
        """GET /gateway."""
        return json_response({"url": self.fake.gateway_url.rstrip("/")})

    async def get_gateway_bot(self, request: web.Request) -> web.Response:
        """GET /gateway/bot."""
        limit = {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1}
        url = self.fake.gateway_url.rstrip("/")
        shards = self.fake.shard_count
        return json_response({"url": url, "shards": shards, "session_start_limit": limit})

    # application commands

    def _app_guard(self, request: web.Request) -> web.Response | None:
        if request.match_info["app"] != str(self.world.application_id):
            return error(404, 10002, "Unknown Application")
        return None

    async def get_commands(self, request: web.Request) -> web.Response:
        """GET global or guild commands."""
        if (fail := self._app_guard(request)) is not None:
            return fail
        guild = request.match_info.get("guild")
        if guild is None:
            return json_response(self.world.global_commands)
        return json_response(self.world.guild_commands.get(int(guild), []))

    async def put_commands(self, request: web.Request) -> web.Response:
        """PUT (bulk overwrite) global or guild commands."""
        if (fail := self._app_guard(request)) is not None:
            return fail
        guild = request.match_info.get("guild")
        stored = self.world.replace_commands(int(guild) if guild else None, request[_JSON] or [])
        await self.fake.changes.notify()
        return json_response(stored)

    # interactions and their webhooks

    def _interaction(self, request: web.Request) -> FakeInteraction | None:
        app = request.match_info.get("app")
        if app is not None and app != str(self.world.application_id):
            return None
        return self.fake.interactions_by_token.get(request.match_info["token"])

    async def interaction_callback(self, request: web.Request) -> web.Response:
        """POST /interactions/{id}/{token}/callback."""
        ix = self._interaction(request)
        if ix is None or str(ix.id) != request.match_info["ix_id"]:
            return error(404, 10062, "Unknown interaction")
        window = self.fake.interaction_window
        if window is not None and ix.sent_at is not None and time.monotonic() - ix.sent_at > window:
            # Discord forgets an interaction not acknowledged in time: the member is told
            # "The application did not respond", and the late callback finds nothing.
            ix.expired = True
            if ix.callback_at is None:
                ix.callback_at = time.monotonic()
            await self.fake.changes.notify()
            return error(404, 10062, "Unknown interaction")
        if ix.callback is not None:
            return error(400, 40060, "Interaction has already been acknowledged.")
        body = request[_JSON]
        kind = int(body["type"])
        data = body.get("data") or {}
        message = None
        if kind in (4, 5):
            flags = int(data.get("flags") or 0) | (p.LOADING if kind == 5 else 0)
            message = self._interaction_message(ix, {**data, "flags": flags}, request[_FILES])
            ix.original_id = int(message["id"])
        elif kind in (6, 7) and "message" in ix.payload:
            ix.original_id = int(ix.payload["message"]["id"])
            if kind == 7:
                message = await self._edit(ix.original_id, data, request[_FILES])
        await ix.record("callback", body)
        flags = int((message or {}).get("flags", 0))
        summary: dict[str, Any] = {
            "id": str(ix.id),
            "type": ix.type,
            "response_message_loading": kind == 5,
            "response_message_ephemeral": bool(flags & p.EPHEMERAL),
        }
        if message is not None:
            summary["response_message_id"] = message["id"]
        resource: dict[str, Any] = {"type": kind}
        if message is not None:
            resource["message"] = message
        if request.query.get("with_response") in ("1", "true", "True"):
            return json_response({"interaction": summary, "resource": resource})
        return no_content()

    def _interaction_message(
        self, ix: FakeInteraction, body: dict[str, Any], files: list[tuple[str, bytes, str]]
    ) -> dict[str, Any]:
        w = self.world
        user = ix.payload.get("member", {}).get("user") or ix.payload.get("user")
        metadata = {
            "id": str(ix.id),
            "type": ix.type,
            "user": user,
            "authorizing_integration_owners": ix.payload.get("authorizing_integration_owners", {}),
        }
        guild_id = ix.payload.get("guild_id")
        message = p.message(
            w.ids.next(),
            int(ix.payload["channel_id"]),
            w.bot_user,
            body,
            attachments=w.upload_attachments(body, files),
            guild_id=int(guild_id) if guild_id else None,
            webhook_id=w.application_id,
            interaction_metadata=metadata,
        )
        if int(message["flags"]) & p.EPHEMERAL:
            w.interaction_messages[int(message["id"])] = message
        else:
            # A public answer is a message of its channel like any other: listed there, and
            # the bot may edit, delete or react to it through the channel's routes.
            w.channel_messages.setdefault(int(message["channel_id"]), {})[int(message["id"])] = (
                message
            )
        return message

    async def followup(self, request: web.Request) -> web.Response:
        """POST /webhooks/{app}/{token}: send a followup message."""
        ix = self._interaction(request)
        if ix is None or ix.callback is None:
            return error(*UNKNOWN_WEBHOOK)
        body = request[_JSON] or {}
        original = ix.original()
        if original is not None and original["flags"] & p.LOADING:
            # The first followup after a deferred "thinking" response replaces the loading message.
            message = await self._edit(int(original["id"]), body, request[_FILES])
            message["flags"] = int(body.get("flags") or 0) | (original["flags"] & p.EPHEMERAL)
        else:
            message = self._interaction_message(ix, body, request[_FILES])
        ix.followup_ids.append(int(message["id"]))
        await ix.record("followup", body)
        if request.query.get("wait") in ("1", "true", "True"):
            return json_response(message)
        return no_content()

    def _webhook_target(self, request: web.Request) -> tuple[FakeInteraction, int, str] | None:
        ix = self._interaction(request)
        if ix is None:
            return None
        raw = request.match_info["message_id"]
        if raw == "@original":
            if ix.original_id is None:
                return None
            return ix, ix.original_id, "original"
        message_id = int(raw)
        if message_id == ix.original_id:
            return ix, message_id, "original"
        return (ix, message_id, "followup") if message_id in ix.followup_ids else None

    async def get_webhook_message(self, request: web.Request) -> web.Response:
        """GET /webhooks/{app}/{token}/messages/{id|@original}."""
        target = self._webhook_target(request)
        message = self.world.find_message(target[1]) if target else None
        return json_response(message) if message else error(*UNKNOWN_MESSAGE)

    async def edit_webhook_message(self, request: web.Request) -> web.Response:
        """PATCH /webhooks/{app}/{token}/messages/{id|@original}."""
        target = self._webhook_target(request)
        if target is None or self.world.find_message(target[1]) is None:
            return error(*UNKNOWN_MESSAGE)
        ix, message_id, which = target
        body = request[_JSON] or {}
        message = await self._edit(message_id, body, request[_FILES])
        await ix.record(f"edit_{which}", body)
        return json_response(message)

    async def delete_webhook_message(self, request: web.Request) -> web.Response:
        """DELETE /webhooks/{app}/{token}/messages/{id|@original}."""
        target = self._webhook_target(request)
        if target is None or self.world.find_message(target[1]) is None:
            return error(*UNKNOWN_MESSAGE)
        ix, message_id, which = target
        await self._delete(message_id)
        await ix.record(f"delete_{which}", {})
        return no_content()

    # channels and messages

    def _channel(self, request: web.Request) -> dict[str, Any] | None:
        return self.world.channels.get(int(request.match_info["channel_id"]))

    async def get_channel(self, request: web.Request) -> web.Response:
        """GET /channels/{id}."""
        channel = self._channel(request)
        return json_response(channel) if channel else error(*UNKNOWN_CHANNEL)

    async def typing(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/typing."""
        return no_content() if self._channel(request) else error(*UNKNOWN_CHANNEL)

    async def list_messages(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages (newest first, `limit` only)."""
        channel = self._channel(request)
        if channel is None:
            return error(*UNKNOWN_CHANNEL)
        limit = int(request.query.get("limit", 50))
        messages = self.world.messages_in(int(channel["id"]))
        return json_response(list(reversed(messages))[:limit])

    async def create_message(self, request: web.Request) -> web.Response:
        """POST /channels/{id}/messages (JSON or multipart)."""
        channel = self._channel(request)
        if channel is None:
            return error(*UNKNOWN_CHANNEL)
        if channel["type"] == 1 and int(channel["recipients"][0]["id"]) in self.world.dm_closed:
            return error(403, 50007, "Cannot send messages to this user")
        body = request[_JSON] or {}
        keys = ("content", "embeds", "components", "poll", "sticker_ids")
        if not request[_FILES] and not any(body.get(k) for k in keys):
            return error(400, 50006, "Cannot send an empty message")
        w = self.world
        channel_id = int(channel["id"])
        nonce_key = (channel_id, str(body.get("nonce")))
        if body.get("enforce_nonce") and body.get("nonce") is not None:
            # Discord answers a repeated nonce with the message it already created.
            earlier = w.channel_messages.get(channel_id, {}).get(w.nonces.get(nonce_key, 0))
            if earlier is not None:
                return json_response(earlier)
        guild_id = int(channel["guild_id"]) if "guild_id" in channel else None
        message = p.message(
            w.ids.next(),
            channel_id,
            w.bot_user,
            body,
            attachments=w.upload_attachments(body, request[_FILES]),
            guild_id=guild_id,
        )
        w.channel_messages.setdefault(channel_id, {})[int(message["id"])] = message
        if body.get("nonce") is not None:
            w.nonces[nonce_key] = int(message["id"])
        event = dict(message)
        if guild_id is not None:
            member = w.member_payload(guild_id, w.bot_user_id)
            member.pop("user")
            event["member"] = member
        await self.fake.gateway.dispatch("MESSAGE_CREATE", event)
        await self.fake.changes.notify()
        return json_response(message)

    def _channel_message(self, request: web.Request) -> dict[str, Any] | None:
        messages = self.world.channel_messages.get(int(request.match_info["channel_id"]), {})
        return messages.get(int(request.match_info["message_id"]))

    async def get_message(self, request: web.Request) -> web.Response:
        """GET /channels/{id}/messages/{id}."""
        message = self._channel_message(request)
        return json_response(message) if message else error(*UNKNOWN_MESSAGE)

    async def edit_message(self, request: web.Request) -> web.Response:
        """PATCH /channels/{id}/messages/{id}."""
        message = self._channel_message(request)
        if message is None:
            return error(*UNKNOWN_MESSAGE)
        body = request[_JSON] or {}
        return json_response(await self._edit(int(message["id"]), body, request[_FILES]))

    async def delete_message(self, request: web.Request) -> web.Response:
        """DELETE /channels/{id}/messages/{id}."""
        message = self._channel_message(request)
        if message is None:
            return error(*UNKNOWN_MESSAGE)
        await self._delete(int(message["id"]))
        return no_content()

    async def _edit(
        self, message_id: int, body: dict[str, Any], files: list[tuple[str, bytes, str]]
    ) -> dict[str, Any]:
        message = self.world.find_message(message_id)
        assert message is not None
        for key in ("content", "embeds", "components"):
            if key in body:
                empty: Any = "" if key == "content" else []
                message[key] = empty if body[key] is None else body[key]
        if "flags" in body and body["flags"] is not None:
            # Only SUPPRESS_EMBEDS can change after creation; the loading flag clears on edit.
            message["flags"] = (message["flags"] & p.EPHEMERAL) | (int(body["flags"]) & 4)
        else:
            message["flags"] &= ~p.LOADING
        if "attachments" in body or files:
            message["attachments"] = self.world.upload_attachments(
                body, files, message["attachments"]
            )
        message["edited_timestamp"] = p.now_iso()
        if int(message["channel_id"]) in self.world.channel_messages and (
            message_id in self.world.channel_messages[int(message["channel_id"])]
        ):
            await self.fake.gateway.dispatch("MESSAGE_UPDATE", message)
        await self.fake.changes.notify()
        return message

    async def _delete(self, message_id: int) -> None:
        await self.fake.delete_message(message_id)

    # reactions

    async def add_reaction(self, request: web.Request) -> web.Response:
        """PUT /channels/{id}/messages/{id}/reactions/{emoji}/@me."""
        message = self._channel_message(request)
        if message is None:
            return error(*UNKNOWN_MESSAGE)
        if request.match_info["user"] != "@me":
            return error(405, 0, "405: Method Not Allowed")
        await self.fake.set_reaction(message, request.match_info["emoji"], self.world.bot_user_id)
        return no_content()

    async def remove_reaction(self, request: web.Request) -> web.Response:
        """DELETE .../reactions/{emoji}/@me or .../{emoji}/{user_id}."""
        message = self._channel_message(request)
        if message is None:
            return error(*UNKNOWN_MESSAGE)
        raw_user = request.match_info["user"]
        user_id = self.world.bot_user_id if raw_user == "@me" else int(raw_user)
        emoji = request.match_info["emoji"]
        await self.fake.set_reaction(message, emoji, user_id, added=False)
        return no_content()

    async def clear_reactions(self, request: web.Request) -> web.Response:
        """DELETE .../reactions (all) or .../reactions/{emoji} (one emoji)."""
        message = self._channel_message(request)
        if message is None:
            return error(*UNKNOWN_MESSAGE)
        key = (int(message["channel_id"]), int(message["id"]))
        emoji = request.match_info.get("emoji")
        current = self.world.reactions.get(key, {})
        removed = {emoji: current.pop(emoji, set())} if emoji else dict(current)
        if emoji is None:
            current.clear()
        event: dict[str, Any] = {"channel_id": message["channel_id"], "message_id": message["id"]}
        if "guild_id" in message:
            event["guild_id"] = message["guild_id"]
        if emoji is None:
            await self.fake.gateway.dispatch("MESSAGE_REACTION_REMOVE_ALL", event)
        elif removed[emoji]:
            event["emoji"] = p.partial_emoji(emoji)
            await self.fake.gateway.dispatch("MESSAGE_REACTION_REMOVE_EMOJI", event)
        await self.fake.changes.notify()
        return no_content()

    # guilds

    def _guild_id(self, request: web.Request) -> int | None:
        guild_id = int(request.match_info["guild_id"])
        return guild_id if guild_id in self.world.guilds else None

    async def get_guild(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}."""
        guild_id = self._guild_id(request)
        if guild_id is None:
            return error(404, 10004, "Unknown Guild")
        data = self.world.guild_payload(guild_id)
        for key in ("members", "channels", "threads", "presences", "voice_states", "joined_at"):
            data.pop(key, None)
        return json_response(data)

    async def get_guild_channels(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/channels."""
        guild_id = self._guild_id(request)
        if guild_id is None:
            return error(404, 10004, "Unknown Guild")
        return json_response(list(self.world.guilds[guild_id].channels.values()))

    async def get_member(self, request: web.Request) -> web.Response:
        """GET /guilds/{id}/members/{user_id}."""
        guild_id = self._guild_id(request)
        if guild_id is None:
            return error(404, 10004, "Unknown Guild")
        user_id = int(request.match_info["user_id"])
        if user_id not in self.world.guilds[guild_id].members:
            return error(404, 10007, "Unknown Member")
        return json_response(self.world.member_payload(guild_id, user_id))

    # CDN

    async def cdn(self, request: web.Request) -> web.Response:
        """Serve attachment bytes by id."""
        stored = self.world.files.get(int(request.match_info["attachment_id"]))
        if stored is None or stored.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        stored.downloads += 1
        ctype = stored.content_type or "application/octet-stream"
        return web.Response(body=stored.data, headers={"Content-Type": ctype})


async def _read_multipart(
    request: web.Request,
) -> tuple[Any, list[tuple[str, bytes, str]], list[str]]:
    """Split a multipart body into payload_json, files ordered by their files[n] index, and
    the names of the file parts."""
    body: Any = None
    parts: list[tuple[int, tuple[str, bytes, str]]] = []
    names: list[str] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        data = await part.read()
        if part.name == "payload_json":
            body = json.loads(data)
        elif part.filename:
            ctype = part.headers.get("Content-Type", "application/octet-stream")
            index = _file_index(part.name or "", len(parts))
            parts.append((index, (part.filename, bytes(data), ctype)))
            names.append(part.name or "")
    return body, [f for _, f in sorted(parts, key=lambda x: x[0])], names


def _file_index(name: str, fallback: int) -> int:
    # discord.py names upload parts files[0], files[1], ...
    inside = name.partition("[")[2].rstrip("]")
    return int(inside) if inside.isdigit() else fallback
