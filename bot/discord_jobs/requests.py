"""Turning Discord input and guild settings into job-layer requests and limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot import options, styles
from bot.config import LimitsSettings
from bot.images import closest_size
from bot.jobs import GenerationRequest, Limits
from bot.jobs.models import Delivery
from bot.preferences import SetAside, usable_preferences
from bot.store import MemberPreferences, Style, Task
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
    style: Style | None = None  # wraps the member's prompt when the request is made
    delivery: Delivery = "channel"
    # The member's preferences the form no longer offers, passed over for the next source.
    set_aside: tuple[SetAside, ...] = ()


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
    style: Style | None = None,
    preferences: MemberPreferences | None = None,
) -> GenerationOptions:
    """Fill omitted options from the style, the member's preferences, the guild's defaults,
    then the form's; validate them all.

    With `aspect` (img2img) an omitted size is the form's size closest to that aspect ratio.
    A `style`'s model and size come before the defaults (its negative prompt: see
    `styles.choose_negative`); options the member gave come first.
    A preference the form no longer offers is passed over and named in `set_aside`.
    """
    form = await bot.forms.generation_form(guild_id)
    defaults = await bot.store.settings.get(guild_id)
    trained = [m.model_name for m in await bot.store.models.for_guild(guild_id)]
    if style is not None:
        model, size = model or style.model, size or style.size
    # Options the request settles without the member's preferences (img2img: size by shape).
    settled = {
        name
        for name, known in (
            ("model", bool(model)),
            ("size", size is not None or (aspect is not None and bool(form.all_sizes()))),
            ("count", count is not None),
        )
        if known
    }
    prefs, stale = usable_preferences(
        form, trained, preferences or MemberPreferences(guild_id, user_id=0), settled=settled
    )
    chosen_model = model or prefs.model or defaults.model or form.fallback_model() or ""
    if size is None:
        if aspect is not None and form.all_sizes():
            size = closest_size(form.all_sizes(), aspect)
        else:
            size = prefs.size or defaults.size or form.fallback_size() or ""
    fallback_negative = (
        defaults.negative_prompt if prefs.negative_prompt is None else prefs.negative_prompt
    )
    negative_prompt = styles.choose_negative(style, negative_prompt, fallback_negative)
    return GenerationOptions(
        model=options.check_model(form, trained, chosen_model),
        size=options.check_size(form, size),
        count=options.check_count(
            form, _first(count, prefs.count, defaults.count, form.n_images.default)
        ),
        scale=options.check_scale(form, _first(scale, defaults.scale, form.scale.default)),
        seed=options.check_seed(form, -1 if seed is None else seed),
        negative_prompt=negative_prompt,
        style=style,
        delivery="dm" if prefs.delivery == "dm" else "channel",
        set_aside=stale,
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
    """A t2i request, or i2i when an init image URL is given.

    With a style, the prompt sent is its template around the member's cleaned prompt.
    """
    member_prompt = clean_prompt(prompt)
    style = opts.style
    return GenerationRequest(
        guild_id=guild_id,
        channel_id=channel_id,
        user_id=user_id,
        locale=locale,
        kind="i2i" if init_image_url else "t2i",
        model=opts.model,
        prompt=styles.apply_template(style.prompt, member_prompt) if style else member_prompt,
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
        style=style.name if style else None,
        member_prompt=member_prompt if style else None,
        delivery=opts.delivery,
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
