"""Fitting a task's images into one Discord message under the channel's upload limit."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import discord

from bot.discord_jobs.downloads import ImageFetcher
from bot.images import shrink_to, sniff_content_type
from bot.offload import offload

MAX_FILES = 10  # Discord's limit per message
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}


@dataclass(frozen=True, slots=True)
class NamedFile:
    """Bytes to attach under a file name."""

    filename: str
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class FittedImages:
    """What one message carries: files, and URLs of images left as links."""

    files: tuple[NamedFile, ...]
    linked: tuple[str, ...]
    reduced: bool
    originals: tuple[str, ...] = ()
    missing: int = 0  # images that could not be downloaded from the service

    def discord_files(self) -> list[discord.File]:
        """Fresh `discord.File`s (a sent File is consumed, so build new ones per send)."""
        return [discord.File(io.BytesIO(f.data), filename=f.filename) for f in self.files]


@dataclass(slots=True)
class ResultImages:
    """A task's downloaded images: originals and, fetched on demand, the service's previews."""

    urls: tuple[str, ...]
    middle_urls: tuple[str, ...]
    originals: list[bytes | None]
    middles: list[bytes | None] | None = None


async def download_result(
    fetcher: ImageFetcher, images: Sequence[Mapping[str, Any]]
) -> ResultImages:
    """Download the full-resolution images of a task concurrently."""
    urls = tuple(str(image.get("large", "")) for image in images)
    middles = tuple(str(image.get("middle") or image.get("large", "")) for image in images)
    return ResultImages(urls, middles, await fetcher.fetch_many(urls))


async def fit_images(
    fetcher: ImageFetcher, result: ResultImages, limit: int, *, prefix: str
) -> FittedImages:
    """Attach every image within `limit` bytes in total: as is, re-encoded, the preview, or a link.

    The service's bytes are posted as they are whenever they fit: nothing is decoded then.
    """
    available = [data for data in result.originals if data is not None]
    count = len(result.urls)
    total = sum(len(data) for data in available)
    if len(available) == count and total <= limit and count <= MAX_FILES:
        as_is = [_named(prefix, i, data) for i, data in enumerate(available)]
        return FittedImages(tuple(as_is), (), False)
    per_file = limit // max(1, min(count, MAX_FILES))
    files: list[NamedFile] = []
    linked: list[str] = []
    for index in range(count):
        data = None
        if index < MAX_FILES:
            data = await _fitting(fetcher, result, index, per_file)
        if data is None:
            linked.append(result.urls[index])
        else:
            files.append(_named(prefix, index, data))
    missing = count - len(available)
    return FittedImages(tuple(files), tuple(linked), True, result.urls, missing)


async def _fitting(
    fetcher: ImageFetcher, result: ResultImages, index: int, max_bytes: int
) -> bytes | None:
    """The image re-encoded within `max_bytes`, falling back to the service's preview."""
    original = result.originals[index]
    if original is not None:
        shrunk = await offload(shrink_to, original, max_bytes)
        if shrunk is not None:
            return shrunk
    if result.middles is None:
        result.middles = await fetcher.fetch_many(result.middle_urls)
    middle = result.middles[index]
    if middle is None:
        return None
    return await offload(shrink_to, middle, max_bytes)


def _named(prefix: str, index: int, data: bytes) -> NamedFile:
    ext = _EXTENSIONS.get(sniff_content_type(data) or "", "png")
    return NamedFile(f"{prefix}-{index + 1}.{ext}", data)
