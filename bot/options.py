"""Checks of user-chosen generation options against the service's form, with localized errors."""

from __future__ import annotations

from collections.abc import Iterable

from bot.errors import UserFacingError
from bot.v1b import GenerationForm


def check_model(form: GenerationForm, trained: Iterable[str], model: str) -> str:
    """Return the model if the form or the guild's trained models offer it."""
    if model in form.models or model in set(trained):
        return model
    raise UserFacingError("options.bad_model", model=model[:100])


def check_size(form: GenerationForm, size: str) -> str:
    """Return the size if the form offers it ('WxH' or an 'aspect WxH' label)."""
    candidate = size.strip().split(" ")[-1].lower()
    if candidate in form.all_sizes():
        return candidate
    raise UserFacingError("options.bad_size", size=size[:40], sizes=", ".join(form.all_sizes()))


def check_count(form: GenerationForm, count: int) -> int:
    """Return count if it is within the form's n_images range."""
    rng = form.n_images
    if rng.min <= count <= rng.max:
        return count
    raise UserFacingError("options.bad_count", min=rng.min, max=rng.max)


def check_scale(form: GenerationForm, scale: int) -> int:
    """Return scale if it is within the form's guidance scale range."""
    rng = form.scale
    if rng.min <= scale <= rng.max:
        return scale
    raise UserFacingError("options.bad_scale", min=rng.min, max=rng.max)


def check_seed(form: GenerationForm, seed: int) -> int:
    """Return seed if it is -1 (random) or within the form's range."""
    rng = form.seed
    if seed == -1 or rng.min <= seed <= rng.max:
        return seed
    raise UserFacingError("options.bad_seed", min=rng.min, max=rng.max)
