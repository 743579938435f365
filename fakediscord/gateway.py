"""Discord gateway v10 over a websocket: HELLO, IDENTIFY/READY, heartbeats, dispatches."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from fakediscord.signals import Changes
from fakediscord.world import World

log = logging.getLogger(__name__)

DISPATCH, HEARTBEAT, IDENTIFY, RESUME, REQUEST_MEMBERS = 0, 1, 2, 6, 8
HELLO, HEARTBEAT_ACK = 10, 11
CLOSE_AUTH_FAILED = 4004

# Gateway intents (https://discord.com/developers/docs/events/gateway#list-of-intents): a
# session gets message and reaction events only with the intent that covers them.
GUILD_MESSAGES, GUILD_MESSAGE_REACTIONS = 1 << 9, 1 << 10
DIRECT_MESSAGES, DIRECT_MESSAGE_REACTIONS = 1 << 12, 1 << 13
_MESSAGE_EVENTS = frozenset(
    {"MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK"}
)
_REACTION_EVENTS = frozenset(
    {
        "MESSAGE_REACTION_ADD",
        "MESSAGE_REACTION_REMOVE",
        "MESSAGE_REACTION_REMOVE_ALL",
        "MESSAGE_REACTION_REMOVE_EMOJI",
    }
)


def required_intent(event: str, data: dict[str, Any]) -> int:
    """The intent a session needs to receive `event` (0: none needed)."""
    in_guild = "guild_id" in data
    if event in _MESSAGE_EVENTS:
        return GUILD_MESSAGES if in_guild else DIRECT_MESSAGES
    if event in _REACTION_EVENTS:
        return GUILD_MESSAGE_REACTIONS if in_guild else DIRECT_MESSAGE_REACTIONS
    return 0


@dataclass
class Session:
    """One bot connection to the gateway."""

    ws: web.WebSocketResponse
    session_id: str = ""
    seq: int = 0
    # The last sequence number the bot reported in a heartbeat: it has read every event up to it.
    heard_seq: int = -1
    identified: bool = False
    intents: int = 0


class Gateway:
    """Serve gateway connections and dispatch events to every identified session."""

    def __init__(
        self,
        world: World,
        changes: Changes,
        token: str,
        heartbeat_interval: float,
        resume_url: str = "",
    ):
        self.world = world
        self.changes = changes
        self.token = token
        self.heartbeat_interval = heartbeat_interval
        self.resume_url = resume_url
        self.sessions: list[Session] = []
        self.identifies = 0
        self.resumes = 0
        self.heartbeats = 0
        self.close_timeout = 0.5

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        """Run one websocket connection until the client closes it."""
        # discord.py does not answer a server close frame, so do not wait long for it.
        ws = web.WebSocketResponse(autoping=True, timeout=self.close_timeout)
        await ws.prepare(request)
        session = Session(ws)
        self.sessions.append(session)
        try:
            await self._send(session, {"op": HELLO, "d": {"heartbeat_interval": self._interval_ms}})
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._on_message(session, json.loads(msg.data))
        finally:
            self.sessions.remove(session)
            await self.changes.notify()
        return ws

    @property
    def _interval_ms(self) -> int:
        return int(self.heartbeat_interval * 1000)

    def connected(self) -> bool:
        """Return whether at least one session has identified."""
        return any(s.identified for s in self.sessions)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH event to every identified session whose intents cover it."""
        intent = required_intent(event, data)
        for session in list(self.sessions):
            if session.identified and not session.ws.closed and session.intents & intent == intent:
                await self._dispatch(session, event, data)

    async def close(self, code: int = 1000) -> None:
        """Close every open connection (4000 makes discord.py reconnect and RESUME)."""
        await asyncio.gather(*(s.ws.close(code=code) for s in list(self.sessions)))

    async def _on_message(self, session: Session, msg: dict[str, Any]) -> None:
        op, data = msg.get("op"), msg.get("d")
        if op == HEARTBEAT:
            self.heartbeats += 1
            session.heard_seq = data if isinstance(data, int) else 0
            await self._send(session, {"op": HEARTBEAT_ACK})
            await self.changes.notify()
        elif op == IDENTIFY:
            await self._identify(session, data)
        elif op == RESUME:
            await self._resume(session, data)
        elif op == REQUEST_MEMBERS:
            await self._members_chunk(session, data)
        else:
            log.debug("gateway op %s ignored", op)

    async def _identify(self, session: Session, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await session.ws.close(code=CLOSE_AUTH_FAILED, message=b"Authentication failed.")
            return
        self.identifies += 1
        session.session_id = secrets.token_hex(16)
        session.intents = int(data.get("intents", 0))
        session.identified = True
        w = self.world
        ready = {
            "v": 10,
            "user": w.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in w.guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "shard": data.get("shard") or [0, 1],
            "application": {"id": str(w.application_id), "flags": 0},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["fake-discord"],
        }
        await self._dispatch(session, "READY", ready)
        for guild_id in w.guilds:
            await self._dispatch(session, "GUILD_CREATE", w.guild_payload(guild_id))
        await self.changes.notify()

    async def _resume(self, session: Session, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await session.ws.close(code=CLOSE_AUTH_FAILED, message=b"Authentication failed.")
            return
        session.session_id = data.get("session_id", "")
        session.seq = int(data.get("seq") or 0)
        session.identified = True
        self.resumes += 1
        await self._dispatch(session, "RESUMED", {"_trace": ["fake-discord"]})
        await self.changes.notify()

    async def _members_chunk(self, session: Session, data: dict[str, Any]) -> None:
        guild_id = int(data["guild_id"])
        user_ids = list(self.world.guild(guild_id).members)
        members = [self.world.member_payload(guild_id, u) for u in user_ids]
        chunk = {
            "guild_id": str(guild_id),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
            "presences": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        await self._dispatch(session, "GUILD_MEMBERS_CHUNK", chunk)

    async def _dispatch(self, session: Session, event: str, data: dict[str, Any]) -> None:
        session.seq += 1
        await self._send(session, {"op": DISPATCH, "t": event, "s": session.seq, "d": data})

    async def _send(self, session: Session, payload: dict[str, Any]) -> None:
        try:
            await session.ws.send_str(json.dumps(payload))
        except (ConnectionError, RuntimeError) as exc:
            # A client that went away mid-send just misses the event, as with real Discord.
            log.debug("gateway send failed: %s", exc)

    async def sync(self, timeout: float = 5) -> None:
        """Wait until every connected bot has read every event dispatched to it so far.

        Asks for a heartbeat (op 1 from the server, as Discord does) and waits for the answer:
        a client reads the gateway in order and a heartbeat carries the last sequence number
        it read, so once it reaches the last one sent, every earlier event has been parsed and
        handed to the client's event handlers.
        """
        sent = {id(s): s.seq for s in self.sessions if s.identified and not s.ws.closed}
        for session in list(self.sessions):
            if id(session) in sent:
                await self._send(session, {"op": HEARTBEAT, "d": None})

        def caught_up() -> bool | None:
            live = [s for s in self.sessions if id(s) in sent and not s.ws.closed]
            return True if all(s.heard_seq >= sent[id(s)] for s in live) else None

        await self.changes.wait(caught_up, timeout, "the bot to read every gateway event")

    async def wait_connected(self, timeout: float) -> None:
        """Wait until a bot has identified on the gateway."""
        await self.changes.wait(
            lambda: True if self.connected() else None, timeout, "a bot to IDENTIFY on the gateway"
        )
