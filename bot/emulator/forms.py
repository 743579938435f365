"""The generation and training forms, and validation of request fields against them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.emulator.errors import InvalidInput

RESOLUTIONS: dict[str, list[str]] = {
    "1:1": ["512x512", "640x640", "768x768", "1024x1024"],
    "2:3": ["512x768", "640x960", "768x1152", "1024x1536"],
    "3:2": ["768x512", "960x640", "1152x768", "1536x1024"],
}
N_IMAGES_RANGE = (1, 8)
SCALE_RANGE = (1, 20)
SEED_RANGE = (0, 9_999_999)
TRAIN_BASE_MODELS = ["商汤自研作画模型 Beta", "水彩风"]
TRAIN_MAIN_BODIES = ["Style", "Human", "Architecture", "Plants", "Animals"]
# The spec's train_submit sample sends this for "choose automatically".
AUTO_BASE_MODEL = "自动选择"


def generation_form(models: Sequence[str]) -> list[dict[str, Any]]:
    """Return the generation form exactly as the spec shows it, with the given model choices."""
    return [
        {
            "choices": list(models),
            "default": models[0] if models else "",
            "description": "model name",
            "name": "model_name",
            "type": "list",
        },
        {"default": "", "description": "prompt", "name": "prompt", "type": "string"},
        {"default": "", "description": "negative prompt", "name": "neg_prompt", "type": "string"},
        _int_field("n_images", "number of images", 2, N_IMAGES_RANGE),
        _int_field("scale", "Guidance Scale", 7, SCALE_RANGE),
        _int_field("select_seed", "seed", -1, SEED_RANGE),
        {
            "choices": {ratio: list(sizes) for ratio, sizes in RESOLUTIONS.items()},
            "default": "512x512",
            "description": "resolution",
            "name": "resolution",
            "type": "dict",
        },
        {"default": "", "description": "init image url", "name": "init_img", "type": "str"},
    ]


def train_form() -> dict[str, list[str]]:
    """Return the training form's choices."""
    return {"base_model": list(TRAIN_BASE_MODELS), "main_body": list(TRAIN_MAIN_BODIES)}


def _int_field(
    name: str, description: str, default: int, bounds: tuple[int, int]
) -> dict[str, int | str]:
    return {
        "default": default,
        "description": description,
        "max": bounds[1],
        "min": bounds[0],
        "name": name,
        "type": "int",
    }


def require_str(body: Mapping[str, Any], name: str, *, default: str | None = None) -> str:
    """Return a string field, or raise InvalidInput when it is missing or not a string."""
    value = body.get(name, default)
    if value is None:
        raise InvalidInput(f"{name} is required")
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    return value


def require_int(
    body: Mapping[str, Any], name: str, *, default: int | None = None, bounds: tuple[int, int]
) -> int:
    """Return an int field within bounds, or raise InvalidInput."""
    value = body.get(name, default)
    if value is None:
        raise InvalidInput(f"{name} is required")
    # bool is an int subclass in Python but not an integer in JSON.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer")
    low, high = bounds
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be between {low} and {high}")
    return value


def parse_output_size(value: str) -> tuple[int, int]:
    """Return (width, height) of one of the form's resolutions, or raise InvalidInput."""
    if not any(value in sizes for sizes in RESOLUTIONS.values()):
        raise InvalidInput(f"output_size {value!r} is not one of the form's resolutions")
    width, height = value.split("x")
    return int(width), int(height)


def parse_seed(body: Mapping[str, Any]) -> int:
    """Return select_seed: -1 for random, else a seed within the form's range."""
    value = body.get("select_seed", -1)
    if value == -1 and not isinstance(value, bool):
        return -1
    return require_int(body, "select_seed", bounds=SEED_RANGE)


def trained_model_name(name: str) -> str:
    """Return the model name a training gets: unsafe characters become underscores."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "_-") else "_" for ch in name)
