"""Result grids and attachments: reduced decodes for the grid, the service's own bytes posted."""

from __future__ import annotations

import io
from collections.abc import Iterator

import aiohttp
import pytest
from PIL import Image, ImageChops, ImageStat, JpegImagePlugin

from bot.emulator.render import RenderRequest, encode, render
from bot.images import make_grid
from tests.genutil import FAST_POLLING, imagine, task_id_of, wait_result
from tests.helpers import answer_text, png_bytes


def service_jpeg(size: tuple[int, int], index: int = 0) -> bytes:
    """A result image exactly as the emulator serves it."""
    return encode(render(RenderRequest("m", f"grid test {index}", "", index, size, index)))


@pytest.fixture
def jpeg_decodes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """The size at which every JPEG is decoded (after any draft), in order."""
    sizes: list[tuple[int, int]] = []
    original = JpegImagePlugin.JpegImageFile.load

    def load(self: JpegImagePlugin.JpegImageFile) -> object:
        if self.tile:  # not yet decoded: this call decodes
            sizes.append(self.size)
        return original(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", load)
    yield sizes


def reference_grid_tile(data: bytes, side: int) -> Image.Image:
    """A tile the expensive way: every pixel decoded, then a high-quality downscale."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB").resize((side, side), Image.Resampling.LANCZOS)


def test_a_grid_of_large_jpegs_decodes_them_at_the_tile_size(jpeg_decodes):
    images = [service_jpeg((1024, 1024), i) for i in range(4)]
    grid = Image.open(io.BytesIO(make_grid(images)))
    assert grid.size == (1024, 1024)
    # Each 1024x1024 JPEG fills a 512x512 cell: decoded at half scale, not in full.
    assert jpeg_decodes[:4] == [(512, 512)] * 4


@pytest.mark.parametrize("side", [1024, 768])  # half-scale decode; full decode and a resize
def test_a_grid_looks_like_one_from_full_decodes_and_a_high_quality_resize(side):
    images = [service_jpeg((side, side), i) for i in range(4)]
    grid = Image.open(io.BytesIO(make_grid(images))).convert("RGB")
    for i, data in enumerate(images):
        x, y = (i % 2) * 512, (i // 2) * 512
        tile = grid.crop((x, y, x + 512, y + 512))
        diff = ImageStat.Stat(ImageChops.difference(tile, reference_grid_tile(data, 512)))
        # Mean error per channel, out of 255: the grid's own JPEG encoding costs about as much.
        assert max(diff.mean) < 4, diff.mean


@pytest.mark.parametrize(
    ("size", "count", "grid_size", "decoded"),
    [
        ((512, 512), 2, (1024, 512), (512, 512)),  # already the cell size: decoded as is
        ((768, 768), 4, (1024, 1024), (768, 768)),  # cell 512: half scale would be too small
        ((1024, 1024), 2, (1024, 512), (512, 512)),
        ((1024, 1024), 8, (1023, 1023), (512, 512)),  # cell 341: half scale, then resized
    ],
)
def test_grid_geometry_and_decode_scale(jpeg_decodes, size, count, grid_size, decoded):
    images = [service_jpeg(size, i) for i in range(count)]
    grid = Image.open(io.BytesIO(make_grid(images)))
    assert grid.size == grid_size
    assert jpeg_decodes[:count] == [decoded] * count


def test_a_grid_of_mixed_formats_and_modes_still_works():
    grey = io.BytesIO()
    Image.new("L", (300, 200), 128).save(grey, "JPEG")
    transparent = io.BytesIO()
    Image.new("RGBA", (200, 300), (255, 0, 0, 0)).save(transparent, "PNG")
    images = [grey.getvalue(), transparent.getvalue(), png_bytes(64, 64)]
    grid = Image.open(io.BytesIO(make_grid(images)))
    assert grid.format == "JPEG" and grid.mode == "RGB"
    assert grid.size == (600, 600)  # 2x2 cells of the largest width and height


# End to end: what the real bot posts on the fake Discord.


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


async def test_results_that_fit_are_posted_byte_for_byte_with_a_grid_of_reduced_decodes(
    gen, jpeg_decodes
):
    ix = await imagine(gen, count=4, size="1024x1024")
    task_id = task_id_of(await answer_text(ix))
    result = await wait_result(gen, task_id)
    files = posted(gen, result)
    originals = await service_bytes(gen, task_id)
    assert [files[f"task-{task_id}-{i + 1}.jpg"] for i in range(4)] == originals
    grid = Image.open(io.BytesIO(files["grid.jpg"]))
    assert grid.size == (1024, 1024)
    # No result image was decoded in full to build the preview.
    assert (1024, 1024) not in jpeg_decodes
    assert jpeg_decodes.count((512, 512)) >= 4
