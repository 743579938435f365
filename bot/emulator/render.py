"""Cheap, deterministic stand-ins for generated images, drawn with Pillow."""

from __future__ import annotations

import hashlib
import io
import random
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont, ImageOps

# How much of an i2i result is the init image (the rest is the generated pattern).
INIT_IMAGE_WEIGHT = 0.65
SHAPES = 10


@dataclass(frozen=True)
class RenderRequest:
    """Everything a result image depends on."""

    model_name: str
    prompt: str
    neg_prompt: str
    seed: int
    size: tuple[int, int]
    index: int
    init_image: bytes | None = None


def render(request: RenderRequest) -> Image.Image:
    """Return the result image: same request, same pixels; another prompt or seed, other pixels."""
    rng = random.Random(_digest(request))
    width, height = request.size
    image = _gradient(rng, request.size)
    _draw_shapes(ImageDraw.Draw(image), rng, width, height)
    if request.init_image is not None:
        init = ImageOps.fit(_open_rgb(request.init_image), request.size)
        image = Image.blend(image, init, INIT_IMAGE_WEIGHT)
    _draw_caption(ImageDraw.Draw(image), request, width)
    return image


def encode(image: Image.Image, *, middle: bool = False) -> bytes:
    """Return JPEG bytes of the image, or of its half-size version when middle is set."""
    if middle:
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


def sniff_image(data: bytes) -> str | None:
    """Return the MIME type of an image Pillow can read, or None for anything else."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
            fmt = image.format
    except Exception:  # Pillow raises many unrelated types on garbage
        return None
    return Image.MIME.get(fmt or "")


def _digest(request: RenderRequest) -> bytes:
    key = repr(
        (
            request.model_name,
            request.prompt,
            request.neg_prompt,
            request.seed,
            request.size,
            request.index,
        )
    )
    init = hashlib.sha256(request.init_image or b"").hexdigest()
    return hashlib.sha256(f"{key}|{init}".encode()).digest()


def _color(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _gradient(rng: random.Random, size: tuple[int, int]) -> Image.Image:
    ramp = Image.linear_gradient("L")
    ramp = ramp.transpose(rng.choice(list(Image.Transpose)))
    ramp = ramp.resize(size, Image.Resampling.BILINEAR)
    return ImageOps.colorize(ramp, _color(rng), _color(rng))


def _draw_shapes(draw: ImageDraw.ImageDraw, rng: random.Random, width: int, height: int) -> None:
    for _ in range(SHAPES):
        x0, y0 = rng.randrange(width), rng.randrange(height)
        x1 = x0 + rng.randrange(width // 8, width // 2)
        y1 = y0 + rng.randrange(height // 8, height // 2)
        box = (x0, y0, x1, y1)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=_color(rng))
        else:
            draw.rectangle(box, fill=_color(rng))


def _draw_caption(draw: ImageDraw.ImageDraw, request: RenderRequest, width: int) -> None:
    font = _font(max(12, width // 32))
    prompt = request.prompt if len(request.prompt) <= 60 else request.prompt[:57] + "..."
    lines = [prompt, f"{request.model_name}  seed {request.seed}  #{request.index}"]
    line_height = font.size + 4 if isinstance(font, ImageFont.FreeTypeFont) else 14
    draw.rectangle((0, 0, width, line_height * len(lines) + 8), fill=(0, 0, 0))
    for n, line in enumerate(lines):
        draw.text((8, 4 + n * line_height), line, fill=(255, 255, 255), font=font)


@lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _open_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


class ImageCache:
    """A small LRU of encoded images, keyed by URL path."""

    def __init__(self, capacity: int = 256) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        """Return cached bytes and mark them recently used."""
        data = self._items.get(key)
        if data is not None:
            self._items.move_to_end(key)
        return data

    def put(self, key: str, data: bytes) -> None:
        """Store bytes, evicting the least recently used entry when full."""
        self._items[key] = data
        self._items.move_to_end(key)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
