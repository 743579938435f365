"""Heavy uploads are decoded off the event loop, so other members keep being answered in time."""

from __future__ import annotations

import asyncio
import functools
import io
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageFile

from bot.i18n import t
from tests.conftest import ADMIN_A, CH_A, GUILD_A, MEMBER_A, MEMBER_A2
from tests.crafted import heavy_png, three_hundred_thousand_entries
from tests.genutil import FAST_POLLING, eventually, is_accepted, task_id_of, wait_result
from tests.helpers import answer, answer_text, message_text, png_bytes

ROOT = Path(__file__).resolve().parent.parent
APP_DIRS = (str(ROOT / "bot") + "/", str(ROOT / "cogs") + "/")
BURST = 8


@pytest.fixture(scope="session")
def heavy_scan(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A 4096x4096 16-bit RGB PNG (750 kB) that takes ~0.5 s to decode; cached across runs."""
    cached = tmp_path_factory.getbasetemp().parent / "rgb16-4096-paeth-up.png"
    if cached.exists():
        return cached.read_bytes()
    data = heavy_png(4096, 4096)
    partial = cached.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(cached)
    return data


@pytest.mark.slow
async def test_another_member_is_answered_in_time_during_an_img2img_burst(
    harness_factory, heavy_scan
):
    # Results never finish here: only the submissions' decoding loads the machine.
    h = await harness_factory(miaohua=FAST_POLLING, emulator={"generation_time": 600})
    image = h.fake.add_attachment(heavy_scan, "scan.png", "image/png")
    stored = h.fake.world.files[int(image["id"])]
    burst = [
        await h.fake.slash(
            "img2img",
            user_id=MEMBER_A,
            guild_id=GUILD_A,
            channel_id=CH_A,
            options={"image": image["id"], "prompt": f"scan {n}", "count": 1},
            attachments={"image": image},
        )
        for n in range(BURST)
    ]
    # Every upload has been fetched: the bot is decoding them now.
    await eventually(lambda: stored.downloads == BURST, timeout=30)
    status = await h.fake.slash("status", user_id=MEMBER_A2, guild_id=GUILD_A, channel_id=CH_A)
    await status.response(timeout=30)
    assert t("status.title.mine", "en-US") in message_text(await answer(status))
    for ix in burst:  # every submission still gets its answer
        assert await answer_text(ix, timeout=60)
    # The fake refuses a callback after Discord's 3-second window, as Discord does.
    assert h.fake.interaction_window == 3.0 and not status.expired
    assert not any(ix.expired for ix in burst)


@pytest.fixture
def on_loop(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every image decode/encode and ZIP read the bot or emulator makes on the loop."""
    seen: list[str] = []

    def watch(owner: Any, name: str) -> None:
        original: Callable[..., Any] = getattr(owner, name)

        @functools.wraps(original)
        def watched(*args: Any, **kwargs: Any) -> Any:
            caller = _app_caller()
            if caller is not None and _in_event_loop():
                seen.append(f"{getattr(owner, '__name__', owner)}.{name} from {caller}")
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, watched)

    watch(Image, "open")
    for method in ("convert", "resize", "thumbnail", "save"):
        watch(Image.Image, method)
    watch(ImageFile.ImageFile, "load")
    watch(zipfile.ZipFile, "__init__")
    return seen


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _app_caller() -> str | None:
    """'bot/images.py:47' for the nearest caller frame in bot/ or cogs/, else None."""
    frame = sys._getframe(2)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(APP_DIRS):
            return f"{filename.removeprefix(str(ROOT) + '/')}:{frame.f_lineno}"
        frame = frame.f_back
    return None


def zip_of(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


async def test_images_and_archives_are_decoded_and_encoded_off_the_event_loop(
    harness_factory, on_loop
):
    h = await harness_factory(miaohua=FAST_POLLING)
    image = h.fake.add_attachment(png_bytes(300, 200, "navy"), "init.png", "image/png")
    ix = await h.fake.slash(
        "img2img",
        user_id=MEMBER_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"image": image["id"], "prompt": "a lighthouse", "count": 2},
        attachments={"image": image},
    )
    text = await answer_text(ix)
    assert is_accepted(text), text
    result = await wait_result(h, task_id_of(text))
    assert len(result["attachments"]) == 2  # both results posted
    colors = ("red", "green", "blue", "gold")
    images = {f"image{n + 1}": png_bytes(48, 48, color) for n, color in enumerate(colors[:2])}
    archive = zip_of({f"set/{color}.png": png_bytes(48, 48, color) for color in colors[2:]})
    attachments = {
        name: h.fake.add_attachment(data, f"{name}.png", "image/png")
        for name, data in images.items()
    }
    attachments["archive"] = h.fake.add_attachment(archive, "set.zip", "application/zip")
    ix = await h.fake.slash(
        "train",
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"name": "Off Loop"},
        attachments=attachments,
    )
    text = await answer_text(ix)
    assert "Off Loop" in text, text
    assert on_loop == []


@pytest.mark.parametrize("locale", ["en-US", "zh-CN"])
async def test_an_archive_listing_300000_entries_is_refused_by_its_count(
    harness, locale, monkeypatch
):
    opened: list[object] = []  # archives the bot handed to zipfile
    real_init = zipfile.ZipFile.__init__

    def recording_init(self: zipfile.ZipFile, file: Any, *args: Any, **kwargs: Any) -> None:
        opened.append(file)
        real_init(self, file, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", recording_init)
    data = three_hundred_thousand_entries()
    archive = harness.fake.add_attachment(data, "huge.zip", "application/zip")
    ix = await harness.fake.slash(
        "train",
        user_id=ADMIN_A,
        guild_id=GUILD_A,
        channel_id=CH_A,
        options={"name": "Huge Set"},
        attachments={"archive": archive},
        locale=locale,
    )
    expected = t("archive.too_many_files", locale, count=300_000, limit=50)
    assert expected in await answer_text(ix, timeout=30)
    assert await harness.bot.store.trainings.recent(GUILD_A) == []
    assert opened == []  # refused on the count alone
