"""Check generation parameters against a generation form before submitting them."""

from __future__ import annotations

from collections.abc import Iterable

from .errors import InvalidRequest
from .models import GenerationForm, IntRange, TaskParams

_ENDPOINT = "task_submit"


def _reject(field: str, message: str) -> InvalidRequest:
    return InvalidRequest(_ENDPOINT, message, field=field)


def _check_range(field: str, label: str, value: int, bounds: IntRange) -> None:
    if not bounds.min <= value <= bounds.max:
        raise _reject(field, f"{label} must be between {bounds.min} and {bounds.max}, not {value}")


def validate_task_params(
    params: TaskParams, form: GenerationForm, extra_models: Iterable[str] = ()
) -> None:
    """Raise InvalidRequest (with `field` set) if the form does not allow these parameters."""
    if not params.prompt.strip():
        raise _reject("prompt", "the prompt is empty")
    models = [*form.models, *extra_models]
    # A form that lists no choices cannot rule anything out; the server still checks.
    if models and params.model_name not in models:
        raise _reject("model_name", f"unknown model {params.model_name!r}")
    _check_range("n_images", "the number of images", params.n_images, form.n_images)
    _check_range("scale", "the guidance scale", params.scale, form.scale)
    if params.select_seed != -1:
        _check_range("select_seed", "the seed (or -1 for random)", params.select_seed, form.seed)
    sizes = form.all_sizes()
    if sizes and params.output_size not in sizes:
        raise _reject(
            "output_size",
            f"size {params.output_size} is not offered; choose one of: " + ", ".join(sizes),
        )
