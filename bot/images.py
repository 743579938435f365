"""Image checks and transforms: validating user images, fitting upload limits."""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from bot.errors import UserFacingError

ACCEPTED_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class CheckedImage:
    """An image that passed every check: its bytes, real format and size."""

    data: bytes = field(repr=False)
    format: str
    width: int
    height: int
    filename: str

    @property
    def content_type(self) -> str:
        """The MIME type of the real format (not the one the uploader claimed)."""
        return ACCEPTED_FORMATS[self.format]

    @property
    def aspect(self) -> float:
        """Width divided by height."""
        return self.width / self.height


def check_image(data: bytes, filename: str, *, max_bytes: int, max_pixels: int) -> CheckedImage:
    """Accept PNG/JPEG/WEBP within the byte and pixel limits that decode cleanly, else raise."""
    if len(data) > max_bytes:
        raise UserFacingError(
            "image.too_large", name=filename, size_mb=_mb(len(data)), limit_mb=_mb(max_bytes)
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                fmt = probe.format or ""
                width, height = probe.size
                if fmt not in ACCEPTED_FORMATS:
                    raise UserFacingError("image.bad_type", name=filename)
                if width * height > max_pixels:
                    raise UserFacingError(
                        "image.too_many_pixels",
                        name=filename,
                        width=width,
                        height=height,
                        limit=max_pixels,
                    )
                probe.load()  # decodes every pixel: truncated files fail here
    except UserFacingError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserFacingError("image.bad_type", name=filename) from None
    except (OSError, SyntaxError, ValueError):
        raise UserFacingError("image.corrupt", name=filename) from None
    return CheckedImage(data, fmt, width, height, filename)


def closest_size(sizes: list[str], aspect: float) -> str:
    """The 'WxH' whose aspect ratio is nearest to `aspect` (ties: the larger, then the first)."""

    def key(size: str) -> tuple[float, int]:
        w, h = parse_size(size)
        return (abs(math.log((w / h) / aspect)), -(w * h))

    return min(sizes, key=key)


def parse_size(size: str) -> tuple[int, int]:
    """'960x640' -> (960, 640)."""
    w, _, h = size.lower().partition("x")
    return int(w), int(h)


def shrink_to(data: bytes, max_bytes: int) -> bytes | None:
    """Re-encode as JPEG, lowering quality then size, until it fits; None if it never does."""
    if len(data) <= max_bytes:
        return data
    image = Image.open(io.BytesIO(data)).convert("RGB")
    for side_scale in (1.0, 0.75, 0.5, 0.35, 0.25):
        scaled = image
        if side_scale < 1.0:
            scaled = image.resize(
                (max(1, int(image.width * side_scale)), max(1, int(image.height * side_scale)))
            )
        for quality in (90, 80, 65, 50):
            out = io.BytesIO()
            scaled.save(out, "JPEG", quality=quality, optimize=True)
            if out.tell() <= max_bytes:
                return out.getvalue()
    return None


def sniff_content_type(data: bytes) -> str | None:
    """The MIME type of PNG/JPEG/WEBP/GIF bytes by their magic number, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f}"
