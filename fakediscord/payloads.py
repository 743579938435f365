"""Builders for Discord API v10 objects (users, guilds, channels, messages, interactions)."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime
from typing import Any

# Discord permission bits used by the fake.
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
ADD_REACTIONS = 1 << 6
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
EMBED_LINKS = 1 << 14
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16
USE_EXTERNAL_EMOJIS = 1 << 18
USE_APPLICATION_COMMANDS = 1 << 31
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1

EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL
    | SEND_MESSAGES
    | ADD_REACTIONS
    | EMBED_LINKS
    | ATTACH_FILES
    | READ_MESSAGE_HISTORY
    | USE_EXTERNAL_EMOJIS
    | USE_APPLICATION_COMMANDS
    | SEND_MESSAGES_IN_THREADS
)
BOT_ROLE_PERMISSIONS = EVERYONE_PERMISSIONS | MANAGE_MESSAGES

DISCORD_EPOCH_MS = 1420070400000
EPHEMERAL = 1 << 6
LOADING = 1 << 7


class Snowflakes:
    """Monotonic snowflake ids derived from the wall clock."""

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._last = 0

    def next(self) -> int:
        """Return a new snowflake, larger than every one returned before."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        candidate = (ms << 22) | (next(self._counter) & 0xFFF)
        self._last = max(candidate, self._last + 1)
        return self._last


def now_iso() -> str:
    """Return the current time as Discord's ISO 8601 timestamp."""
    return datetime.now(UTC).isoformat()


def user(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    """Build a user object."""
    return {
        "id": str(user_id),
        "username": name,
        "global_name": None if bot else name,
        "discriminator": "0",
        "avatar": None,
        "bot": bot,
        "system": False,
        "flags": 0,
        "public_flags": 0,
        "banner": None,
        "accent_color": None,
    }


def bot_user(user_id: int, name: str) -> dict[str, Any]:
    """Build the bot's own user object as returned by GET /users/@me."""
    data = user(user_id, name, bot=True)
    data.update(verified=True, mfa_enabled=False, email=None, locale="en-US")
    return data


def role(role_id: int, name: str, permissions: int, *, position: int = 1) -> dict[str, Any]:
    """Build a role object."""
    return {
        "id": str(role_id),
        "name": name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": None, "tertiary_color": None},
        "hoist": False,
        "icon": None,
        "unicode_emoji": None,
        "position": position,
        "permissions": str(permissions),
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def member(user_data: dict[str, Any], roles: list[int], joined_at: str) -> dict[str, Any]:
    """Build a guild member object (with its nested user)."""
    return {
        "user": user_data,
        "nick": None,
        "avatar": None,
        "banner": None,
        "roles": [str(r) for r in roles],
        "joined_at": joined_at,
        "premium_since": None,
        "deaf": False,
        "mute": False,
        "flags": 0,
        "pending": False,
        "communication_disabled_until": None,
    }


def text_channel(
    channel_id: int, guild_id: int, name: str, *, nsfw: bool = False, position: int = 0
) -> dict[str, Any]:
    """Build a guild text channel object."""
    return {
        "id": str(channel_id),
        "type": 0,
        "guild_id": str(guild_id),
        "name": name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": nsfw,
        "topic": None,
        "last_message_id": None,
        "parent_id": None,
        "rate_limit_per_user": 0,
        "flags": 0,
    }


def dm_channel(channel_id: int, recipient: dict[str, Any]) -> dict[str, Any]:
    """Build a DM channel object."""
    return {
        "id": str(channel_id),
        "type": 1,
        "recipients": [recipient],
        "last_message_id": None,
        "flags": 0,
    }


def guild(
    guild_id: int,
    name: str,
    owner_id: int,
    *,
    roles: list[dict[str, Any]],
    channels: list[dict[str, Any]],
    members: list[dict[str, Any]],
    locale: str = "en-US",
) -> dict[str, Any]:
    """Build the full guild object sent in GUILD_CREATE."""
    channels_no_guild = [{k: v for k, v in c.items() if k != "guild_id"} for c in channels]
    return {
        "id": str(guild_id),
        "name": name,
        "icon": None,
        "splash": None,
        "discovery_splash": None,
        "banner": None,
        "description": None,
        "owner_id": str(owner_id),
        "afk_channel_id": None,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "system_channel_id": None,
        "system_channel_flags": 0,
        "rules_channel_id": None,
        "public_updates_channel_id": None,
        "preferred_locale": locale,
        "features": [],
        "roles": roles,
        "emojis": [],
        "stickers": [],
        "channels": channels_no_guild,
        "threads": [],
        "members": members,
        "member_count": len(members),
        "presences": [],
        "voice_states": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
        "large": False,
        "unavailable": False,
        "joined_at": now_iso(),
        "max_members": 500000,
        "vanity_url_code": None,
        "premium_progress_bar_enabled": False,
        "nsfw": False,
    }


def attachment(
    attachment_id: int,
    filename: str,
    size: int,
    url: str,
    content_type: str | None,
    *,
    width: int | None = None,
    height: int | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """Build an attachment object."""
    data: dict[str, Any] = {
        "id": str(attachment_id),
        "filename": filename,
        "size": size,
        "url": url,
        "proxy_url": url,
        "content_type": content_type,
        "flags": 0,
    }
    if width is not None and height is not None:
        data.update(width=width, height=height)
    if description is not None:
        data["description"] = description
    return data


def message(
    message_id: int,
    channel_id: int,
    author: dict[str, Any],
    body: dict[str, Any],
    *,
    attachments: list[dict[str, Any]],
    guild_id: int | None = None,
    webhook_id: int | None = None,
    interaction_metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a message object from a create-message request body."""
    data: dict[str, Any] = {
        "id": str(message_id),
        "channel_id": str(channel_id),
        "author": author,
        "content": body.get("content") or "",
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "tts": bool(body.get("tts", False)),
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "mention_channels": [],
        "attachments": attachments,
        "embeds": body.get("embeds") or [],
        "components": body.get("components") or [],
        "reactions": [],
        "pinned": False,
        "type": 0,
        "flags": int(body.get("flags") or 0),
    }
    if guild_id is not None:
        data["guild_id"] = str(guild_id)
    if webhook_id is not None:
        data["webhook_id"] = str(webhook_id)
    if interaction_metadata is not None:
        data["interaction_metadata"] = interaction_metadata
        # CHAT_INPUT_COMMAND for application commands; DEFAULT for components and modals.
        data["type"] = 20 if interaction_metadata.get("type") == 2 else 0
    if body.get("message_reference"):
        data["message_reference"] = body["message_reference"]
    if body.get("nonce") is not None:
        data["nonce"] = body["nonce"]
    if body.get("poll"):
        data["poll"] = body["poll"]
    return data


def partial_emoji(emoji: str) -> dict[str, Any]:
    """Parse a REST emoji string (unicode or name:id) into an emoji object."""
    name, sep, emoji_id = emoji.partition(":")
    if sep and emoji_id.isdigit():
        return {"id": emoji_id, "name": name, "animated": False}
    return {"id": None, "name": emoji}
