"""Plain values the job layer takes and gives: requests, limits and failure reasons."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal, TypedDict

TaskKind = Literal["t2i", "i2i"]
TaskOrigin = Literal["rerun", "remix"]
Delivery = Literal["channel", "dm"]


class TaskFields(TypedDict):
    """The keyword arguments of `TaskRepo.create`, typed so a schema drift shows up."""

    guild_id: int
    channel_id: int
    user_id: int
    locale: str | None
    kind: str
    model: str
    prompt: str
    negative_prompt: str
    count: int
    scale: int
    seed: int
    size: str
    init_image_url: str | None
    parent_id: int | None
    interaction_id: int | None
    origin: str | None
    style: str | None
    member_prompt: str | None
    delivery: str


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    """A validated generation request, as a cog hands it to the job layer."""

    guild_id: int
    channel_id: int
    user_id: int
    locale: str | None
    kind: TaskKind
    model: str
    prompt: str
    negative_prompt: str = ""
    count: int = 1
    scale: int = 7
    seed: int = -1
    size: str = "512x512"
    init_image_url: str | None = None
    parent_id: int | None = None
    interaction_id: int | None = None
    origin: TaskOrigin | None = None  # how it came from `parent_id`
    style: str | None = None  # the server style's name, its text already applied
    member_prompt: str | None = None  # the member's own words when a style wrapped them
    delivery: Delivery = "channel"

    def task_fields(self) -> TaskFields:
        """Return the keyword arguments of `TaskRepo.create` for this request."""
        return {
            "guild_id": self.guild_id,
            "channel_id": self.channel_id,
            "user_id": self.user_id,
            "locale": self.locale,
            "kind": self.kind,
            "model": self.model,
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "count": self.count,
            "scale": self.scale,
            "seed": self.seed,
            "size": self.size,
            "init_image_url": self.init_image_url,
            "parent_id": self.parent_id,
            "interaction_id": self.interaction_id,
            "origin": self.origin,
            "style": self.style,
            "member_prompt": self.member_prompt,
            "delivery": self.delivery,
        }


@dataclass(frozen=True, slots=True)
class Posted:
    """Where a task's result was posted: the place it went to may differ from the one asked
    for (a channel that refuses it sends it by DM, closed DMs send it to the channel)."""

    message_id: int
    place: Delivery


@dataclass(frozen=True, slots=True)
class Limits:
    """A guild's admission rules; see `bot.jobs.admission` for how each one is applied."""

    prompt_length: int = 1000
    user_running: int | None = 2  # a member's tasks at the service at once; None: any
    user_queued: int | None = 10  # a member's tasks waiting beyond those; None: any
    daily_quota: int | None = None
    blocked_words: Sequence[str] = ()
    allowed_channels: Collection[int] = frozenset()


class FailReason(StrEnum):
    """Reason codes stored in `Task.error` when a task fails."""

    NO_ACCOUNT = "no_account"
    NOT_ENOUGH_POINTS = "not_enough_points"
    ACCOUNT_INVALID = "account_invalid"
    INVALID_REQUEST = "invalid_request"
    SERVICE_ERROR = "service_error"
    RESPONSE_TOO_LARGE = "response_too_large"
    GENERATION_FAILED = "generation_failed"
    TIMEOUT = "timeout"
    DELIVERY_FAILED = "delivery_failed"
