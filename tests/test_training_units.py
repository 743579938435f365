"""Pure parts of training: archive safety, name checks, progress text and edit throttling."""

from __future__ import annotations

import asyncio
import io
import zipfile
from dataclasses import replace
from types import SimpleNamespace

import pytest

from bot.discord_training.notifier import DiscordTrainingEvents
from bot.errors import UserFacingError
from bot.store.trainings import Training, TrainingState
from bot.training.archive import ArchiveLimits, bounded_read, read_archive, unsafe_name
from bot.training.inputs import check_model_name, parse_dataset_ids
from bot.training.render import duration, progress_bar, progress_text

LIMITS = ArchiveLimits(files=10, total_bytes=1_000_000, file_bytes=500_000)


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def lie_about_size(data: bytes, size: int) -> bytes:
    """Rewrite the declared uncompressed size in the local header and central directory."""
    raw = bytearray(data)
    raw[22:26] = size.to_bytes(4, "little")
    central = raw.find(b"PK\x01\x02")
    raw[central + 24 : central + 28] = size.to_bytes(4, "little")
    return bytes(raw)


def error_key(data: bytes, limits: ArchiveLimits = LIMITS) -> str:
    with pytest.raises(UserFacingError) as caught:
        read_archive(data, limits)
    return caught.value.key


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "\\win\\x.png", "C:/x.png", "c:x.png", "a/../../x.png", "..\\x.png"]
)
def test_unsafe_names_are_rejected(name):
    assert unsafe_name(name)
    assert error_key(zip_of({name: b"x"})) == "archive.unsafe_name"


def test_safe_names_pass():
    assert not unsafe_name("set/a..b.png") and not unsafe_name("x.png")


def test_zip_bomb_with_lying_sizes_is_stopped_by_the_bounded_reader():
    bomb = lie_about_size(zip_of({"zeros.png": b"\0" * 5_000_000}), 100)
    assert error_key(bomb) == "archive.file_too_large"


def test_total_uncompressed_bound_counts_real_bytes():
    files = {f"{i}.bin": b"\0" * 400_000 for i in range(3)}
    honest = zip_of(files)
    assert error_key(honest) == "archive.too_large"  # declared sizes already exceed
    raw = bytearray(honest)
    # Every member declares 10 bytes; the real total still hits the bound while reading.
    for marker in (b"PK\x03\x04", b"PK\x01\x02"):
        offset = 26 - 4 if marker == b"PK\x03\x04" else 24
        start = 0
        while (pos := raw.find(marker, start)) != -1:
            raw[pos + offset : pos + offset + 4] = (10).to_bytes(4, "little")
            start = pos + 4
    assert error_key(bytes(raw)) in {"archive.too_large", "archive.bad_member"}


def test_count_nested_and_garbage():
    many = zip_of({f"{i}.png": b"x" for i in range(11)})
    assert error_key(many) == "archive.too_many_files"
    assert error_key(zip_of({"a.tar.gz": b"x"})) == "archive.nested"
    assert error_key(zip_of({"inner.png": zip_of({"a": b"b"})})) == "archive.nested"
    assert error_key(b"not a zip") == "archive.bad"


def test_directories_are_ignored_and_contents_read():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("folder/", b"")
        zf.writestr("folder/a.png", b"abc")
    assert read_archive(buf.getvalue(), LIMITS).files == [("folder/a.png", b"abc")]


def test_bounded_read_stops_at_the_limit():
    assert bounded_read(io.BytesIO(b"12345"), 5) == b"12345"
    assert bounded_read(io.BytesIO(b"123456"), 5) is None


def test_model_names():
    assert check_model_name("  My   Model ", []) == "My Model"
    assert check_model_name("水彩-v2_x", []) == "水彩-v2_x"
    for bad, key in [("a", "train.name_length"), ("x" * 41, "train.name_length"),
                     ("a/b", "train.name_chars"), ("ok.name", "train.name_chars")]:  # fmt: skip
        with pytest.raises(UserFacingError) as caught:
            check_model_name(bad, [])
        assert caught.value.key == key
    with pytest.raises(UserFacingError) as caught:
        check_model_name("ink", ["INK"])
    assert caught.value.key == "train.name_taken"


def test_dataset_ids():
    assert parse_dataset_ids(" 3, 7,3 ") == [3, 7]
    assert parse_dataset_ids(None) == []
    with pytest.raises(UserFacingError):
        parse_dataset_ids("3, x")


def make_training(**fields) -> Training:
    base = dict(
        id=5, guild_id=1, channel_id=2, user_id=3, name="Ink", description="", main_body="Style",
        base_model="", trigger_word="ink", nsfw=False, state=TrainingState.TRAINING,
        uploaded_urls=(), pending_images=(), dataset_ids=(), service_task_id="t", progress=0.5,
        model_name=None, progress_message_id=99, error=None, created_at=1000.0,
        updated_at=1000.0, finished_at=None, last_progress_at=None, account_id=None,
    )  # fmt: skip
    return Training(**{**base, **fields})


def test_progress_text_shows_bar_percentage_elapsed_and_estimate():
    text = progress_text(make_training(), "en-US", now=1125.0, remaining=90.0)
    assert progress_bar(0.5) in text and "50%" in text and "2m 05s" in text and "1m 30s" in text
    early = progress_text(make_training(progress=0.04), "en-US", now=1010.0, remaining=90.0)
    assert "left" not in early
    assert duration(3725) == "1h 02m" and duration(7) == "7s"


class FakeMessage:
    def __init__(self, edits: list[str], edited: asyncio.Event | None = None) -> None:
        self.edits = edits
        self.edited = edited or asyncio.Event()

    async def edit(self, content: str, **kwargs) -> None:
        self.edits.append(content)
        self.edited.set()


async def test_progress_edits_are_throttled_and_only_on_change():
    edits: list[str] = []
    edited = asyncio.Event()
    channel = SimpleNamespace(get_partial_message=lambda mid: FakeMessage(edits, edited))
    bot = SimpleNamespace(
        get_partial_messageable=lambda cid, guild_id=None: channel, guild_languages={1: None}
    )
    events = DiscordTrainingEvents(bot, edit_interval=0.2)
    training = make_training(progress=0.1)
    await events.training_progress(training, None)
    assert len(edits) == 1
    await events.training_progress(training, None)  # unchanged: nothing to edit
    for p in (0.2, 0.3, 0.4):  # within the interval: coalesced into one later edit
        await events.training_progress(replace(training, progress=p), None)
    assert len(edits) == 1
    edited.clear()
    await asyncio.wait_for(edited.wait(), 5)  # the held-back edit, once the interval is over
    assert len(edits) == 2 and "40%" in edits[-1]
