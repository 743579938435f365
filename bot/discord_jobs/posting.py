"""Posting a result message with discord.py's low-level REST call.

The bot needs only the new message's ids from Discord's answer. `Messageable.send` would
also build a `discord.Message` from it (embeds, attachments, components, author) and store
a view for it: most of the bot's own cost of a post, for objects nobody reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import discord
from discord.http import handle_message_parameters
from discord.ui.view import BaseView


@dataclass(frozen=True, slots=True)
class PostedMessage:
    """Where a posted message is."""

    channel_id: int
    message_id: int


class _Components:
    """Component payloads, ready, in the place of a view: of the view it is given,
    `handle_message_parameters` reads only what these two methods answer."""

    def __init__(self, components: list[dict[str, Any]]) -> None:
        self._components = components

    def to_components(self) -> list[dict[str, Any]]:
        return self._components

    def has_components_v2(self) -> bool:
        return False


async def post_message(
    http: discord.http.HTTPClient,
    channel_id: int,
    *,
    content: str | None,
    embeds: Sequence[discord.Embed],
    files: Sequence[discord.File],
    components: list[dict[str, Any]] | None,
    allowed_mentions: discord.AllowedMentions,
    nonce: str | int,
) -> PostedMessage:
    """Post a message in a channel (a DM channel too) as `Messageable.send` would, with the
    same request body; `components` None: none (`send` without a view)."""
    view = None if components is None else cast(BaseView, _Components(components))
    with handle_message_parameters(
        content,
        embeds=embeds,
        files=files,
        view=view,
        allowed_mentions=allowed_mentions,
        nonce=nonce,
    ) as params:
        data = await http.send_message(channel_id, params=params)
    return PostedMessage(int(data["channel_id"]), int(data["id"]))
