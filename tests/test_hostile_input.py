"""Hostile and arbitrary input never gets past validation and never raises untyped errors."""

from __future__ import annotations

import io
import struct
import zlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from bot import options
from bot.errors import UserFacingError
from bot.images import check_image, closest_size, sniff_content_type
from bot.v1b import GenerationForm, InvalidRequest, TaskParams, validate_task_params

FORM = GenerationForm.model_validate(
    [
        {
            "name": "model_name",
            "type": "list",
            "choices": ["Artist_V0.1.3"],
            "default": "Artist_V0.1.3",
        },
        {"name": "n_images", "type": "int", "min": 1, "max": 8, "default": 2},
        {"name": "scale", "type": "int", "min": 1, "max": 20, "default": 7},
        {"name": "select_seed", "type": "int", "min": 0, "max": 9999999, "default": -1},
        {
            "name": "resolution",
            "type": "dict",
            "default": "512x512",
            "choices": {"1:1": ["512x512", "1024x1024"], "2:3": ["512x768"], "3:2": ["768x512"]},
        },
    ]
)
# A form that lists no models and no sizes: it rules none out (the service still checks).
BARE_FORM = GenerationForm.model_validate([])
LIMITS = {"max_bytes": 2_000_000, "max_pixels": 4096 * 4096}
fuzz = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fuzz
@given(st.integers())
def test_count_scale_seed_accept_exactly_the_form_ranges(value):
    for check, lo, hi, key in (
        (options.check_count, 1, 8, "options.bad_count"),
        (options.check_scale, 1, 20, "options.bad_scale"),
    ):
        try:
            assert lo <= check(FORM, value) <= hi
        except UserFacingError as err:
            assert err.key == key and not lo <= value <= hi
    try:
        assert options.check_seed(FORM, value) in range(-1, 10_000_000)
    except UserFacingError as err:
        assert err.key == "options.bad_seed" and value != -1


@fuzz
@given(st.text())
def test_size_and_model_accept_only_form_values(text):
    try:
        assert options.check_size(FORM, text) in FORM.all_sizes()
    except UserFacingError as err:
        assert err.key == "options.bad_size"
        assert len(err.params["size"]) <= 40
    try:
        assert options.check_model(FORM, ["mine"], text) in ("Artist_V0.1.3", "mine")
    except UserFacingError as err:
        assert err.key == "options.bad_model"


def test_size_labels_from_autocomplete_are_accepted():
    assert options.check_size(FORM, "2:3 512x768") == "512x768"
    assert closest_size(FORM.all_sizes(), 0.66) == "512x768"


@fuzz
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_are_an_image_or_a_typed_refusal(data):
    try:
        checked = check_image(data, "x.png", **LIMITS)
    except UserFacingError as err:
        assert err.key in {
            "image.bad_type",
            "image.corrupt",
            "image.too_large",
            "image.too_many_pixels",
        }
    else:
        assert checked.format in {"PNG", "JPEG", "WEBP"}


def _png(width: int, height: int, payload: bytes) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", payload)
        + chunk(b"IEND", b"")
    )


def _real(fmt: str = "PNG", size=(64, 48)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, "orange").save(buf, fmt)
    return buf.getvalue()


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _png(60000, 60000, zlib.compress(b"\x00" * 1024))
    try:
        check_image(bomb, "bomb.png", **LIMITS)
    except UserFacingError as err:
        assert err.key in {"image.too_many_pixels", "image.bad_type"}
    else:
        raise AssertionError("a decompression bomb was accepted")


def test_truncated_image_is_corrupt():
    data = _real("PNG", (400, 300))
    try:
        check_image(data[: len(data) // 2], "half.png", **LIMITS)
    except UserFacingError as err:
        assert err.key == "image.corrupt"
    else:
        raise AssertionError("a truncated image was accepted")


def test_type_is_read_from_the_bytes_not_the_name():
    jpeg = _real("JPEG")
    checked = check_image(jpeg, "looks-like.png", **LIMITS)
    assert checked.format == "JPEG" and checked.content_type == "image/jpeg"
    gif = _real("GIF")
    try:
        check_image(gif, "animated.png", **LIMITS)
    except UserFacingError as err:
        assert err.key == "image.bad_type"
    else:
        raise AssertionError("a GIF was accepted")
    text = b"<html>not an image</html>"
    assert sniff_content_type(text) is None
    assert sniff_content_type(jpeg) == "image/jpeg"


def test_oversized_file_is_refused_by_size_first():
    try:
        check_image(b"\x00" * 100, "big.png", max_bytes=10, max_pixels=100)
    except UserFacingError as err:
        assert err.key == "image.too_large"
    else:
        raise AssertionError("an oversized file was accepted")


@fuzz
@given(st.text())
def test_cleaned_prompts_hold_no_control_or_invisible_characters(text):
    import unicodedata

    from bot.text import clean_prompt

    try:
        cleaned = clean_prompt(text)
    except UserFacingError as err:
        assert err.key == "generate.empty_prompt"
        return
    assert cleaned and cleaned == cleaned.strip() and "  " not in cleaned
    for ch in cleaned:
        assert ch == " " or not ch.isspace()
        assert unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    assert clean_prompt(cleaned) == cleaned  # idempotent


@fuzz
@given(st.text(max_size=60))
def test_training_names_are_accepted_only_when_well_formed(text):
    from bot.training.inputs import check_model_name

    try:
        name = check_model_name(text, taken=["taken name"])
    except UserFacingError as err:
        assert err.key in {"train.name_length", "train.name_chars", "train.name_taken"}
    else:
        assert 2 <= len(name) <= 40 and name == " ".join(name.split())
        assert name.casefold() != "taken name"


@fuzz
@given(st.text(max_size=40))
def test_dataset_ids_parse_to_positive_integers_or_a_clear_refusal(text):
    from bot.training.inputs import parse_dataset_ids

    for tricky in ("¹", "٣", "3, ²"):
        try:
            parse_dataset_ids(tricky)
        except UserFacingError as err:
            assert err.key == "train.bad_dataset_ids"
    try:
        ids = parse_dataset_ids(text)
    except UserFacingError as err:
        assert err.key == "train.bad_dataset_ids"
    else:
        assert all(isinstance(i, int) and i > 0 for i in ids)


def _accepted_by_options(form: GenerationForm, params: TaskParams, trained: list[str]) -> bool:
    try:
        options.check_model(form, trained, params.model_name)
        options.check_size(form, params.output_size)
        options.check_count(form, params.n_images)
        options.check_scale(form, params.scale)
        options.check_seed(form, params.select_seed)
    except UserFacingError:
        return False
    return True


def _accepted_by_validation(form: GenerationForm, params: TaskParams, trained: list[str]) -> bool:
    try:
        validate_task_params(params, form, extra_models=trained)
    except InvalidRequest:
        return False
    return True


@fuzz
@given(
    form=st.sampled_from([FORM, BARE_FORM]),
    model=st.sampled_from(["Artist_V0.1.3", "mine", "other", ""]),
    size=st.sampled_from(["512x512", "768x512", "999x999"]),
    count=st.integers(-1, 10),
    scale=st.integers(-1, 22),
    seed=st.integers(-3, 10_000_001),
)
def test_member_options_and_submitted_parameters_follow_one_set_of_form_rules(
    form, model, size, count, scale, seed
):
    params = TaskParams(
        model_name=model, prompt="cat", n_images=count, scale=scale, select_seed=seed,
        output_size=size,
    )  # fmt: skip
    trained = ["mine"]
    assert _accepted_by_options(form, params, trained) == _accepted_by_validation(
        form, params, trained
    )
