"""Pydantic models of v1b requests and responses, tolerant of the service's quirks."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

PENDING_STATES = frozenset({"pending", "queued", "waiting", "running", "processing"})


def _none_to_empty(value: Any) -> Any:
    return "" if value is None else value


def _none_to_list(value: Any) -> Any:
    return [] if value is None else value


def _count_or_none(value: Any) -> int | None:
    """Read an int the service may send as int, float, numeric string, bool or null."""
    if value is None or isinstance(value, bool):
        # The spec's sample shows `true` where a count belongs: a bool is not a count.
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _id_to_str(value: Any) -> Any:
    # Ids are strings in the spec; accept plain numbers too, never bools.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Text = Annotated[str, BeforeValidator(_none_to_empty)]
OptionalCount = Annotated[int | None, BeforeValidator(_count_or_none)]
TaskId = Annotated[str, BeforeValidator(_id_to_str), Field(min_length=1)]


class _Response(BaseModel):
    """Base of response models: unknown fields are kept, not rejected."""

    model_config = ConfigDict(extra="allow")


# Requests ---------------------------------------------------------------------------


class TaskParams(BaseModel):
    """Parameters of one generation task (task_submit)."""

    model_name: str
    prompt: str
    neg_prompt: str = ""
    n_images: int = 2
    scale: int = 7
    select_seed: int = -1
    output_size: str = Field(default="512x512", pattern=r"^\d+x\d+$")
    init_img: str = ""

    def to_payload(self) -> dict[str, Any]:
        """Return the task_submit body without the token."""
        payload = self.model_dump()
        if not self.init_img:
            del payload["init_img"]
        return payload


class TrainParams(BaseModel):
    """Parameters of one training task (train_submit)."""

    name: str
    description: str = ""
    base_model: str | None = None
    trigger_word: str = ""
    main_body: str = "Style"
    nsfw: bool = False
    dataset: list[int]

    def to_payload(self) -> dict[str, Any]:
        """Return the train_submit body without the token."""
        payload = self.model_dump(exclude={"base_model", "nsfw"})
        if self.base_model is not None:
            payload["base_model"] = self.base_model
        # The spec contradicts itself on nsfw's meaning; 0 is the safe default both ways.
        payload["nsfw"] = 1 if self.nsfw else 0
        return payload


# Generation -------------------------------------------------------------------------


class ResultImage(_Response):
    """One generated image: full size and preview URLs."""

    large: str
    middle: Text = ""
    save_index: int = 0
    share: bool = False
    shareable: bool = True

    @model_validator(mode="after")
    def _middle_defaults_to_large(self) -> ResultImage:
        if not self.middle:
            self.middle = self.large
        return self


class TaskResult(_Response):
    """State of a generation task (task_result, or one item of task_results)."""

    state: Text
    images: Annotated[list[ResultImage], BeforeValidator(_none_to_list)] = []
    error_msg: Text = ""
    wait_time: OptionalCount = None
    select_seed: OptionalCount = None
    fav: bool | None = None
    task_id: Annotated[str | None, BeforeValidator(_id_to_str)] = None

    @property
    def failed(self) -> bool:
        """Whether the service reported a failure."""
        return bool(self.error_msg)

    @property
    def done(self) -> bool:
        """Whether the task finished successfully."""
        if self.failed or not self.state:
            return False
        return self.state.lower() not in PENDING_STATES

    @property
    def pending(self) -> bool:
        """Whether the task is still queued or running."""
        return not self.failed and not self.done


class IntRange(BaseModel):
    """An integer field of a form: bounds and default."""

    min: int
    max: int
    default: int


_FORM_DEFAULTS = {
    "n_images": IntRange(min=1, max=8, default=2),
    "scale": IntRange(min=1, max=20, default=7),
    "seed": IntRange(min=0, max=9_999_999, default=-1),
}


def _int_range(field: dict[str, Any], fallback: IntRange) -> dict[str, Any]:
    return {key: field.get(key, getattr(fallback, key)) for key in ("min", "max", "default")}


def _fields_by_name(info: list[Any]) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in info if isinstance(f, dict) and isinstance(f.get("name"), str)}


def _form_from_fields(info: list[Any]) -> dict[str, Any]:
    """Turn the spec's list of form fields into GenerationForm's attributes."""
    fields = _fields_by_name(info)
    model = fields.get("model_name", {})
    resolution = fields.get("resolution") or fields.get("output_size") or {}
    choices = resolution.get("choices", {})
    if isinstance(choices, list):
        choices = {"": choices}
    return {
        "models": model.get("choices", []),
        "default_model": model.get("default"),
        "n_images": _int_range(fields.get("n_images", {}), _FORM_DEFAULTS["n_images"]),
        "scale": _int_range(fields.get("scale", {}), _FORM_DEFAULTS["scale"]),
        "seed": _int_range(fields.get("select_seed", {}), _FORM_DEFAULTS["seed"]),
        "resolutions": choices,
        "default_resolution": resolution.get("default"),
        "fields": fields,
    }


class GenerationForm(_Response):
    """The generation form: models, numeric ranges and output sizes."""

    models: list[str] = []
    default_model: str | None = None
    n_images: IntRange = _FORM_DEFAULTS["n_images"]
    scale: IntRange = _FORM_DEFAULTS["scale"]
    seed: IntRange = _FORM_DEFAULTS["seed"]
    resolutions: dict[str, list[str]] = {}
    default_resolution: str | None = None
    fields: dict[str, dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _from_info_list(cls, data: Any) -> Any:
        return _form_from_fields(data) if isinstance(data, list) else data

    def all_sizes(self) -> list[str]:
        """Return every offered "WxH" size once, in form order."""
        return list(dict.fromkeys(s for sizes in self.resolutions.values() for s in sizes))

    def fallback_model(self) -> str | None:
        """The model used when nobody chose one: the form's default, else its first."""
        return self.default_model or next(iter(self.models), None)

    def fallback_size(self) -> str | None:
        """The size used when nobody chose one: the form's default, else its first."""
        return self.default_resolution or next(iter(self.all_sizes()), None)


# Training ---------------------------------------------------------------------------


class TrainProgress(_Response):
    """State of a training task (train_progress)."""

    state: Text
    training_progress: float = 0.0
    model_name: Text = ""
    create_time: Text = ""
    description: Text = ""
    main_body: Text = ""
    trigger_word: Text = ""
    error_msg: Text = ""

    @field_validator("training_progress", mode="before")
    @classmethod
    def _progress(cls, value: Any) -> Any:
        if value is None or isinstance(value, bool):
            return 0.0
        if isinstance(value, str):
            text = value.strip()
            number = float(text.rstrip("%") or 0)
            return number / 100 if text.endswith("%") or number > 1 else number
        return value

    @field_validator("training_progress", mode="after")
    @classmethod
    def _clamp(cls, value: float) -> float:
        return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0

    @property
    def done(self) -> bool:
        """Whether training finished and model_name can be used for generation."""
        return self.state == "done" and not self.error_msg

    @property
    def failed(self) -> bool:
        """Whether the service reported a training failure."""
        return bool(self.error_msg) or self.state.lower() in {"failed", "error"}


class TrainForm(_Response):
    """The training form: base models and subjects ("main bodies")."""

    base_models: list[str] = []
    main_bodies: list[str] = []

    @model_validator(mode="before")
    @classmethod
    def _spec_names(cls, data: Any) -> Any:
        if isinstance(data, list):
            fields = _fields_by_name(data)
            data = {k: fields.get(k, {}).get("choices", []) for k in ("base_model", "main_body")}
        if isinstance(data, dict):
            data = dict(data)
            data.setdefault("base_models", data.get("base_model") or [])
            data.setdefault("main_bodies", data.get("main_body") or [])
        return data


class Dataset(_Response):
    """A training dataset owned by the account."""

    id: int
    name: Text = ""
    description: Text = ""
    demo_picture: Text = ""
    create_time: Text = ""
    update_time: Text = ""
    images: Annotated[list[str], BeforeValidator(_none_to_list)] = []
    images_num: OptionalCount = None

    @model_validator(mode="after")
    def _count_images(self) -> Dataset:
        if self.images_num is None:
            self.images_num = len(self.images)
        return self


# Internal payloads ------------------------------------------------------------------


class TokenInfo(_Response):
    """get_token's payload."""

    token: str = Field(min_length=1)


class SubmitInfo(_Response):
    """task_submit's and train_submit's payload."""

    task_id: TaskId


class DatasetCreated(_Response):
    """dataset's payload."""

    dataset_id: int


class DatasetPage(_Response):
    """One page of dataset_all."""

    items: Annotated[list[Dataset], BeforeValidator(_none_to_list)] = []
    page: OptionalCount = None
    has_next: bool = False
    total_pages: OptionalCount = Field(default=None, alias="totalPages")
