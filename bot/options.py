"""Checks of member-chosen generation options against the service's form, with localized errors.

The rules themselves are `bot.v1b.validation`'s; this module only parses what a member
typed and turns a broken rule into a refusal they can read.
"""

from __future__ import annotations

from collections.abc import Iterable

from bot.errors import UserFacingError
from bot.forms import FormCache
from bot.store import Store
from bot.text import NEGATIVE_PROMPT_MAX, clean_prompt
from bot.v1b import GenerationForm
from bot.v1b.validation import allows_seed, offers_model, offers_size, within


def check_model(form: GenerationForm, trained: Iterable[str], model: str) -> str:
    """Return the model if the form or the guild's trained models offer it."""
    if offers_model(form, model, trained):
        return model
    raise UserFacingError("options.bad_model", model=model[:100])


def check_size(form: GenerationForm, size: str) -> str:
    """Return the size if the form offers it ('WxH' or an 'aspect WxH' label)."""
    candidate = size.strip().split(" ")[-1].lower()
    if offers_size(form, candidate):
        return candidate
    raise UserFacingError("options.bad_size", size=size[:40], sizes=", ".join(form.all_sizes()))


def check_count(form: GenerationForm, count: int) -> int:
    """Return count if it is within the form's n_images range."""
    if within(count, form.n_images):
        return count
    raise UserFacingError("options.bad_count", min=form.n_images.min, max=form.n_images.max)


def check_scale(form: GenerationForm, scale: int) -> int:
    """Return scale if it is within the form's guidance scale range."""
    if within(scale, form.scale):
        return scale
    raise UserFacingError("options.bad_scale", min=form.scale.min, max=form.scale.max)


def check_seed(form: GenerationForm, seed: int) -> int:
    """Return seed if it is -1 (random) or within the form's range."""
    if allows_seed(form, seed):
        return seed
    raise UserFacingError("options.bad_seed", min=form.seed.min, max=form.seed.max)


async def checked_defaults(
    forms: FormCache,
    store: Store,
    guild_id: int,
    *,
    model: str | None = None,
    size: str | None = None,
    count: int | None = None,
    scale: int | None = None,
    negative_prompt: str | None = None,
) -> dict[str, str | int]:
    """The guild-default changes among the given options, each checked as `/imagine` checks it.

    Options left out are not changed (and not checked); a negative prompt of "-" clears it.
    """
    changes: dict[str, str | int] = {}
    if any(v is not None for v in (model, size, count, scale)):
        form = await forms.generation_form(guild_id)
        if model is not None:
            trained = [m.model_name for m in await store.models.for_guild(guild_id)]
            changes["model"] = check_model(form, trained, model)
        if size is not None:
            changes["size"] = check_size(form, size)
        if count is not None:
            changes["count"] = check_count(form, count)
        if scale is not None:
            changes["scale"] = check_scale(form, scale)
    if negative_prompt is not None:
        changes["negative_prompt"] = (
            ""
            if negative_prompt.strip() == "-"
            else clean_prompt(
                negative_prompt, max_length=NEGATIVE_PROMPT_MAX, field="negative_prompt"
            )
        )
    return changes
