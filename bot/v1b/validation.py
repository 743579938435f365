"""The form rules: which generation parameters a generation form allows.

These predicates are the one definition of the rules. `validate_task_params` applies them
to a whole request (raising `InvalidRequest`); `bot.options` applies them to the options a
member chose (raising a localized refusal).
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InvalidRequest
from .models import GenerationForm, IntRange, TaskParams

_ENDPOINT = "task_submit"


def offers_model(form: GenerationForm, model: str, extra_models: Iterable[str] = ()) -> bool:
    """Whether the form, or the extra (e.g. trained) models, offer this model.

    A form and extras that list no model cannot rule one out; the server still checks.
    """
    models = [*form.models, *extra_models]
    return bool(model) and (not models or model in models)


def offers_size(form: GenerationForm, size: str) -> bool:
    """Whether the form offers this "WxH" size (a form that lists none rules none out)."""
    sizes = form.all_sizes()
    return bool(size) and (not sizes or size in sizes)


def within(value: int, bounds: IntRange) -> bool:
    """Whether value lies in the field's inclusive range."""
    return bounds.min <= value <= bounds.max


def allows_seed(form: GenerationForm, seed: int) -> bool:
    """Whether the seed is -1 (random) or within the form's range."""
    return seed == -1 or within(seed, form.seed)


def _reject(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(_ENDPOINT, message, field=field)


def _check_range(field: str, label: str, value: int, bounds: IntRange) -> None:
    if not within(value, bounds):
        raise _reject(field, f"{label} must be between {bounds.min} and {bounds.max}, not {value}")


def validate_task_params(
    params: TaskParams, form: GenerationForm, extra_models: Iterable[str] = ()
) -> None:
    """Raise InvalidRequest (with `field` set) if the form does not allow these parameters."""
    if not params.prompt.strip():
        raise _reject("prompt", "the prompt is empty")
    if not offers_model(form, params.model_name, extra_models):
        raise _reject("model_name", f"unknown model {params.model_name!r}")
    _check_range("n_images", "the number of images", params.n_images, form.n_images)
    _check_range("scale", "the guidance scale", params.scale, form.scale)
    if not allows_seed(form, params.select_seed):
        _check_range("select_seed", "the seed (or -1 for random)", params.select_seed, form.seed)
    if not offers_size(form, params.output_size):
        raise _reject(
            "output_size",
            f"size {params.output_size} is not offered; choose one of: "
            + ", ".join(form.all_sizes()),
        )
