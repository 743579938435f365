"""The fake Discord's state: guilds, members, channels, messages, commands, reactions."""

from __future__ import annotations

import io
import logging
import mimetypes
from dataclasses import dataclass, field
from typing import Any

from fakediscord import payloads as p

log = logging.getLogger(__name__)


@dataclass
class MemberState:
    """A guild member the fake knows about."""

    user_id: int
    name: str
    manage_guild: bool = False
    manage_messages: bool = False
    roles: list[int] = field(default_factory=list)
    dm_closed: bool = False
    joined_at: str = field(default_factory=p.now_iso)


@dataclass
class GuildState:
    """A guild with its channels, roles and members."""

    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    channels: dict[int, dict[str, Any]] = field(default_factory=dict)
    roles: dict[int, dict[str, Any]] = field(default_factory=dict)
    members: dict[int, MemberState] = field(default_factory=dict)


@dataclass
class StoredFile:
    """Bytes served by the fake CDN."""

    data: bytes
    filename: str
    content_type: str | None
    downloads: int = 0  # times the CDN served it


class World:
    """Everything the fake Discord stores; REST and gateway code read and mutate it."""

    def __init__(self, application_id: int, bot_user_id: int, bot_name: str, owner_id: int):
        self.application_id = application_id
        self.bot_user_id = bot_user_id
        self.owner_id = owner_id
        self.ids = p.Snowflakes()
        self.bot_user = p.bot_user(bot_user_id, bot_name)
        self.users: dict[int, dict[str, Any]] = {bot_user_id: self.bot_user}
        self.dm_closed: set[int] = set()
        self.guilds: dict[int, GuildState] = {}
        self.channels: dict[int, dict[str, Any]] = {}
        self.dm_by_user: dict[int, int] = {}
        self.channel_messages: dict[int, dict[int, dict[str, Any]]] = {}
        self.interaction_messages: dict[int, dict[str, Any]] = {}
        self.nonces: dict[tuple[int, str], int] = {}
        self.reactions: dict[tuple[int, int], dict[str, set[int]]] = {}
        self.files: dict[int, StoredFile] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self._command_ids: dict[tuple[int | None, int, str], int] = {}
        self.cdn_base_url = ""

    # guilds, members, channels

    def add_guild(self, guild_id: int, name: str, owner_id: int) -> GuildState:
        """Create a guild with its @everyone role and the bot as a member."""
        guild = GuildState(guild_id, name, owner_id)
        guild.roles[guild_id] = p.role(guild_id, "@everyone", p.EVERYONE_PERMISSIONS, position=0)
        bot_role = self.ids.next()
        guild.roles[bot_role] = p.role(bot_role, self.bot_user["username"], p.BOT_ROLE_PERMISSIONS)
        guild.roles[bot_role]["managed"] = True
        guild.members[self.bot_user_id] = MemberState(
            self.bot_user_id, self.bot_user["username"], roles=[bot_role]
        )
        self.guilds[guild_id] = guild
        return guild

    def guild(self, guild_id: int) -> GuildState:
        """Return a guild or raise a clear error."""
        try:
            return self.guilds[guild_id]
        except KeyError:
            raise LookupError(f"guild {guild_id} was not added with add_guild()") from None

    def add_member(self, guild_id: int, member: MemberState) -> None:
        """Add a member to a guild and remember its user."""
        self.guild(guild_id).members[member.user_id] = member
        self.users.setdefault(member.user_id, p.user(member.user_id, member.name))
        if member.dm_closed:
            self.dm_closed.add(member.user_id)

    def add_channel(self, guild_id: int, channel: dict[str, Any]) -> None:
        """Add a guild channel."""
        guild = self.guild(guild_id)
        channel["position"] = len(guild.channels)
        guild.channels[int(channel["id"])] = channel
        self.channels[int(channel["id"])] = channel

    def open_dm(self, user_id: int, channel_id: int | None = None) -> dict[str, Any]:
        """Return the DM channel with a user, creating it on first use."""
        if user_id in self.dm_by_user:
            return self.channels[self.dm_by_user[user_id]]
        recipient = self.users.setdefault(user_id, p.user(user_id, f"user{user_id}"))
        channel = p.dm_channel(channel_id or self.ids.next(), recipient)
        self.channels[int(channel["id"])] = channel
        self.dm_by_user[user_id] = int(channel["id"])
        return channel

    def permissions(self, guild_id: int, user_id: int) -> int:
        """Compute a member's guild-level permissions the way Discord does (no overwrites)."""
        guild = self.guild(guild_id)
        if user_id == guild.owner_id:
            return p.ALL_PERMISSIONS
        value = int(guild.roles[guild_id]["permissions"])
        member = guild.members.get(user_id)
        if member is not None:
            for role_id in member.roles:
                value |= int(guild.roles[role_id]["permissions"])
            if member.manage_guild:
                value |= p.MANAGE_GUILD
            if member.manage_messages:
                value |= p.MANAGE_MESSAGES
        return p.ALL_PERMISSIONS if value & p.ADMINISTRATOR else value

    def member_payload(self, guild_id: int, user_id: int) -> dict[str, Any]:
        """Build a member object, inventing a plain member for unknown users."""
        guild = self.guild(guild_id)
        member = guild.members.get(user_id)
        if member is None:
            member = MemberState(user_id, f"user{user_id}")
            self.add_member(guild_id, member)
        return p.member(self.users[user_id], member.roles, member.joined_at)

    def guild_payload(self, guild_id: int) -> dict[str, Any]:
        """Build the GUILD_CREATE payload of a guild."""
        guild = self.guild(guild_id)
        roles = list(guild.roles.values())
        members = [self.member_payload(guild_id, uid) for uid in guild.members]
        channels = list(guild.channels.values())
        return p.guild(
            guild_id,
            guild.name,
            guild.owner_id,
            roles=roles,
            channels=channels,
            members=members,
            locale=guild.locale,
        )

    # messages

    def find_message(self, message_id: int) -> dict[str, Any] | None:
        """Return a stored message (channel or interaction) by id."""
        for messages in self.channel_messages.values():
            if message_id in messages:
                return messages[message_id]
        return self.interaction_messages.get(message_id)

    def messages_in(self, channel_id: int) -> list[dict[str, Any]]:
        """Return the current messages of a channel, oldest first."""
        return list(self.channel_messages.get(channel_id, {}).values())

    def remove_message(self, message_id: int) -> dict[str, Any] | None:
        """Delete a stored message and its reactions."""
        for messages in self.channel_messages.values():
            if message_id in messages:
                msg = messages.pop(message_id)
                self.reactions.pop((int(msg["channel_id"]), message_id), None)
                return msg
        return self.interaction_messages.pop(message_id, None)

    def store_file(
        self, data: bytes, filename: str, content_type: str | None, description: str | None = None
    ) -> dict[str, Any]:
        """Store bytes for the CDN route and return their attachment object."""
        attachment_id = self.ids.next()
        self.files[attachment_id] = StoredFile(data, filename, content_type)
        url = f"{self.cdn_base_url}/attachments/{attachment_id}/{filename}"
        is_image = (content_type or "").startswith("image/")
        width, height = _image_size(data) if is_image else (None, None)
        return p.attachment(
            attachment_id,
            filename,
            len(data),
            url,
            content_type,
            width=width,
            height=height,
            description=description,
        )

    def upload_attachments(
        self,
        body: dict[str, Any],
        files: list[tuple[str, bytes, str]],
        existing: list[dict[str, Any]] | None = None,
    ) -> list[dict[str, Any]]:
        """Resolve a message body's `attachments` (kept ids plus uploaded files[n])."""
        existing = existing or []
        wanted = body.get("attachments")
        if wanted is None:
            uploads = [self._upload(name, data, ctype, None) for name, data, ctype in files]
            return existing + uploads
        by_id = {a["id"]: a for a in existing}
        result = []
        for meta in wanted:
            key = str(meta.get("id"))
            if key in by_id:
                result.append(by_id[key])
            elif key.isdigit() and int(key) < len(files):
                # New uploads reference their multipart part files[n] by index n.
                name, data, ctype = files[int(key)]
                filename = meta.get("filename") or name
                result.append(self._upload(filename, data, ctype, meta.get("description")))
        return result

    def _upload(
        self, filename: str, data: bytes, part_type: str, description: str | None
    ) -> dict[str, Any]:
        guessed = mimetypes.guess_type(filename)[0]
        return self.store_file(data, filename, guessed or part_type, description)

    # commands

    def replace_commands(
        self, guild_id: int | None, commands: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Store a bulk overwrite of commands, keeping ids stable per (type, name)."""
        stored = []
        for cmd in commands:
            cmd_type = int(cmd.get("type", 1))
            key = (guild_id, cmd_type, cmd["name"])
            cmd_id = self._command_ids.setdefault(key, self.ids.next())
            entry = {
                "id": str(cmd_id),
                "application_id": str(self.application_id),
                "version": str(self.ids.next()),
                "type": cmd_type,
                "description": "",
                "options": [],
                "default_member_permissions": None,
                "nsfw": False,
                **cmd,
            }
            entry["id"] = str(cmd_id)
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        if guild_id is None:
            self.global_commands = stored
        else:
            self.guild_commands[guild_id] = stored
        return stored

    def find_command(self, name: str, cmd_type: int, guild_id: int | None) -> dict[str, Any] | None:
        """Find a registered command, guild commands taking precedence over global ones."""
        candidates = list(self.guild_commands.get(guild_id, [])) if guild_id else []
        candidates += self.global_commands
        for cmd in candidates:
            if cmd["name"] == name and cmd["type"] == cmd_type:
                return cmd
        return None

    def command_names(self) -> list[str]:
        """List every registered command name, for error messages."""
        names = [c["name"] for c in self.global_commands]
        for guild_id, cmds in self.guild_commands.items():
            names += [f"{c['name']} (guild {guild_id})" for c in cmds]
        return names


def _image_size(data: bytes) -> tuple[int | None, int | None]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except (UnidentifiedImageError, OSError):
        return None, None
