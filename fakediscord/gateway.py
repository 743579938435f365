"""Discord gateway v10 over a websocket: HELLO, IDENTIFY/READY, heartbeats, dispatches.

Sessions may shard as on Discord: a session that identifies with `shard: [id, count]` gets
READY, GUILD_CREATE and every event of the guilds whose `(guild_id >> 22) % count == id`,
and shard 0 also gets the events without a guild (DMs).
"""

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
INVALID_SESSION, HELLO, HEARTBEAT_ACK = 9, 10, 11
CLOSE_AUTH_FAILED, CLOSE_INVALID_SHARD, CLOSE_SHARDING_REQUIRED = 4004, 4010, 4011

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


# Guild events that name their guild in `id` rather than `guild_id`.
_GUILD_OBJECT_EVENTS = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})

Shard = tuple[int, int]
UNSHARDED: Shard = (0, 1)


def shard_of(guild_id: int, shard_count: int) -> int:
    """The shard that owns a guild (https://discord.com/developers/docs/events/gateway#sharding)."""
    return (guild_id >> 22) % shard_count


def event_guild(event: str, data: dict[str, Any]) -> int | None:
    """The guild an event belongs to, or None for events outside guilds (DMs)."""
    if "guild_id" in data:
        return int(data["guild_id"])
    if event in _GUILD_OBJECT_EVENTS:
        return int(data["id"])
    return None


def parse_shard(value: Any) -> Shard | None:
    """The `[shard_id, shard_count]` of an IDENTIFY if Discord would accept it, else None."""
    if value is None:
        return UNSHARDED
    if not isinstance(value, list) or len(value) != 2:
        return None
    shard_id, count = value
    if any(type(n) is not int for n in (shard_id, count)):
        return None
    return (shard_id, count) if count >= 1 and 0 <= shard_id < count else None


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
    shard: Shard = UNSHARDED

    def owns(self, guild_id: int | None) -> bool:
        """Whether this session receives the events of a guild (None: events outside guilds)."""
        shard_id, count = self.shard
        if guild_id is None:
            return shard_id == 0
        return shard_of(guild_id, count) == shard_id


class Gateway:
    """Serve gateway connections and dispatch each event to the sessions of its shard."""

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
        # The shard count GET /gateway/bot recommends; with `require_sharding`, a session
        # identifying with fewer shards is closed 4011, as Discord does with too many guilds.
        self.shard_count = 1
        self.require_sharding = False
        # What a RESUME restores: each session's intents and shard, by session id.
        self._identified: dict[str, tuple[int, Shard]] = {}
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

    def serves(self, guild_id: int | None) -> bool:
        """Return whether an identified session receives the events of a guild (None: DMs)."""
        return any(s.identified and not s.ws.closed and s.owns(guild_id) for s in self.sessions)

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH event to every identified session of its shard whose intents cover it.

        Several sessions may own a shard (a process restarted before its old socket closed):
        each of them gets the event, as on Discord.
        """
        intent = required_intent(event, data)
        guild_id = event_guild(event, data)
        for session in list(self.sessions):
            if (
                session.identified
                and not session.ws.closed
                and session.intents & intent == intent
                and session.owns(guild_id)
            ):
                await self._dispatch(session, event, data)

    async def close(self, code: int = 1000, *, shard_id: int | None = None) -> None:
        """Close every open connection, or those of one shard (4000: discord.py RESUMEs)."""
        closing = [s for s in self.sessions if shard_id is None or s.shard[0] == shard_id]
        await asyncio.gather(*(s.ws.close(code=code) for s in closing))

    def forget_sessions(self) -> None:
        """Forget every session id, as Discord does when sessions expire: a RESUME of any
        of them is answered INVALID_SESSION and the bot has to IDENTIFY afresh."""
        self._identified.clear()

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
        shard = parse_shard(data.get("shard"))
        if shard is None:
            await session.ws.close(code=CLOSE_INVALID_SHARD, message=b"Invalid shard.")
            return
        if self.require_sharding and shard[1] < self.shard_count:
            await session.ws.close(code=CLOSE_SHARDING_REQUIRED, message=b"Sharding required.")
            return
        self.identifies += 1
        session.session_id = secrets.token_hex(16)
        session.intents = int(data.get("intents", 0))
        session.shard = shard
        session.identified = True
        self._identified[session.session_id] = (session.intents, shard)
        w = self.world
        guilds = [g for g in w.guilds if session.owns(g)]
        ready = {
            "v": 10,
            "user": w.bot_user,
            "guilds": [{"id": str(g), "unavailable": True} for g in guilds],
            "session_id": session.session_id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "shard": list(shard),
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
        for guild_id in guilds:
            await self._dispatch(session, "GUILD_CREATE", w.guild_payload(guild_id))
        await self.changes.notify()

    async def _resume(self, session: Session, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await session.ws.close(code=CLOSE_AUTH_FAILED, message=b"Authentication failed.")
            return
        known = self._identified.get(str(data.get("session_id", "")))
        if known is None:
            # Discord's answer to a session it does not know: identify afresh.
            await self._send(session, {"op": INVALID_SESSION, "d": False})
            return
        session.session_id = str(data["session_id"])
        session.intents, session.shard = known
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
        # Each session counts its own sequence numbers, whichever events its shard gets; a
        # session that closes meanwhile has nothing more to read. (`sent` holds the sessions,
        # so no new one can take the `id` of one that went away.)
        sent = [(s, s.seq) for s in self.sessions if s.identified and not s.ws.closed]
        for session, _ in sent:
            await self._send(session, {"op": HEARTBEAT, "d": None})

        def caught_up() -> bool | None:
            live = {id(s) for s in self.sessions if not s.ws.closed}
            behind = [s for s, seq in sent if id(s) in live and s.heard_seq < seq]
            return None if behind else True

        await self.changes.wait(caught_up, timeout, "the bot to read every gateway event")

    async def wait_connected(self, timeout: float) -> None:
        """Wait until a bot has identified on the gateway."""
        await self.changes.wait(
            lambda: True if self.connected() else None, timeout, "a bot to IDENTIFY on the gateway"
        )

    async def wait_serving(self, guild_id: int | None, timeout: float) -> None:
        """Wait until a session that receives the events of a guild (None: DMs) has identified."""
        where = "outside guilds" if guild_id is None else f"of guild {guild_id}"
        await self.changes.wait(
            lambda: True if self.serves(guild_id) else None,
            timeout,
            f"a bot to IDENTIFY on the shard that gets the events {where}",
        )
