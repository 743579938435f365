"""Several result images: posted as the service made them and shown as Discord's gallery."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from PIL import ImageFile

from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """The size of every image whose pixels are decoded, in order."""
    sizes: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load  # JPEG and PNG decode here (WEBP is not served)

    def load(self: ImageFile.ImageFile) -> Any:
        if self.tile:  # not yet decoded: this call decodes
            sizes.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    yield sizes


@pytest.fixture
async def gen(harness_factory):
    """A harness that polls the emulator quickly."""
    return await harness_factory(miaohua=FAST_POLLING)


async def service_bytes(gen, task_id: int) -> list[bytes]:
    """The full-size images of a task, as the service serves them."""
    task = await gen.bot.store.tasks.get(task_id)
    async with aiohttp.ClientSession() as http:
        out = []
        for image in task.images:
            async with http.get(image["large"]) as resp:
                out.append(await resp.read())
        return out


def posted(gen, message) -> dict[str, bytes]:
    """Attachment file name -> the bytes the bot uploaded."""
    return {a["filename"]: gen.fake.world.files[int(a["id"])].data for a in message["attachments"]}


def gallery(message: dict[str, Any]) -> list[str]:
    """The attachment names the message's embeds show, checking they form one gallery."""
    embeds = message["embeds"]
    assert len({embed.get("url") for embed in embeds}) == 1  # one shared url: one gallery
    assert embeds[0]["url"].startswith("http")
    return [embed["image"]["url"].removeprefix("attachment://") for embed in embeds]


async def test_results_that_fit_are_posted_byte_for_byte_as_a_gallery_without_decoding(
    gen, decodes
):
    ix = await imagine(gen, count=4, size="1024x1024")
    task_id = task_id_of(await answer_text(ix))
    result = await wait_result(gen, task_id)
    files = posted(gen, result)
    names = [f"task-{task_id}-{i + 1}.jpg" for i in range(4)]
    assert [files[name] for name in names] == await service_bytes(gen, task_id)
    assert list(files) == names  # no preview built: the images themselves
    assert gallery(result) == names
    task = await gen.bot.store.tasks.get(task_id)
    assert result["embeds"][0]["url"] == task.images[0]["large"]
    # Only the first embed carries the result's details; the others are its images.
    assert result["embeds"][0]["title"] and all("title" not in e for e in result["embeds"][1:])
    assert decodes == []  # the bot decoded no pixel of any result image


async def test_a_gallery_shows_four_images_and_the_rest_stay_attachments(gen):
    ix = await imagine(gen, count=6, size="512x512")
    task_id = task_id_of(await answer_text(ix))
    result = await wait_result(gen, task_id)
    names = [a["filename"] for a in result["attachments"]]
    assert names == [f"task-{task_id}-{i + 1}.jpg" for i in range(6)]
    assert gallery(result) == names[:4]


async def test_a_single_image_is_shown_without_a_gallery(gen):
    ix = await imagine(gen, count=1)
    task_id = task_id_of(await answer_text(ix))
    result = await wait_result(gen, task_id)
    (attachment,) = result["attachments"]
    (embed,) = result["embeds"]
    assert embed["image"]["url"] == f"attachment://{attachment['filename']}"
    assert "url" not in embed  # the title links nowhere when there is nothing to group
