"""Turning Discord input and guild settings into job-layer requests and limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot import options
from bot.config import LimitsSettings
from bot.images import closest_size
from bot.jobs import GenerationRequest, Limits
from bot.store import Task
from bot.store.settings import GuildSettings
from bot.text import NEGATIVE_PROMPT_MAX, clean_prompt

if TYPE_CHECKING:
    from bot.app import MiaohuaBot


def limits_for(defaults: LimitsSettings, guild: GuildSettings) -> Limits:
    """A guild's admission limits: its own settings, else the bot-wide defaults."""
    # A quota of 0 means unlimited (here and in the config file); a guild's None means
    # "use the bot-wide default".
    quota = defaults.daily_quota if guild.daily_quota is None else guild.daily_quota
    quota = quota or None
    queued = defaults.user_queued if guild.user_queued is None else guild.user_queued
    return Limits(
        prompt_length=defaults.prompt_length,
        user_running=guild.user_running or defaults.user_running,
        user_queued=queued,  # 0 is a setting: no waiting line
        daily_quota=quota,
        blocked_words=tuple(guild.blocked_words),
        allowed_channels=frozenset(guild.allowed_channels),
    )


async def guild_limits(bot: MiaohuaBot, guild_id: int) -> Limits:
    """The admission limits of a guild as currently configured."""
    return limits_for(bot.settings.limits, await bot.store.settings.get(guild_id))


@dataclass(frozen=True, slots=True)
class GenerationOptions:
    """Validated generation options with every default filled in."""

    model: str
    size: str
    count: int
    scale: int
    seed: int
    negative_prompt: str


async def resolve_options(
    bot: MiaohuaBot,
    guild_id: int,
    *,
    model: str | None = None,
    size: str | None = None,
    count: int | None = None,
    scale: int | None = None,
    seed: int | None = None,
    negative_prompt: str | None = None,
    aspect: float | None = None,
) -> GenerationOptions:
    """Fill omitted options from the guild's defaults, then the form's; validate them all.

    With `aspect` (img2img) an omitted size is the form's size closest to that aspect ratio.
    """
    form = await bot.forms.generation_form(guild_id)
    defaults = await bot.store.settings.get(guild_id)
    trained = [m.model_name for m in await bot.store.models.for_guild(guild_id)]
    chosen_model = model or defaults.model or form.default_model or next(iter(form.models), "")
    if size is None:
        if aspect is not None and form.all_sizes():
            size = closest_size(form.all_sizes(), aspect)
        else:
            size = defaults.size or form.default_resolution or next(iter(form.all_sizes()), "")
    return GenerationOptions(
        model=options.check_model(form, trained, chosen_model),
        size=options.check_size(form, size),
        count=options.check_count(form, _first(count, defaults.count, form.n_images.default)),
        scale=options.check_scale(form, _first(scale, defaults.scale, form.scale.default)),
        seed=options.check_seed(form, -1 if seed is None else seed),
        negative_prompt=defaults.negative_prompt if negative_prompt is None else negative_prompt,
    )


def _first(*values: int | None) -> int:
    """The first value that is set (0 counts as set, so it reaches validation)."""
    return next(v for v in values if v is not None)


def request_from_options(
    opts: GenerationOptions,
    *,
    guild_id: int,
    channel_id: int,
    user_id: int,
    locale: str | None,
    prompt: str,
    init_image_url: str | None = None,
    interaction_id: int | None = None,
) -> GenerationRequest:
    """A t2i request, or i2i when an init image URL is given."""
    return GenerationRequest(
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        locale=locale,
        kind="i2i" if init_image_url else "t2i",
        model=opts.model,
        prompt=clean_prompt(prompt),
        negative_prompt=clean_prompt(
            opts.negative_prompt,
            required=False,
            max_length=NEGATIVE_PROMPT_MAX,
            field="negative_prompt",
        ),
        count=opts.count,
        scale=opts.scale,
        seed=opts.seed,
        size=opts.size,
        init_image_url=init_image_url,
        interaction_id=interaction_id,
    )


def request_from_task(
    task: Task,
    *,
    user_id: int,
    channel_id: int,
    locale: str | None,
    seed: int = -1,
    init_image_url: str | None = None,
    count: int | None = None,
) -> GenerationRequest:
    """A follow-up of a finished task (rerun or variation) linked to it as its parent."""
    init = init_image_url or task.init_image_url
    return GenerationRequest(
        guild_id=task.guild_id,
        channel_id=channel_id,
        user_id=user_id,
        locale=locale,
        kind="i2i" if init else "t2i",
        model=task.model,
        prompt=task.prompt,
        negative_prompt=task.negative_prompt,
        count=count or task.count,
        scale=task.scale,
        seed=seed,
        size=task.size,
        init_image_url=init,
        parent_id=task.id,
        origin="rerun",
        style=task.style,
        member_prompt=task.member_prompt,
    )
